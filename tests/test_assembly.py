"""One assembly (preflight.analysis.assemble): the CLI, check() and check_search() hand over facts and get the
same document back. Real checks of tiny models: the CLI in a fresh process, the API in this one.

Measured values differ from one process to the next (step times, the host's free memory), so the documents
are compared in their structure (every key, each value's type, the forms a list's items take) and in every
value that is not a measurement (verdict, gate, finding ids, the planned batch, what ran). The run check is
measured under JAX, whose compiled step has the same peak in every process (XLA assigns its buffers
statically). How many batch sizes the decision round adds depends on the measured step times (it may cost
at most half the time before it, engine.plan), so only the first round's probes are compared one by one.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import preflight
from preflight.analysis.schema import problems
from preflight.errors import UsageError

MODELS = Path(__file__).parent / "models"
ASIDE = {"created_at", "timing"}  # when, and how long: never the same twice


def structure(value):
    """The document's shape: keys, value types and the forms a list's items take; no measured numbers."""
    if isinstance(value, dict):
        return {key: structure(item) for key, item in value.items() if key not in ASIDE}
    if isinstance(value, list):  # the forms its items take, however many
        return sorted({repr(structure(item)) for item in value})
    if isinstance(value, bool) or value is None:
        return value
    return type(value).__name__ if not isinstance(value, int) else "number"


def decisions(document: dict) -> dict:
    """What a reader acts on, none of it a measurement."""
    return {"fits": document.get("fits"), "gate": document.get("gate"), "batch_size": document.get("batch_size"),
            "budget_bytes": document.get("budget_bytes"), "model": (document.get("model") or {}).get("name"),
            "findings": sorted(f["id"] for f in document.get("findings") or []),
            "first_probes": [(p["batch_size"], p["status"]) for p in document.get("probes") or []
                             if p["batch_size"] <= 2 * (document.get("batch_size") or 0)],
            "backend": (document.get("backend") or {}).get("name"),
            "recommendations": [r.get("kind") for r in document.get("recommendations") or []]}


def _cli(tmp_path: Path, *argv: str) -> dict:
    report = tmp_path / "cli.json"
    completed = subprocess.run([sys.executable, "-m", "preflight", *argv, "--json", str(report), "--html", "none",
                                "--quiet"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                               env={**os.environ, "PREFLIGHT_CALIBRATION": "none"})
    assert report.is_file(), completed.stderr[-2000:]
    return json.loads(report.read_text())


def test_the_cli_and_check_assemble_the_same_document(tmp_path):
    pytest.importorskip("jax")
    model = str(MODELS / "cnn.py")
    baseline = tmp_path / "baseline.json"
    # 64 MiB: the decision round's batch sizes stay near the planned one (at 1 GiB it compiles steps of ~1000)
    options = {"budget": "64MiB", "batch_size": 16, "backend": "jax", "max_batch_time": 0, "steps": 1,
               "progress": False, "calibration": "none"}
    baseline.write_text(preflight.check(model, **options).to_json())
    cli = _cli(tmp_path, model, "--budget", "64MiB", "--batch-size", "16", "--backend", "jax", "--max-batch-time", "0",
               "--steps", "1", "--baseline", str(baseline), "--max-increase", "50%")
    api = preflight.check(model, **options, baseline=str(baseline), gate={"max_increase": "50%"}).document
    assert decisions(cli) == decisions(api)
    assert structure(cli) == structure(api)
    assert problems(cli) == [] and problems(api) == []  # the shape Report.load checks (analysis.schema)
    assert cli["gate"]["passed"] and "baseline_diff" in cli and cli["baseline_diff"]["comparable"]


def test_the_cli_and_check_search_assemble_the_same_search_document(tmp_path):
    path = MODELS / "tune_class_ids.py"
    cli = _cli(tmp_path, str(path), "--budget", "1GiB", "--configs", "2", "--samples", "8")
    spec = importlib.util.spec_from_file_location("tune_class_ids_for_assembly", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    api = preflight.check_search(module.build_model, module.train_data, batch_size=16, budget="1GiB",
                                 n_measure=2, n_samples=8, name="tune_class_ids").document
    assert decisions(cli) == decisions(api)
    assert problems(cli) == [] and problems(api) == []
    cli_search, api_search = cli.pop("search"), api.pop("search")
    assert structure(cli) == structure(api)
    # The search section records where its configurations came from (a file read without running its
    # search, or objects handed over in this process); everything else in it has the same form.
    cli_search.pop("source", None), api_search.pop("source", None)
    assert structure(cli_search).keys() == structure(api_search).keys()


def test_nothing_outside_the_assembly_writes_a_key_into_a_report():
    """The doors (api, cli) hand facts to preflight.analysis.assemble; none of them patches a document."""
    package = Path(preflight.__file__).parent
    doors = [package / "api.py", *sorted((package / "cli").glob("*.py"))]
    patching = [f"{path.name}: {line.strip()}" for path in doors for line in path.read_text().splitlines()
                if "document[" in line and "] =" in line or '.document["' in line and "] =" in line]
    assert patching == []
    # ... and every finding they cause is a check in the registry, not a dict written on the way
    raw = [path.name for path in [*doors, package / "analysis" / "assemble.py"] if '"id": "' in path.read_text()]
    assert raw == []


@pytest.mark.parametrize("gate, message", [({"max_growth": "10%"}, "unknown threshold max_growth"),
                                           ({"max_increase": "ten"}, "max_increase")])
def test_a_bad_gate_is_refused_before_anything_runs(gate, message):
    with pytest.raises(UsageError) as raised:
        preflight.check(str(MODELS / "cnn.py"), budget="1GiB", gate=gate, progress=False)
    assert message in str(raised.value)


def test_the_sizes_the_largest_batch_search_ran_are_measured_points_of_the_curve():
    """Issue 21: near the largest batch the curve is what model.fit measured in fresh processes, not a
    prediction from probes that ran far below it (built by hand: no TensorFlow)."""
    from preflight.analysis.assemble import CheckFacts, assemble_check
    from preflight.analysis.document import RunSettings, confirmation_record
    from preflight.common.measurements import DeviceInfo, ProbeOutcome, ProbeResult

    mib = 2**20

    def ok(size: int, *peaks_mib: int) -> ProbeResult:
        runs = [p * mib for p in peaks_mib]
        return ProbeResult(size, "ok", peak_bytes=max(runs), peak_bytes_runs=runs, step_seconds=0.01)

    outcome = ProbeOutcome(device=DeviceInfo("CPU", "cpu", "BFC", memory_limit_bytes=2048 * mib),
                           probes=[ok(1, 40), ok(8, 110), ok(16, 180), ok(32, 330, 340)])
    largest = {**confirmation_record(88, "ok", 950 * mib, 1024 * mib, [100], process_peaks=[940 * mib, 950 * mib]),
               "method": "model.fit, 3 steps",
               "runs": {"64": [700 * mib], "80": [820 * mib, 830 * mib], "88": [940 * mib, 950 * mib]}}
    facts = CheckFacts(outcome, RunSettings(batch_size=32, budget_bytes=1024 * mib), "by hand")
    before = {row["batch_size"]: row for row in assemble_check(facts)["curve"]}
    facts.confirmations = {"largest": largest, "recommended": None}
    document = assemble_check(facts)
    curve = {row["batch_size"]: row for row in document["curve"]}
    assert 64 not in before or before[64]["source"] == "predicted"
    assert curve[64]["source"] == "measured" and curve[80]["source"] == "measured"
    assert curve[80]["measured_bytes"] == 830 * mib
    assert 88 not in curve or curve[88]["source"] == "predicted"   # 93 % of the limit: perhaps squeezed
    # between measured points the curve interpolates them, with the spread seen between processes as margin
    assert 830 * mib < curve[80]["peak_bytes"] < 830 * mib * 1.1
    assert document["max_batch_size"] == 88
