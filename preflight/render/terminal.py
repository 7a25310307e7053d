"""The terminal summary: a short plain-text report (the Report's repr), or coloured on a real terminal.

Built with rich from the same view model as the HTML page. Every piece of user text (layer names,
messages) goes in as a `Text` object, never as rich markup, so `[bold]` in a name prints as itself.
"""
from __future__ import annotations

import io
from typing import Any

from preflight.render.view import build_view

WIDTH = 100
MAX_FINDINGS = 5
MAX_RECOMMENDATIONS = 3
MAX_DIFF_LAYERS = 10

VERDICT_STYLES = {"fits": "bold green", "does-not-fit": "bold red", "no-budget": "bold", "unknown": "bold yellow",
                  "trials-fail": "bold red"}
SEVERITY_STYLES = {"error": "bold red", "warning": "yellow", "info": "cyan"}
STATUS_STYLES = {"ok": "green", "oom": "red", "crashed": "red", "error": "red", "timeout": "yellow"}


def _hanging_list():
    """Two columns, a marker and text, so wrapped lines stay indented under their text."""
    from rich.table import Table

    listing = Table.grid(padding=(0, 1, 0, 0))
    listing.add_column(no_wrap=True)
    listing.add_column(overflow="fold")
    return listing


def _diff_renderables(diff: dict[str, Any]) -> list[Any]:
    """Against the baseline: what grew (bold), then the layers added, removed or changed."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    if not diff["comparable"]:
        return [Text(f"Against the baseline: not comparable: {diff['reason']}", style="yellow")]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 2, 0, 0))
    table.add_column(Text("Against the baseline", style="bold"))
    table.add_column("Baseline", justify="right")
    table.add_column("This run", justify="right")
    table.add_column("Change", justify="right")
    for row in diff["rows"]:
        table.add_row(Text(row["label"]), Text(row["baseline_text"]), Text(row["current_text"]),
                      Text(row["change_text"], style="bold" if row["grew"] else ""))
    parts: list[Any] = [table]
    if diff["layers"]:
        layers = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 2, 0, 0))
        layers.add_column(Text("Layers changed", style="bold"), overflow="fold")
        layers.add_column("Change")
        layers.add_column("Params", justify="right")
        layers.add_column("Activation / sample", justify="right")
        for layer in diff["layers"][:MAX_DIFF_LAYERS]:
            layers.add_row(Text(f"{layer['name']} ({layer['type']})"), Text(layer["change"]),
                           Text(layer["params_text"]), Text(layer["activation_text"]))
        parts.append(layers)
    return parts


def _renderables(document: dict[str, Any]) -> list[Any]:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    view = build_view(document)
    verdict = view["verdict"]
    parts: list[Any] = []

    headline = Text()
    headline.append(f"preflight · {view['model_name']}: ", style="bold")
    headline.append(verdict["headline"].upper(), style=VERDICT_STYLES[verdict["state"]])
    parts.append(headline)
    parts.append(Text(verdict["detail"]))
    if verdict["peak_bytes"] is not None:
        origin = f"peak {verdict['peak_origin']}"
        if verdict["used_fraction"] is not None:
            origin += f" · {verdict['used_text']} of the {verdict['budget_label']}"
        parts.append(Text(origin, style="dim"))

    if view["training_plan"]:
        line = Text()
        line.append("Plan: ", style="bold")
        line.append(view["training_plan"])
        parts.append(line)

    footprint = view["footprint"]
    if footprint["rows"]:
        table = Table(title=None, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 2, 0, 0))
        table.add_column(Text(f"Footprint ({footprint['total_text']})", style="bold"))
        table.add_column("Size", justify="right")
        table.add_column("Share", justify="right")
        table.add_column("Source")
        for row in footprint["rows"]:
            table.add_row(Text(row["label"]), Text(row["bytes_text"]), Text(row["share_text"]), Text(row["source"]))
        parts.append(Text(""))
        parts.append(table)

    if view["host"]:
        parts.append(Text(""))
        for label, text in view["host"]:
            line = Text()
            line.append(f"{label}: ", style="bold")
            line.append(text)
            parts.append(line)

    diff = view["baseline_diff"]
    if diff:
        parts.append(Text(""))
        parts.extend(_diff_renderables(diff))

    if view["probes"]:
        parts.append(Text(""))
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 2, 0, 0))
        table.add_column(Text("Probes", style="bold"), justify="right")
        table.add_column("Status")
        table.add_column("Peak", justify="right")
        table.add_column("Runs", justify="right")
        table.add_column("Spread", justify="right")
        table.add_column("Step", justify="right")
        table.add_column("Message", overflow="fold")
        for probe in view["probes"]:
            batch = Text(f"batch {probe['batch_size']}", style="bold" if probe["chosen"] else "")
            table.add_row(batch, Text(probe["status"], style=STATUS_STYLES.get(probe["status"], "")),
                          Text(probe["peak_text"]), Text(probe["runs_count_text"]),
                          Text(probe["spread_text"], style="yellow" if probe["spread_high"] else ""),
                          Text(probe["step_text"]), Text(probe["message"]))
        parts.append(table)

    if view["curve"] or view["recommendations"] or view["search"]:
        parts.append(Text(""))
    curve = view["curve"]
    if curve:
        line = Text()
        line.append("Batch size: ", style="bold")
        line.append(f"largest that fits {curve['max_batch_text']}, recommended {curve['recommended_batch_text']}")
        if curve["recommended_peak_bytes"] is not None:
            line.append(f" (peak {curve['recommended_peak_text']})")
        parts.append(line)
        if curve["timing_text"]:
            parts.append(Text(f"Time: {curve['timing_text']}", style="dim"))
    lengths = view["length_curve"]
    if lengths:
        line = Text()
        line.append(f"{lengths['heading']}: ", style="bold")
        line.append(f"{lengths['axes_text']}; planned {lengths['planned_text']}; at batch {lengths['batch_size']} the "
                    f"longest that fits is {lengths['max_length_text']}")
        parts.append(line)
        if lengths["probes_text"]:
            parts.append(Text(f"  peak by length: {lengths['probes_text']}", style="dim"))

    recommendations = view["recommendations"]
    if recommendations and recommendations["helpful"]:
        parts.append(Text("To make it fit:" if recommendations["any_fits"] or view["verdict"]["state"] != "does-not-fit"
                          else "Measured what-ifs (none fits on its own):", style="bold"))
        bullets = _hanging_list()
        for row in recommendations["helpful"][:MAX_RECOMMENDATIONS]:
            line = Text(row["title"])
            line.append(f": peak {row['peak_text']}{row['batch_text']}")
            if row["saving_bytes"] is not None:
                line.append(f", saves {row['saving_text']}")
            if row["fits_text"]:
                line.append(f" ({row['fits_text']})", style="green" if row["fits"] else "red")
            if row["lead"]:
                line.append(" ← try this first", style="bold")
            if row["inline_snippet"]:
                line.append(f"\n{row['tradeoff']}\n", style="dim")
                line.append(row["inline_snippet"])
            bullets.add_row(Text("-"), line)
        parts.append(bullets)
    if recommendations and recommendations["finetune"]:
        parts.append(Text(f"Fine-tuning what-ifs (measured at batch {view['verdict']['batch_size']}):", style="bold"))
        bullets = _hanging_list()
        for row in recommendations["finetune"]:
            line = Text(row["title"])
            if row["measured"]:
                line.append(f": peak {row['peak_text']} ({row['change_bytes_text']} against now)")
                if row["fits_text"]:
                    line.append(f", {row['fits_text']}", style="green" if row["fits"] else "red")
            else:
                line.append(f": {row['status'].replace('_', ' ')}: {row['message']}")
            bullets.add_row(Text("-"), line)
        parts.append(bullets)

    search = view["search"]
    if search:
        line = Text()
        line.append("Search: ", style="bold")
        line.append(search["fit_text"])
        worst = search["worst_case"]
        if worst:
            line.append(f"; worst case {worst['summary_text']}")
        parts.append(line)
        parts.append(Text(f"        {search['budget_text']}"))
        if search["spread_text"]:
            parts.append(Text(f"        {search['spread_text']}", style="dim"))

    findings = view["findings"]
    if findings:
        parts.append(Text(""))
        parts.append(Text("Findings:", style="bold"))
        listing = _hanging_list()
        for finding in findings[:MAX_FINDINGS]:
            listing.add_row(Text(finding["severity"].upper(), style=SEVERITY_STYLES[finding["severity"]]),
                            Text(finding["message"]))
        parts.append(listing)
        if len(findings) > MAX_FINDINGS:
            parts.append(Text(f"  … and {len(findings) - MAX_FINDINGS} more in the full report", style="dim"))
    return parts


def render_text(document: dict[str, Any]) -> str:
    """The summary as plain text, 100 columns, no colour codes."""
    return plain_text(_renderables(document))


def plain_text(renderables) -> str:
    """rich renderables as plain text, 100 columns, no colour codes."""
    from rich.console import Console

    # force_jupyter=False: in a notebook kernel rich would display each line as an output, not return text.
    console = Console(file=io.StringIO(), width=WIDTH, color_system=None, force_terminal=False, force_jupyter=False,
                      no_color=True, highlight=False, emoji=False, markup=False, soft_wrap=False)
    for renderable in renderables:
        console.print(renderable)
    text = console.file.getvalue()
    return "\n".join(line.rstrip() for line in text.splitlines()).strip("\n")


def print_summary(document: dict[str, Any], console: Any = None) -> None:
    """Print the summary with colour to a terminal (stdout unless a rich Console is given)."""
    from rich.console import Console

    console = console or Console(highlight=False, emoji=False)
    for renderable in _renderables(document):
        console.print(renderable)


def print_models_summary(results: list[dict[str, Any]], console: Any = None) -> None:
    """Several models: one row each (verdict, peak, gate, exit code), after their own summaries."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = console or Console(highlight=False, emoji=False)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 2, 0, 0))
    table.add_column(Text(f"preflight · {len(results)} models", style="bold"))
    table.add_column("Verdict")
    table.add_column("Peak", justify="right")
    table.add_column("Batch", justify="right")
    table.add_column("Gate")
    table.add_column("Exit", justify="right")
    for result in results:
        code = Text(str(result["exit_code"]), style="green" if result["exit_code"] == 0 else "bold red")
        if result["document"] is None:
            table.add_row(Text(result["name"]), Text(result["message"], style="red"), Text("n/a"), Text("n/a"),
                          Text(""), code)
            continue
        view = build_view(result["document"])
        verdict, gate = view["verdict"], view["gate"]
        table.add_row(Text(result["name"]), Text(verdict["headline"], style=VERDICT_STYLES[verdict["state"]]),
                      Text(verdict["peak_text"]), Text(str(verdict["batch_size"])),
                      Text("passed" if gate["passed"] else "failed", style="green" if gate["passed"] else "bold red"),
                      code)
    console.print(Text(""))
    console.print(table)
