"""The HTML renderers: one self-contained report page, and the same sections as a notebook view.

Both are pure functions of the report document. Templates live in `reports/templates/` (shipped in
the wheel as `preflight/templates/`) and are rendered with autoescaping on for every template and
`StrictUndefined`, so a layer name is always text and a template typo is an error, not a blank.
The page embeds the exact JSON document it was drawn from in `<script id="preflight-data">`.
"""
from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

from preflight.render import charts
from preflight.render.view import build_view

PAGE_TEMPLATE = "report.html.j2"
NOTEBOOK_TEMPLATE = "notebook.html.j2"
STYLESHEET_TEMPLATE = "style.css.j2"
# Two classes: notebooks style tables with rules this specific (JupyterLab's
# `:not(.jp-RenderedMarkdown).jp-RenderedHTMLCommon td`), and of two equal rules the later one, ours, wins.
NOTEBOOK_SCOPE = ".preflight.preflight-notebook"
# Selectors that style the page itself; in a notebook they style the view's own box instead.
_PAGE_SELECTORS = {":root", "body"}
_RULE_START = re.compile(r"([^{}]+)\{")

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
        "length_curve": None,
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
    lengths = view["length_curve"]
    if lengths and (lengths["measured"] or lengths["predicted"]):
        built["length_curve"] = Markup(charts.curve_chart(lengths["measured"], lengths["predicted"], limit_bytes,
                                                          limit_label, x_label="sequence length"))
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


def scoped_stylesheet(scope: str = NOTEBOOK_SCOPE) -> str:
    """The page's stylesheet with every selector confined to `scope`: a notebook shows many outputs on
    one page, and a report must not restyle the others' tables and headings."""
    css = environment().get_template(STYLESHEET_TEMPLATE).render()

    def confine(match: re.Match) -> str:
        selectors = match.group(1).strip()
        if selectors.startswith("@"):
            return match.group(0)  # an @media block: the rules inside it are confined one by one
        confined = [scope if s.strip() in _PAGE_SELECTORS else f"{scope} {s.strip()}" for s in selectors.split(",")]
        return "\n" + ", ".join(confined) + " {"

    return _RULE_START.sub(confine, css)


def render_notebook_html(document: dict[str, Any]) -> str:
    """The notebook view (Report._repr_html_): the page's sections, charts inline, the probes, the model
    facts and the per-layer table collapsed; no script, no JSON, nothing loaded."""
    from markupsafe import Markup

    view = build_view(document)
    return environment().get_template(NOTEBOOK_TEMPLATE).render(
        view=view, charts=build_charts(view), stylesheet=Markup(scoped_stylesheet()))
