"""Pure unit tests: sizes, settings layering, the CI gate, the footprint split. No TensorFlow."""
from __future__ import annotations

import textwrap

import pytest

from preflight.settings.config import load_settings
from preflight.errors import ConfigError, UsageError
from preflight.analysis.footprint import footprint
from preflight.analysis.diff import compare_reports
from preflight.analysis.gate import GateThresholds, evaluate_gate
from preflight.settings.validate import fraction
from preflight.common.measurements import LayerInfo, ModelInfo, ProbeResult
from preflight.common.units import format_bytes, parse_duration, parse_size


@pytest.mark.parametrize("text,expected", [
    ("15GiB", 15 * 1024**3), ("512MiB", 512 * 1024**2), ("16GB", 16 * 10**9), ("1.5 GiB", int(1.5 * 1024**3)),
    ("2g", 2 * 1024**3), (1024, 1024), ("100", 100),
])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "15 GiBs", "-1GiB", ""])
def test_parse_size_rejects_nonsense(text):
    with pytest.raises(UsageError):
        parse_size(text)


def test_format_bytes_uses_powers_of_1024():
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(3 * 1024**3) == "3.0 GiB"
    assert format_bytes(12) == "12 B"
    assert format_bytes(2**30 - 40 * 1024) == "1.0 GiB"  # not "1024.0 MiB": the unit is chosen after rounding
    assert format_bytes(1023.9 * 2**20) == "1023.9 MiB"
    assert format_bytes(None) == "n/a"


def test_parse_duration():
    assert parse_duration("12h") == 43200
    assert parse_duration("90m") == 5400
    assert parse_duration(45) == 45


def test_settings_layering(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(textwrap.dedent("""
        [tool.preflight]
        budget = "8GiB"
        batch-size = 64
        steps = 2
    """))
    environ = {"PREFLIGHT_BATCH_SIZE": "128"}
    settings = load_settings({"steps": 5, "budget": None}, pyproject=pyproject, environ=environ)
    assert settings.budget == "8GiB"      # from pyproject; the None flag does not override
    assert settings.batch_size == 128     # environment beats pyproject
    assert settings.steps == 5            # flags beat both


def test_processes_from_each_layer_and_refused_out_of_range(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("[tool.preflight]\nprocesses = 3\n")
    assert load_settings({}, pyproject=pyproject, environ={}).processes == 3
    assert load_settings({}, pyproject=pyproject, environ={"PREFLIGHT_PROCESSES": "1"}).processes == 1
    assert load_settings({"processes": 2}, pyproject=pyproject, environ={"PREFLIGHT_PROCESSES": "1"}).processes == 2
    assert load_settings({}, pyproject=None, environ={}).processes == 2  # the default: the spread between two
    with pytest.raises(UsageError, match="--processes = 0 is not allowed: it must be a whole number from 1 to 5"):
        load_settings({"processes": 0}, pyproject=None, environ={})


def test_settings_warn_on_unknown_key(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.preflight]\nbudgett = "8GiB"\n')
    with pytest.warns(UserWarning, match="budgett"):
        load_settings({}, pyproject=pyproject, environ={})


def test_settings_reject_bad_value(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.preflight]\nsteps = "many"\n')
    with pytest.raises(ConfigError, match="steps"):
        load_settings({}, pyproject=pyproject, environ={})


def test_gate_fails_on_growth_over_baseline():
    baseline = {"batch_size": 32, "peak_bytes": 100 * 2**20, "fits": True}
    grown = {"batch_size": 32, "peak_bytes": 120 * 2**20, "fits": True}
    grown["baseline_diff"] = compare_reports(baseline, grown)
    assert not evaluate_gate(grown, GateThresholds(peak=fraction("10%", "test"))).passed
    assert evaluate_gate(grown, GateThresholds(peak=fraction("25%", "test"))).passed
    other_batch = dict(grown, batch_size=64)
    other_batch["baseline_diff"] = compare_reports(baseline, other_batch)
    result = evaluate_gate(other_batch, GateThresholds(peak=0.5))
    assert not result.passed and "not comparable" in result.reasons[0]


def test_gate_fails_when_it_does_not_fit():
    result = evaluate_gate({"fits": False, "peak_bytes": 10, "budget_bytes": 5})
    assert not result.passed and "does not fit" in result.reasons[0]
    assert evaluate_gate({"fits": None, "peak_bytes": 10}).passed


def test_gate_fails_when_no_probe_measured_anything():
    result = evaluate_gate({"fits": None, "peak_bytes": None, "probes": [{"status": "timeout"}]})
    assert not result.passed and "nothing was measured" in result.reasons[0] and "timeout" in result.reasons[0]
    measured = {"fits": None, "peak_bytes": 10, "probes": [{"status": "ok"}, {"status": "timeout"}]}
    assert evaluate_gate(measured).passed


def _model_info(layers_bytes_per_sample: list[int]) -> ModelInfo:
    layers = [LayerInfo(f"l{i}", "Dense", [None, 8], 10, b) for i, b in enumerate(layers_bytes_per_sample)]
    return ModelInfo(name="m", params_total=100, params_trainable=100, params_non_trainable=0, param_bytes=400,
                     trainable_param_bytes=400, param_bytes_by_dtype={"float32": 400}, optimizer="Adam",
                     optimizer_bytes=812, optimizer_slots_per_weight=2.03, input_bytes_per_sample=16,
                     jit_compile=False, dtype_policy="float32", layers=layers)


def test_footprint_parts_add_up_to_the_peak():
    parts, sources = footprint(_model_info([32, 32]), batch_size=10, peak_bytes=10_000)
    assert sum(parts.values()) == 10_000
    assert parts["activations"] == 640 and parts["inputs"] == 160
    assert sources["parameters"] == "measured" and sources["activations"] == "derived"


def test_footprint_caps_activations_at_the_peak():
    parts, sources = footprint(_model_info([10_000]), batch_size=10, peak_bytes=5_000)
    assert sum(parts.values()) == 5_000 and parts["other"] == 0
    assert "capped" in sources["activations"]


def test_probe_spread():
    probe = ProbeResult(8, "ok", peak_bytes=100, peak_bytes_runs=[80, 100, 90])
    assert probe.spread == pytest.approx(0.2)
    assert ProbeResult.from_dict(probe.to_dict()) == probe


def test_import_preflight_and_its_entry_points_load_no_tensorflow():
    import subprocess
    import sys

    code = ("import sys, preflight; preflight.check; preflight.check_search; preflight.guard; "
            "import preflight.cli, preflight.analysis.document, preflight.whatif.recommend; "
            "print('tensorflow' in sys.modules or 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
