"""The report's shape (preflight.analysis.schema): every saved report in the repository and every document
the real checks in tests/test_assembly.py produce pass it; each kind of mismatch is named by its path."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from preflight.analysis.schema import problems

DATA = Path(__file__).parent / "data"
SAVED = sorted(DATA.glob("*.json")) + sorted((DATA / "ci_repo" / "baseline").glob("*.json"))


@pytest.mark.parametrize("path", SAVED, ids=lambda p: p.name)
def test_every_saved_report_has_the_shape(path):
    assert problems(json.loads(path.read_text())) == []


@pytest.mark.parametrize("edit, expected", [
    (lambda d: d.pop("findings"), ["report.findings: missing"]),
    (lambda d: d.update(fits="yes"), ["report.fits: true or false expected, found 'yes'"]),
    (lambda d: d.update(budget_bytes=True), ["report.budget_bytes: a whole number expected, found True"]),
    (lambda d: d["footprint"].update(other=1.5), ["report.footprint.other: a whole number expected, found 1.5"]),
    (lambda d: d["probes"][0].update(peak_bytes_runs=[1, "2"]),
     ["report.probes[0].peak_bytes_runs[1]: a whole number expected, found '2'"]),
    (lambda d: d["findings"][0].update(severity="fatal"),
     ["report.findings[0].severity: one of info, warning, error expected, found 'fatal'"]),
    (lambda d: d.update(model=["small_cnn"]), ["report.model: an object expected, found ['small_cnn']"]),
    (lambda d: d.update(curve=[{"batch_size": 8}]),
     ["report.curve[0].peak_bytes: missing", "report.curve[0].source: missing"]),
    (lambda d: d.update(peak_bytes=None, fits=None, gate=None), []),  # absent figures are null, not wrong
])
def test_a_field_of_the_wrong_shape_is_named_by_its_path(edit, expected):
    document = json.loads((DATA / "sample_report.json").read_text())
    edit(document)
    assert problems(document) == expected


def test_what_is_not_an_object_is_one_problem():
    assert problems([1, 2]) == ["report: an object expected, found [1, 2]"]
