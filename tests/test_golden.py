"""Golden files for the renderers (issue 22): the terminal text, the Markdown summary and the HTML page of two
saved reports (the sample report: fits, a target, what-ifs, a search; a notebook's report: the fit(...) plan,
skipped magics, an out-of-memory probe above the planned batch), compared whole with what is in tests/golden/.

A change in rendering shows here as a diff to read. When it is intended, rewrite the files and commit them
with the change:  PREFLIGHT_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py
The HTML's charts (SVG from matplotlib, whose output varies between its versions) are left out of the
comparison; tests/test_render_html.py checks them.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from preflight.render.html import render_html
from preflight.render.markdown import render_markdown
from preflight.render.terminal import render_text

DATA = Path(__file__).parent / "data"
GOLDEN = Path(__file__).parent / "golden"
REPORTS = {"sample": DATA / "sample_report.json", "notebook": DATA / "notebook_report.json"}
RENDERERS = {"txt": render_text, "md": render_markdown, "html": render_html}
SVG = re.compile(r"<svg\b.*?</svg>", re.S)


def rendered(report: str, kind: str) -> str:
    text = RENDERERS[kind](json.loads(REPORTS[report].read_text(encoding="utf-8")))
    return SVG.sub("<svg><!-- chart --></svg>", text) if kind == "html" else text


@pytest.mark.parametrize("report", sorted(REPORTS))
@pytest.mark.parametrize("kind", sorted(RENDERERS))
def test_rendering_matches_its_golden_file(report, kind):
    golden = GOLDEN / f"{report}.{kind}"
    text = rendered(report, kind)
    if os.environ.get("PREFLIGHT_UPDATE_GOLDEN"):
        golden.write_text(text, encoding="utf-8")
    expected = golden.read_text(encoding="utf-8")
    if text != expected:
        first = next(i for i, (a, b) in enumerate(zip(text.splitlines() + [""], expected.splitlines() + [""]))
                     if a != b)
        pytest.fail(f"{report}.{kind} differs from {golden} first at line {first + 1}:\n"
                    f"  now:    {text.splitlines()[first] if first < len(text.splitlines()) else '(end)'}\n"
                    f"  golden: {expected.splitlines()[first] if first < len(expected.splitlines()) else '(end)'}\n"
                    "(intended? PREFLIGHT_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py)")


def test_a_golden_file_catches_a_change_in_what_is_rendered():
    """The comparison is not blind: one changed layer name changes every output."""
    document = json.loads(REPORTS["sample"].read_text(encoding="utf-8"))
    document["model"]["name"] = "renamed_model"
    for kind, render in RENDERERS.items():
        assert render(document) != (GOLDEN / f"sample.{kind}").read_text(encoding="utf-8"), kind
