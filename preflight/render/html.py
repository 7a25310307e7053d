"""The HTML renderers: one self-contained report page, and a compact fragment for notebooks.

Both are pure functions of the report document. Templates live in `reports/templates/` (shipped in
the wheel as `preflight/templates/`) and are rendered with autoescaping on for every template and
`StrictUndefined`, so a layer name is always text and a template typo is an error, not a blank.
The page embeds the exact JSON document it was drawn from in `<script id="preflight-data">`.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from preflight.render import charts
from preflight.render.view import build_view

PAGE_TEMPLATE = "report.html.j2"
SUMMARY_TEMPLATE = "summary.html.j2"

# The installed wheel first (force-included there), then the source checkout.
TEMPLATE_DIRS = (
    Path(__file__).resolve().parents[1] / "templates",
    Path(__file__).resolve().parents[2] / "reports" / "templates",
)


def template_dir() -> Path:
    """Where the templates are: inside the package when installed, else the repo's reports/templates."""
    for candidate in TEMPLATE_DIRS:
        if (candidate / PAGE_TEMPLATE).is_file():
            return candidate
    searched = ", ".join(str(path) for path in TEMPLATE_DIRS)
    raise FileNotFoundError(f"preflight's HTML templates are missing (looked in {searched})")


@functools.lru_cache(maxsize=1)
def environment():
    """The jinja2 environment: autoescape for every template, undefined names raise."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir())),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def embedded_json(document: dict[str, Any]) -> str:
    """The document as JSON that is safe inside <script>: no '<', '>' or '&' can end the element."""
    text = json.dumps(document, ensure_ascii=True)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def build_charts(view: dict[str, Any]) -> dict[str, Any]:
    """Inline SVG for each chart the view has data for; None where a section is absent."""
    from markupsafe import Markup

    verdict = view["verdict"]
    limit_bytes = verdict["budget_bytes"]
    limit_label = verdict["budget_label"]
    footprint_rows = view["footprint"]["rows"]
    built: dict[str, Any] = {
        "footprint": Markup(charts.footprint_bar([(r["label"], r["bytes"], r["color"]) for r in footprint_rows])),
        "curve": None,
        "recommendations": None,
        "timeline": None,
        "search": None,
    }
    curve = view["curve"]
    if curve and (curve["measured"] or curve["predicted"]):
        recommended = None
        if curve["recommended_batch_size"] is not None and curve["recommended_peak_bytes"] is not None:
            recommended = (curve["recommended_batch_size"], curve["recommended_peak_bytes"])
        built["curve"] = Markup(charts.curve_chart(curve["measured"], curve["predicted"], limit_bytes,
                                                   limit_label, recommended))
    recommendations = view["recommendations"]
    if recommendations:
        bars = []
        if verdict["peak_bytes"] is not None:
            bars.append((f"now (batch {verdict['batch_size']})", verdict["peak_bytes"], charts.MUTED))
        for row in recommendations["rows"]:
            if row["peak_bytes"] is not None:
                if row["fits"] is False:
                    color = charts.LIMIT_COLOR
                elif row["lead"]:
                    color = charts.RECOMMENDED_COLOR
                elif row["recommended"]:
                    color = charts.MEASURED_COLOR
                else:
                    color = charts.PREDICTED_COLOR
                bars.append((row["title"], row["peak_bytes"], color))
        if bars:
            built["recommendations"] = Markup(charts.comparison_bars(bars, limit_bytes, limit_label))
    composition = view["peak_composition"]
    if composition and composition["timeline"]:
        built["timeline"] = Markup(charts.timeline_chart(composition["timeline"], limit_bytes, limit_label))
    search = view["search"]
    if search and search["scatter"]:
        built["search"] = Markup(charts.scatter_chart(search["scatter"], search["driver"], limit_bytes, limit_label))
    return built


def render_view(view: dict[str, Any], chart_svgs: dict[str, Any], data_json: str) -> str:
    """Lay out a prepared view. Separate from render_html so tests can feed it a broken view."""
    from markupsafe import Markup

    return environment().get_template(PAGE_TEMPLATE).render(
        view=view, charts=chart_svgs, data_json=Markup(data_json))


def render_html(document: dict[str, Any]) -> str:
    """The full, self-contained report page: inline CSS, inline SVG charts, the JSON embedded."""
    view = build_view(document)
    return render_view(view, build_charts(view), embedded_json(document))


def render_summary_html(document: dict[str, Any]) -> str:
    """A compact fragment for Jupyter's _repr_html_: verdict, peak, budget, footprint bar, top findings."""
    view = build_view(document)
    return environment().get_template(SUMMARY_TEMPLATE).render(view=view, top_findings=view["findings"][:3])
