"""The HTML page and the notebook fragment, rendered from the hand-written sample report (no TF)."""
from __future__ import annotations

import copy
import html
import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import jinja2
import pytest

from preflight.render import html as html_render
from preflight.render.html import (build_charts, embedded_json, environment, render_html,
                                   render_notebook_html, render_view)
from preflight.render.view import build_view
from preflight.common.units import format_bytes

SAMPLE = Path(__file__).parent / "data" / "sample_report.json"
OPTIONAL_SECTIONS = {"curve": "curve", "recommendations": "recommendations",
                     "peak_composition": "peak-composition", "search": "search"}
HOSTILE = ["<img src=x onerror=alert(1)>", "</script><script>alert(1)</script>"]
DATA_TAG = re.compile(r'<script type="application/json" id="preflight-data">(.*?)</script>', re.S)


@pytest.fixture()
def document() -> dict:
    return json.loads(SAMPLE.read_text(encoding="utf-8"))


def hostile_document(document: dict) -> dict:
    """Every user-controlled string the page shows carries markup that must stay text."""
    doc = copy.deepcopy(document)
    doc["layers"][0]["name"] = HOSTILE[0]
    doc["layers"][1]["name"] = HOSTILE[1]
    doc["layers"][2]["type"] = HOSTILE[0]
    doc["model"]["name"] = HOSTILE[1]
    doc["model"]["optimizer"] = HOSTILE[0]
    doc["device"]["name"] = HOSTILE[1]
    doc["target"]["name"] = HOSTILE[0]
    doc["target"]["description"] = HOSTILE[1]
    doc["findings"][0]["message"] = HOSTILE[1]
    doc["findings"][1]["id"] = HOSTILE[0]
    doc["probes"][0]["message"] = HOSTILE[1]
    doc["recommendations"][0]["title"] = HOSTILE[1]
    doc["recommendations"][1]["snippet"] = HOSTILE[0]
    doc["recommendations"][1]["params"] = {HOSTILE[0]: HOSTILE[1]}
    doc["recommendations"][2]["tradeoff"] = HOSTILE[0]
    doc["recommendations"][3]["message"] = HOSTILE[1]
    doc["peak_composition"]["phase"] = HOSTILE[1]
    doc["peak_composition"]["top_allocations"][0]["op"] = HOSTILE[0]
    doc["search"]["bounds"] = {HOSTILE[0]: HOSTILE[1]}
    doc["search"]["trials"][0]["status"] = HOSTILE[1]
    # The search chart's x label is the hyperparameter name: rename it everywhere.
    for sample in doc["search"]["samples"]:
        sample["values"][HOSTILE[1]] = sample["values"].pop("units")
    doc["search"]["hyperparameters"][0]["name"] = HOSTILE[1]
    doc["gate"] = {"passed": False, "reasons": [HOSTILE[0]]}
    return doc


def embedded_document(page: str) -> dict:
    matches = DATA_TAG.findall(page)
    assert len(matches) == 1
    return json.loads(matches[0])


def section_ids(page: str) -> set[str]:
    return set(re.findall(r'<section id="([^"]+)"', page))


def test_page_shows_verdict_peak_budget_and_every_layer(document):
    page = render_html(document)
    assert '<header class="verdict fits"' in page
    assert '<div class="headline">Fits</div>' in page
    assert format_bytes(document["peak_bytes"]) in page
    assert format_bytes(document["budget_bytes"]) in page
    for layer in document["layers"]:
        assert f'<td class="mono">{html.escape(layer["name"])}</td>' in page
    for probe in document["probes"]:
        assert format_bytes(probe["peak_bytes"]) in page
    for finding in document["findings"]:
        assert html.escape(finding["message"]) in page
    assert {"verdict", "findings", "footprint", "probes", "facts", "layers"} <= set(
        re.findall(r'id="([^"]+)"', page))


@pytest.mark.parametrize("fits, budget, state, headline", [
    (False, 200 * 1024**2, "does-not-fit", "Does not fit"),
    (None, None, "no-budget", "No budget given"),
    (None, 200 * 1024**2, "unknown", "No verdict"),
])
def test_page_verdict_states(document, fits, budget, state, headline):
    document.update(fits=fits, budget_bytes=budget)
    if budget is None:
        document["target"] = None
    page = render_html(document)
    assert f'<header class="verdict {state}"' in page
    assert f'<div class="headline">{headline}</div>' in page
    assert '<div class="headline">Fits</div>' not in page


def test_markup_in_user_text_is_escaped_everywhere(document):
    doc = hostile_document(document)
    outputs = {"page": render_html(doc), "notebook": render_notebook_html(doc)}
    for name, output in outputs.items():
        for text in HOSTILE:
            assert text not in output, name
        assert "<img" not in output, name
        assert "alert(1)" in output, f"{name} dropped the text instead of escaping it"
    page = outputs["page"]
    assert page.count("<script") == 1
    assert html.escape(HOSTILE[0]) in page
    assert embedded_document(page) == doc


@pytest.mark.parametrize("render", [render_html, render_notebook_html], ids=["page", "notebook"])
def test_no_resource_is_loaded_from_the_network(document, render):
    page = render(document)
    loads = re.findall(r"""(?:src|href|action|xlink:href)\s*=\s*["']?\s*([^"'\s>]+)""", page, flags=re.I)
    assert loads, "expected the SVG charts' local references"
    assert all(link.startswith("#") for link in loads), loads
    assert not re.search(r"url\(\s*['\"]?\s*(?:https?:)?//", page, flags=re.I)
    assert "@import" not in page
    assert "<link" not in page
    assert not re.search(r"<script[^>]*\bsrc=", page, flags=re.I)


def test_embedded_json_round_trips(document):
    page = render_html(document)
    assert embedded_document(page) == document


def test_embedded_json_has_no_raw_markup_characters():
    document = {"text": "</script><!-- & -->", "nested": ["<b>", {"k>": "&amp;"}]}
    text = embedded_json(document)
    assert not set("<>&") & set(text)
    assert json.loads(text) == document


@pytest.mark.parametrize("key", list(OPTIONAL_SECTIONS))
def test_optional_sections_only_when_present(document, key):
    assert OPTIONAL_SECTIONS[key] in section_ids(render_html(document))
    del document[key]
    ids = section_ids(render_html(document))
    assert OPTIONAL_SECTIONS[key] not in ids
    assert {OPTIONAL_SECTIONS[other] for other in OPTIONAL_SECTIONS if other != key} <= ids


def test_bare_document_renders_without_optional_sections(document):
    for key in ("curve", "max_batch_size", "recommended_batch_size", "recommendations",
                "peak_composition", "search"):
        del document[key]
    page = render_html(document)
    assert not set(OPTIONAL_SECTIONS.values()) & section_ids(page)
    assert page.count("<svg") == 1  # the footprint bar only


def test_optional_sections_tolerate_missing_fields(document):
    document.update(curve=[], recommendations=[{"kind": "mixed_precision"}], peak_composition={},
                    search={}, recommended_batch_size=None, max_batch_size=None)
    document["probes"].append({"batch_size": 256, "status": "oom"})
    page = render_html(document)
    assert set(OPTIONAL_SECTIONS.values()) <= section_ids(page)
    assert '<span class="badge oom">oom</span>' in page


def test_every_chart_is_well_formed_inline_svg(document):
    page = render_html(document)
    svgs = re.findall(r"<svg\b.*?</svg>", page, flags=re.S)
    # footprint, curve, before/after bars, timeline, search scatter
    assert len(svgs) == 5
    for svg in svgs:
        ET.fromstring(svg)
    assert "<?xml" not in page
    assert "<!DOCTYPE svg" not in page


def test_strict_undefined_catches_a_missing_view_key(document):
    view = build_view(document)
    charts = build_charts(view)
    render_view(view, charts, embedded_json(document))
    del view["verdict"]["peak_text"]
    with pytest.raises(jinja2.UndefinedError):
        render_view(view, charts, embedded_json(document))


def test_autoescape_is_on_for_every_template():
    env = environment()
    assert isinstance(env.undefined, type) and issubclass(env.undefined, jinja2.StrictUndefined)
    # True, not a select_autoescape() function that would skip .css.j2 or .txt templates.
    assert env.autoescape is True
    assert env.from_string("{{ x }}").render(x="<b>") == "&lt;b&gt;"


def test_notebook_view_shows_the_page_sections_with_long_tables_collapsed(document):
    fragment = render_notebook_html(document)
    assert "<html" not in fragment and "<script" not in fragment
    assert '<div class="headline">Fits</div>' in fragment
    assert format_bytes(document["peak_bytes"]) in fragment
    for finding in document["findings"]:
        assert html.escape(finding["message"]) in fragment
    for part in document["footprint"]:
        assert f"{format_bytes(document['footprint'][part])}" in fragment
    assert 'id="curve"' in fragment and 'class="chart-plot"' in fragment  # the peak-vs-batch chart, inline SVG
    assert 'id="recommendations"' in fragment
    for section in ("probes", "layers", "facts"):
        opened = fragment.index(f'<section id="{section}">')
        assert fragment.rfind('<details class="collapsed">', 0, opened) > fragment.rfind("</details>", 0, opened)
    # The page's stylesheet comes along confined to the view: nothing styles the rest of the notebook.
    style = fragment[fragment.index("<style>") + 7:fragment.index("</style>")]
    rules = [rule.strip() for rule in re.findall(r"([^{}]+)\{", style) if not rule.strip().startswith("@")]
    assert rules and all(s.strip().startswith(".preflight.preflight-notebook") for r in rules for s in r.split(","))


def test_page_renders_from_an_installed_layout(tmp_path, document):
    """As in the wheel: templates inside the package, no reports/ next to it."""
    package_root = Path(html_render.__file__).resolve().parents[1]
    installed = tmp_path / "site" / "preflight"
    shutil.copytree(package_root, installed, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(package_root.parent / "reports" / "templates", installed / "templates")
    report_path = tmp_path / "report.json"
    report_path.write_text(json.dumps(document), encoding="utf-8")
    script = ("import json, sys; from preflight.render import html; "
              "print(html.template_dir()); "
              "page = html.render_html(json.load(open(sys.argv[1]))); "
              "print(len(page), '<div class=\"headline\">Fits</div>' in page)")
    result = subprocess.run([sys.executable, "-c", script, str(report_path)], cwd=tmp_path,
                            env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    where, summary = result.stdout.strip().splitlines()
    assert Path(where) == installed / "templates"
    assert summary.endswith("True")
