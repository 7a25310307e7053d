"""The backend comparison's renderers: terminal (rich), Markdown and the self-contained HTML page.

All three lay out `comparison_view(comparison)`, prepared once from the comparison document
(preflight.analysis.comparison). As for a report: user text goes into rich as `Text`, Markdown
escapes it (render.markdown.escape_markdown), and the page's template autoescapes with StrictUndefined
and embeds the JSON document it was drawn from.
"""
from __future__ import annotations

from typing import Any

from preflight.render.view import format_percent, format_seconds
from preflight.common.units import format_bytes

COMPARE_TEMPLATE = "compare.html.j2"

STATUS_TEXTS = {"fits": "fits", "does-not-fit": "does not fit", "measured": "measured", "error": "error"}
STATUS_STYLES = {"fits": "green", "does-not-fit": "red", "measured": "", "error": "red"}
STATUS_MARKS = {"fits": "✅", "does-not-fit": "❌", "measured": "➖", "error": "⚠️"}
# The page's verdict box reuses the report's classes (style.css.j2).
HEADER_CLASSES = {"fits": "fits", "does-not-fit": "does-not-fit", "measured": "no-budget", "error": "unknown"}


def comparison_view(comparison: dict[str, Any]) -> dict[str, Any]:
    """Everything the renderers show, formatted: a row per backend and the switch recommendations."""
    budget = comparison["budget_bytes"]
    chosen_backend = comparison["chosen_backend"]
    rows = []
    for row in comparison["rows"]:
        used = row["peak_bytes"] / budget if budget and row["peak_bytes"] is not None else None
        rows.append({
            "backend": row["backend"],
            "chosen": row["chosen"],
            "label": f"{row['backend']} (chosen)" if row["chosen"] else row["backend"],
            "version_text": row["version"] or "n/a",
            "method_text": row["method"] or "n/a",
            "device_text": row["device"] or "n/a",
            "status": row["status"],
            "status_text": STATUS_TEXTS.get(row["status"], row["status"]),
            "status_mark": STATUS_MARKS.get(row["status"], ""),
            "peak_text": format_bytes(row["peak_bytes"]),
            "used_text": format_percent(used) if used is not None else "n/a",
            "step_text": format_seconds(row["step_seconds"]),
            "message": row["message"] or "",
        })
    chosen = next((row for row in rows if row["chosen"]), None)
    state = chosen["status"] if chosen else "error"
    switches = [{
        "title": entry["title"],
        "backend": entry["backend"],
        "peak_text": format_bytes(entry["peak_bytes"]),
        "chosen_peak_text": format_bytes(entry["chosen_peak_bytes"]),
        "saving_text": format_bytes(entry["saving_bytes"]) if entry["saving_bytes"] is not None else "",
        "step_text": format_seconds(entry["step_seconds"]),
        "snippet": entry["snippet"],
        "tradeoff": entry["tradeoff"],
    } for entry in comparison["recommendations"]]
    return {
        "title": f"preflight · {comparison['model']}: backends compared",
        "model_name": comparison["model"],
        "batch_size": comparison["batch_size"],
        "budget_text": format_bytes(budget) if budget is not None else "no budget",
        "chosen_backend": chosen_backend,
        "state": state,
        "header_class": HEADER_CLASSES.get(state, "unknown"),
        "headline": _headline(chosen_backend, state, switches),
        "rows": rows,
        "recommendations": switches,
        "generator": {"version": comparison.get("preflight_version") or "", "created_at": comparison.get("created_at") or ""},
    }


def _headline(chosen_backend: str, state: str, switches: list[dict[str, Any]]) -> str:
    if state == "fits":
        return f"Fits under {chosen_backend}"
    if state == "does-not-fit":
        others = ", ".join(s["backend"] for s in switches)
        return f"Does not fit under {chosen_backend}" + (f"; fits under {others}" if others else "")
    if state == "measured":
        return f"Measured under every backend (no budget; {chosen_backend} is the chosen one)"
    return f"The check failed under {chosen_backend}"


def _renderables(comparison: dict[str, Any]) -> list[Any]:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from preflight.render.terminal import VERDICT_STYLES, _hanging_list

    view = comparison_view(comparison)
    headline = Text()
    headline.append(f"preflight · {view['model_name']}: ", style="bold")
    headline.append(view["headline"], style=VERDICT_STYLES.get(view["header_class"], "bold"))
    parts: list[Any] = [headline, Text(f"batch {view['batch_size']} · budget {view['budget_text']}", style="dim")]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 2, 0, 0))
    table.add_column(Text("Backend", style="bold"), no_wrap=True)
    table.add_column("Version", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    table.add_column("Peak", justify="right", no_wrap=True)
    table.add_column("Used", justify="right", no_wrap=True)
    table.add_column("Step", justify="right", no_wrap=True)
    for row in view["rows"]:
        table.add_row(Text(row["label"], style="bold" if row["chosen"] else ""), Text(row["version_text"]),
                      Text(row["status_text"], style=STATUS_STYLES.get(row["status"], "")), Text(row["peak_text"]),
                      Text(row["used_text"]), Text(row["step_text"]))
    parts += [Text(""), table]
    # How each peak was read, and why a row failed, under the table at full width: too long for a column.
    listing = _hanging_list()
    for row in view["rows"]:
        note = Text(f"peak read from {row['method_text']}" if row["method_text"] != "n/a" else "", style="dim")
        if row["message"]:
            note.append(("; " if note.plain else "") + row["message"], style=STATUS_STYLES.get(row["status"], ""))
        if note.plain:
            listing.add_row(Text(f"{row['backend']}:"), note)
    parts += [Text(""), listing]
    if view["recommendations"]:
        parts += [Text(""), Text("Switch backend (measured):", style="bold")]
        bullets = _hanging_list()
        for entry in view["recommendations"]:
            line = Text(f"{entry['title']}: peak {entry['peak_text']} against {entry['chosen_peak_text']} "
                        f"under {view['chosen_backend']}")
            line.append(f" ({entry['snippet']})", style="dim")
            bullets.add_row(Text("-"), line)
        parts.append(bullets)
    return parts


def render_comparison_text(comparison: dict[str, Any]) -> str:
    """The comparison as plain text, 100 columns, no colour codes."""
    from preflight.render.terminal import plain_text

    return plain_text(_renderables(comparison))


def print_comparison(comparison: dict[str, Any], console: Any = None) -> None:
    """Print the comparison with colour to a terminal (stdout unless a rich Console is given)."""
    from rich.console import Console

    console = console or Console(highlight=False, emoji=False)
    for renderable in _renderables(comparison):
        console.print(renderable)


def render_comparison_markdown(comparison: dict[str, Any]) -> str:
    """The comparison for a CI comment: headline, one table row per backend, the switch recommendations."""
    from preflight.render.markdown import escape_markdown as esc

    view = comparison_view(comparison)
    lines = [f"### preflight · {esc(view['model_name'])}: {STATUS_MARKS.get(view['state'], '')} {esc(view['headline'])}",
             "", f"**Batch size** {esc(view['batch_size'])} · **Budget** {esc(view['budget_text'])}", "",
             "| Backend | Version | Status | Peak | Used | Step | Peak read from | Message |",
             "|---|---|---|---:|---:|---:|---|---|"]
    for row in view["rows"]:
        backend = f"**{esc(row['label'])}**" if row["chosen"] else esc(row["label"])
        lines.append(f"| {backend} | {esc(row['version_text'])} | {row['status_mark']} {esc(row['status_text'])} "
                     f"| {esc(row['peak_text'])} | {esc(row['used_text'])} | {esc(row['step_text'])} "
                     f"| {esc(row['method_text'])} | {esc(row['message'])} |")
    if view["recommendations"]:
        lines += ["", "**Switch backend (measured)**", ""]
        for entry in view["recommendations"]:
            snippet = entry["snippet"].replace("`", "'")  # a code span shows backslash escapes as they are
            lines.append(f"- {esc(entry['title'])}: peak {esc(entry['peak_text'])} against "
                         f"{esc(entry['chosen_peak_text'])} under {esc(view['chosen_backend'])} (`{snippet}`)")
    return "\n".join(lines) + "\n"


def render_comparison_html(comparison: dict[str, Any]) -> str:
    """The self-contained comparison page: inline CSS, nothing loaded, the JSON document embedded."""
    from markupsafe import Markup

    from preflight.render.html import embedded_json, environment

    return environment().get_template(COMPARE_TEMPLATE).render(
        view=comparison_view(comparison), data_json=Markup(embedded_json(comparison)))
