"""Renderers: pure functions from the report document (a dict, see `preflight.render.report`) to text.

- `html.render_html`: the self-contained report page; `html.render_notebook_html`: the notebook view.
- `terminal.render_text` / `terminal.print_summary`: the short summary, plain or coloured.
- `markdown.render_markdown`: the summary for CI comments.
- `view.build_view`: the view model all of them lay out; `charts`: inline SVG for the page.
- `comparison`: the backend comparison (`python -m preflight compare`) as text, Markdown and a page.
- `calibration`: the calibration store (`python -m preflight calibration`) as a table.
- `report.Report`: a check's result (the document) with its renderers, its file form and its notebook display.
- Live display while a check runs: `progress` (the progress line or notebook widget), `notebook` (kernel facts).

May import analysis (finding ids), preflight.common and preflight.errors; never the engine, the
features or the doors. None of them imports TensorFlow; each submodule is imported only when its
renderer is asked for.
"""
from __future__ import annotations

import json
from typing import Any, Callable

FORMATS = ("html", "text", "markdown", "json")


def renderer(fmt: str) -> Callable[[dict[str, Any]], str]:
    """The render function for one output format name."""
    if fmt == "html":
        from preflight.render.html import render_html

        return render_html
    if fmt == "text":
        from preflight.render.terminal import render_text

        return render_text
    if fmt == "markdown":
        from preflight.render.markdown import render_markdown

        return render_markdown
    if fmt == "json":
        return lambda document: json.dumps(document, indent=2) + "\n"
    from preflight.errors import UsageError

    raise UsageError(f"unknown report format {fmt!r}", hint=f"use one of: {', '.join(FORMATS)}")


def render(document: dict[str, Any], fmt: str) -> str:
    """render(document, "markdown") -> the report in that format."""
    return renderer(fmt)(document)
