"""The terminal summary, the Markdown summary and the view model, from the sample report (no TF)."""
from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from preflight.errors import UsageError
from preflight.render import render
from preflight.render.markdown import escape_markdown, render_markdown
from preflight.render.terminal import WIDTH, print_summary, render_text
from preflight.render.view import (build_view, format_bytes_series, format_percent, format_seconds,
                                   format_shape, memory_driver)
from preflight.common.units import format_bytes

SAMPLE = Path(__file__).parent / "data" / "sample_report.json"
ANSI = re.compile(r"\x1b\[")


@pytest.fixture()
def document() -> dict:
    return json.loads(SAMPLE.read_text(encoding="utf-8"))


def test_text_starts_with_the_verdict_line(document):
    lines = render_text(document).splitlines()
    assert lines[0] == f"preflight · {document['model']['name']}: FITS"
    peak, budget = format_bytes(document["peak_bytes"]), format_bytes(document["budget_bytes"])
    spare = format_bytes(document["budget_bytes"] - document["peak_bytes"])
    assert lines[1] == (f"Peak {peak} of {budget} {document['target']['name']} usable at batch size "
                        f"{document['batch_size']}: {spare} to spare.")


def test_text_verdict_when_it_does_not_fit(document):
    document.update(fits=False, budget_bytes=document["peak_bytes"] // 2, target=None)
    lines = render_text(document).splitlines()
    assert lines[0].endswith(": DOES NOT FIT")
    over = format_bytes(document["peak_bytes"] - document["budget_bytes"])
    assert f"exceeds {format_bytes(document['budget_bytes'])} budget" in lines[1]
    assert lines[1].endswith(f"by {over}.")


def test_text_lists_footprint_probes_findings_and_recommendations(document):
    text = render_text(document)
    view = build_view(document)
    for row in view["footprint"]["rows"]:
        assert re.search(rf"^{re.escape(row['label'])}\s+{re.escape(format_bytes(row['bytes']))}\s+"
                         rf"{re.escape(row['share_text'])}\s+{row['source']}$", text, flags=re.M), row["label"]
    for probe in document["probes"]:
        assert re.search(rf"batch {probe['batch_size']}\s+{probe['status']}\s+"
                         rf"{re.escape(format_bytes(probe['peak_bytes']))}", text)
    for finding in document["findings"]:
        assert finding["severity"].upper() in text
        assert finding["message"].split()[0] in text
    first = document["recommendations"][0]
    assert f"- {first['title']}: peak {format_bytes(first['peak_bytes'])}" in text
    assert f"recommended {document['recommended_batch_size']:,}" in text


def test_text_is_plain_and_fits_the_width(document):
    text = render_text(document)
    assert not ANSI.search(text)
    assert max(len(line) for line in text.splitlines()) <= WIDTH
    assert text == text.strip()


def test_text_prints_rich_markup_in_names_literally(document):
    document["model"]["name"] = "[bold red]net[/bold red]"
    document["findings"][0]["message"] = "layer [link=x]dense[/link] is large"
    text = render_text(document)
    assert "[bold red]net[/bold red]" in text
    assert "[link=x]dense[/link]" in text


def test_print_summary_colours_a_terminal(document):
    buffer = io.StringIO()
    print_summary(document, console=Console(file=buffer, force_terminal=True, color_system="standard", width=WIDTH))
    coloured = buffer.getvalue()
    assert ANSI.search(coloured)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", coloured)
    assert plain.splitlines()[0].endswith(": FITS")


def test_markdown_summary(document):
    document["gate"] = {"passed": False, "reasons": ["peak grew +12% against the baseline"]}
    text = render_markdown(document)
    assert text.startswith(f"### preflight · {escape_markdown(document['model']['name'])}: ✅ Fits\n")
    assert f"**Peak** {format_bytes(document['peak_bytes'])}" in text
    assert format_bytes(document["budget_bytes"]) in text
    assert "**CI gate:** ❌ failed" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + len(document["footprint"])
    for finding in document["findings"]:
        assert f"**{finding['severity']}**" in text


def test_markdown_escapes_tables_and_html(document):
    document["model"]["name"] = "<img src=x onerror=alert(1)> | *x*"
    document["findings"][0]["message"] = "a | b <script>"
    text = render_markdown(document)
    assert "<img" not in text and "<script" not in text
    assert "&lt;img src=x onerror=alert(1)&gt; \\| \\*x\\*" in text
    assert "a \\| b &lt;script&gt;" in text


def test_render_dispatch(document):
    assert render(document, "markdown") == render_markdown(document)
    assert json.loads(render(document, "json")) == document
    with pytest.raises(UsageError):
        render(document, "pdf")


def test_view_formatting_helpers():
    assert format_percent(0.0712) == "7%"
    assert format_percent(0.0004, 1) == "<0.1%"
    assert format_percent(0.0) == "0%"
    assert format_seconds(0.0123) == "12.3 ms"
    assert format_seconds(4.2) == "4.20 s"
    assert format_seconds(5400) == "1 h 30 min"
    assert format_bytes_series([3 * 1024**2, 5 * 1024**2 // 2]) == "3.0, 2.5 MiB"
    assert format_bytes_series([3 * 1024**2, 2 * 1024**3]) == "3.0 MiB, 2.0 GiB"
    assert format_shape([None, 62, 62, 32]) == "(None, 62, 62, 32)"
    assert format_shape([]) == "?"
    assert format_shape([[None, 4], [None, 2]]) == "(None, 4), (None, 2)"


def test_memory_driver_picks_the_hyperparameter_that_tracks_the_peak():
    samples = [{"values": {"units": units, "lr": lr, "name": "a"}, "peak_bytes": 1000 + 10 * units + (7 if lr > 0.005 else 0)}
               for units, lr in [(32, 0.01), (64, 0.001), (128, 0.01), (256, 0.001), (512, 0.01)]]
    assert memory_driver(samples) == "units"
    for sample in samples:
        sample["peak_bytes"] = 1000 + int(1e5 * sample["values"]["lr"])
    assert memory_driver(samples) == "lr"


def test_every_renderer_copes_with_a_run_where_nothing_was_measured():
    document = {"format": 1, "model": {"name": "tiny"}, "batch_size": 8, "peak_bytes": None,
                "budget_bytes": 2**30, "fits": None, "footprint": {}, "footprint_sources": {},
                "probes": [{"batch_size": 8, "status": "crashed", "message": "child exited with -11"}],
                "layers": [], "findings": []}
    for fmt in ("html", "text", "markdown"):
        output = render(document, fmt)
        assert "No verdict" in output or "NO VERDICT" in output, fmt
        assert "child exited with -11" in output or fmt == "markdown", fmt
        assert "no peak" in output, fmt


def test_renderers_import_neither_tensorflow_nor_matplotlib():
    import subprocess
    import sys

    code = ("import sys, preflight.render.html, preflight.render.terminal, preflight.render.markdown; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'matplotlib') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
