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

# Only what can start emphasis, code, a link or a table cell inside a line; the renderer never
# starts a line with user text, so line-start syntax (#, -, 1.) needs no escape.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def escape_markdown(text: object) -> str:
    """Text that renders as itself in Markdown tables and lines, and never as HTML."""
    escaped = _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))
    escaped = escaped.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return " ".join(escaped.split())


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

    gate = view["gate"]
    if gate:
        lines.append("")
        mark = "✅ passed" if gate["passed"] else "❌ failed"
        lines.append(f"**CI gate:** {mark}")
        lines.extend(f"- {esc(reason)}" for reason in gate["reasons"])

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

    recommendations = view["recommendations"]
    if recommendations and recommendations["helpful"]:
        lines += ["", "**To make it fit**", ""]
        for row in recommendations["helpful"][:MAX_RECOMMENDATIONS]:
            line = f"- {esc(row['title'])}: peak {esc(row['peak_text'])}"
            if row["saving_bytes"] is not None:
                line += f", saves {esc(row['saving_text'])}"
            if row["fits_text"]:
                line += f" ({esc(row['fits_text'])})"
            if row["lead"]:
                line += " **← try this first**"
            lines.append(line)

    search = view["search"]
    if search:
        line = f"**Search:** {esc(search['fit_text'])}"
        worst = search["worst_case"]
        if worst:
            line += f"; worst case {esc(worst['summary_text'])}"
        line += f"; {esc(search['budget_text'])}"
        lines += ["", line]

    findings = view["findings"]
    if findings:
        lines += ["", "**Findings**", ""]
        for finding in findings[:MAX_FINDINGS]:
            lines.append(f"- {SEVERITY_MARKS[finding['severity']]} **{finding['severity']}** {esc(finding['message'])}")
        if len(findings) > MAX_FINDINGS:
            lines.append(f"- … and {len(findings) - MAX_FINDINGS} more in the full report")
    return "\n".join(lines) + "\n"
