"""The Markdown summary for CI comments (GitHub, GitLab): verdict, peak, budget, footprint, findings.

Built from the same view model as the other renderers. User text is escaped twice over: Markdown
punctuation gets a backslash and `<`, `>`, `&` become entities, because the hosts render inline HTML.
"""
from __future__ import annotations

import re
from typing import Any

from preflight.render.view import build_view

VERDICT_MARKS = {"fits": "✅", "does-not-fit": "❌", "no-budget": "➖", "unknown": "⚠️", "trials-fail": "❌"}
SEVERITY_MARKS = {"error": "❌", "warning": "⚠️", "info": "ℹ️"}
MAX_FINDINGS = 8
MAX_RECOMMENDATIONS = 3
MAX_DIFF_LAYERS = 15
EXIT_TEXTS = {0: "passed", 1: "failed", 2: "config error", 3: "model failed", 4: "internal error"}

# Only what can start emphasis, code, a link or a table cell inside a line; the renderer never
# starts a line with user text, so line-start syntax (#, -, 1.) needs no escape.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def escape_markdown(text: object) -> str:
    """Text that renders as itself in Markdown tables and lines, and never as HTML."""
    escaped = _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))
    escaped = escaped.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return " ".join(escaped.split())


def _diff_lines(diff: dict[str, Any] | None) -> list[str]:
    """What grew against the baseline: the whole-run quantities, then the layers that changed."""
    if diff is None:
        return []
    esc = escape_markdown
    if not diff["comparable"]:
        return ["", f"**Against the baseline:** not comparable: {esc(diff['reason'])}"]
    lines = ["", f"**Against the baseline** ({esc(diff['baseline_created_at'])})", "",
             "| | Baseline | This run | Change |", "|---|---:|---:|---:|"]
    for row in diff["rows"]:
        change = f"**{esc(row['change_text'])}**" if row["grew"] else esc(row["change_text"])
        lines.append(f"| {esc(row['label'])} | {esc(row['baseline_text'])} | {esc(row['current_text'])} | {change} |")
    if diff["layers"]:
        lines += ["", "| Layer | Type | Change | Params | Activation / sample |", "|---|---|---|---:|---:|"]
        for layer in diff["layers"][:MAX_DIFF_LAYERS]:
            lines.append(f"| `{esc(layer['name'])}` | {esc(layer['type'])} | {esc(layer['change'])} "
                         f"| {esc(layer['params_text'])} | {esc(layer['activation_text'])} |")
        if len(diff["layers"]) > MAX_DIFF_LAYERS:
            lines += ["", f"… and {len(diff['layers']) - MAX_DIFF_LAYERS} more layers in the full report"]
    else:
        lines += ["", "No layer was added, removed or changed."]
    return lines


def render_markdown(document: dict[str, Any]) -> str:
    """A short Markdown summary of the report."""
    view = build_view(document)
    verdict = view["verdict"]
    esc = escape_markdown
    lines = [f"### preflight · {esc(view['model_name'])}: {VERDICT_MARKS[verdict['state']]} {verdict['headline']}", ""]
    lines.append(esc(verdict["detail"]))
    lines.append("")
    facts = [f"**Peak** {esc(verdict['peak_text'])} ({esc(verdict['peak_origin'])})",
             f"**{esc(verdict['budget_label'])}** {esc(verdict['budget_text'])}"]
    if verdict["used_fraction"] is not None:
        facts.append(f"**Used** {esc(verdict['used_text'])}")
    facts.append(f"**Batch size** {esc(verdict['batch_size'])}")
    lines.append(" · ".join(facts))
    if view["training_plan"]:
        lines += ["", f"**Plan** {esc(view['training_plan'])}"]
    for label, text in view["host"]:
        lines += ["", f"**{esc(label)}** {esc(text)}"]

    gate = view["gate"]
    if gate:
        lines.append("")
        mark = "✅ passed" if gate["passed"] else "❌ failed"
        lines.append(f"**CI gate:** {mark}")
        lines.extend(f"- {esc(reason)}" for reason in gate["reasons"])

    lines += _diff_lines(view["baseline_diff"])

    footprint = view["footprint"]
    if footprint["rows"]:
        lines += ["", f"| Footprint ({esc(footprint['total_text'])}) | Size | Share | Source |",
                  "|---|---:|---:|---|"]
        for row in footprint["rows"]:
            lines.append(f"| {esc(row['label'])} | {esc(row['bytes_text'])} | {esc(row['share_text'])} "
                         f"| {esc(row['source'])} |")

    if view["probes"]:
        probes = ", ".join(f"{probe['batch_size']} ({esc(probe['status'])}, {esc(probe['peak_text'])})"
                           for probe in view["probes"])
        lines += ["", f"**Probes** (batch size, status, peak): {probes}"]

    curve = view["curve"]
    if curve:
        lines += ["", f"**Batch size:** largest that fits {esc(curve['max_batch_text'])}, "
                      f"recommended {esc(curve['recommended_batch_text'])} (peak {esc(curve['recommended_peak_text'])})"]

    lengths = view["length_curve"]
    if lengths:
        lines += ["", f"**{lengths['heading']}** ({esc(lengths['axes_text'])}): planned {esc(lengths['planned_text'])}; "
                      f"at batch {lengths['batch_size']} the longest that fits is {esc(lengths['max_length_text'])}"]
        if lengths["rows"]:
            lines += ["", "| Length | Peak | Source |", "|---:|---:|---|"]
            lines += [f"| {row['length']} | {esc(row['peak_text'])} | {esc(row['source'])} |" for row in lengths["rows"]]

    recommendations = view["recommendations"]
    if recommendations and recommendations["helpful"]:
        header = "To make it fit" if recommendations["any_fits"] or view["verdict"]["state"] != "does-not-fit" \
            else "Measured what-ifs (none fits on its own)"
        lines += ["", f"**{header}**", ""]
        for row in recommendations["helpful"][:MAX_RECOMMENDATIONS]:
            line = f"- {esc(row['title'])}: peak {esc(row['peak_text'])}{esc(row['batch_text'])}"
            if row["saving_bytes"] is not None:
                line += f", saves {esc(row['saving_text'])}"
            if row["fits_text"]:
                line += f" ({esc(row['fits_text'])})"
            if row["lead"]:
                line += " **← try this first**"
            lines.append(line)
            if row["inline_snippet"]:
                lines += [f"  {esc(row['tradeoff'])}", "", "  ```python",
                          *[f"  {code}" for code in row["inline_snippet"].splitlines()], "  ```"]
    if recommendations and recommendations["finetune"]:
        lines += ["", f"**Fine-tuning what-ifs** (measured at batch {view['verdict']['batch_size']})", ""]
        for row in recommendations["finetune"]:
            if row["measured"]:
                lines.append(f"- {esc(row['title'])}: peak {esc(row['peak_text'])} ({esc(row['change_bytes_text'])} "
                             f"against now)" + (f", {esc(row['fits_text'])}" if row["fits_text"] else ""))
            else:
                lines.append(f"- {esc(row['title'])}: {esc(row['status'].replace('_', ' '))}: {esc(row['message'])}")

    search = view["search"]
    if search:
        line = f"**Search:** {esc(search['fit_text'])}"
        worst = search["worst_case"]
        if worst:
            line += f"; worst case {esc(worst['summary_text'])}"
        line += f"; {esc(search['budget_text'])}"
        lines += ["", line] + ([f"_{esc(search['spread_text'])}_"] if search["spread_text"] else [])

    findings = view["findings"]
    if findings:
        lines += ["", "**Findings**", ""]
        for finding in findings[:MAX_FINDINGS]:
            lines.append(f"- {SEVERITY_MARKS[finding['severity']]} **{finding['severity']}** {esc(finding['message'])}")
        if len(findings) > MAX_FINDINGS:
            lines.append(f"- … and {len(findings) - MAX_FINDINGS} more in the full report")
    return "\n".join(lines) + "\n"


def render_models_markdown(results: list[dict[str, Any]]) -> str:
    """Several models: one summary table (a row per model, its exit code), then each model's summary.

    `results`: per model {"name", "path", "exit_code", "message", "document" (None when it failed)}.
    """
    esc = escape_markdown
    worst = max((r["exit_code"] for r in results), default=0)
    lines = [f"## preflight · {len(results)} models: {'✅' if worst == 0 else '❌'} {EXIT_TEXTS.get(worst, worst)}", "",
             "| Model | Verdict | Peak | Batch | Gate | Exit |", "|---|---|---:|---:|---|---:|"]
    for result in results:
        document = result["document"]
        if document is None:
            lines.append(f"| {esc(result['name'])} | ⚠️ {esc(result['message'])} | n/a | n/a | "
                         f"{esc(EXIT_TEXTS.get(result['exit_code'], ''))} | {result['exit_code']} |")
            continue
        view = build_view(document)
        verdict, gate = view["verdict"], view["gate"]
        lines.append(f"| {esc(result['name'])} | {VERDICT_MARKS[verdict['state']]} {esc(verdict['headline'])} "
                     f"| {esc(verdict['peak_text'])} | {esc(verdict['batch_size'])} "
                     f"| {'✅ passed' if gate['passed'] else '❌ failed'} | {result['exit_code']} |")
    parts = ["\n".join(lines) + "\n"]
    parts += [render_markdown(r["document"]) for r in results if r["document"] is not None]
    return "\n".join(parts)
