"""`python -m preflight render REPORT.json`: re-render a saved report (or a `compare` JSON)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from preflight import errors
from preflight.cli.files import read_report, write_report


def run(argv: list[str]) -> int:
    from preflight.analysis.comparison import COMPARISON_KIND
    from preflight.render.comparison import render_comparison_html, render_comparison_markdown
    from preflight.render.html import render_html
    from preflight.render.markdown import render_markdown
    from preflight.settings.validate import output_file

    parser = argparse.ArgumentParser(prog="python -m preflight render",
                                     description="Re-render a saved JSON report (or a `compare` JSON).")
    parser.add_argument("report_json")
    parser.add_argument("--html", help="write the HTML page here (default: next to the JSON)")
    parser.add_argument("--markdown", help="also write a Markdown summary (for CI comments)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return errors.EXIT_OK if exc.code == 0 else errors.EXIT_USAGE
    html_path = output_file(args.html or str(Path(args.report_json).with_suffix(".html")), "--html")
    markdown_path = output_file(args.markdown, "--markdown") if args.markdown else None
    document = read_report(args.report_json, comparison=True)
    comparison = document.get("kind") == COMPARISON_KIND
    to_html = render_comparison_html if comparison else render_html
    to_markdown = render_comparison_markdown if comparison else render_markdown
    if html_path:
        write_report(html_path, to_html(document))
    if markdown_path:
        write_report(markdown_path, to_markdown(document))
    print(f"report: {', '.join(p for p in (html_path, markdown_path) if p)}", file=sys.stderr)
    return errors.EXIT_OK
