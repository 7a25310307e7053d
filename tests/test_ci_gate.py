"""The CI gate on model pull requests: several models in one run, the baseline diff, loss sanity.

The sample repository tests/data/ci_repo/ has two models, a pyproject.toml listing them and a baseline
folder made by running preflight there (`python -m preflight --baseline none --report-dir baseline`).
"""
from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from preflight.analysis.checks import CheckContext, loss_not_finite, weights_unchanged
from preflight.cli import main
from preflight.settings.config import load_settings
from preflight.analysis.diff import compare_reports
from preflight.errors import ConfigError
from preflight.analysis.gate import GateThresholds, evaluate_gate
from preflight.render.html import render_html
from preflight.render.markdown import render_markdown
from preflight.render.terminal import render_text

CI_REPO = Path(__file__).parent / "data" / "ci_repo"


def _document(layers: list[tuple[str, int, int]], peak: int = 100_000, step: float = 0.01) -> dict:
    """A report document by hand: layers as (name, params, activation bytes per sample)."""
    return {
        "model": {"name": "m", "params_total": sum(p for _, p, _ in layers), "optimizer_bytes": 8 * sum(p for _, p, _ in layers)},
        "batch_size": 32, "peak_bytes": peak, "fits": True, "findings": [],
        "probes": [{"batch_size": 32, "status": "ok", "peak_bytes": peak, "step_seconds": step}],
        "layers": [{"name": n, "type": "Dense", "params": p, "activation_bytes_per_sample": a} for n, p, a in layers],
    }


def test_diff_names_layers_added_removed_and_changed():
    baseline = _document([("embed", 1000, 400), ("hidden", 8320, 512), ("old_head", 10, 40)])
    current = _document([("embed", 1000, 400), ("hidden", 16640, 1024), ("new_head", 20, 40)])
    diff = compare_reports(baseline, current)
    changes = {row["name"]: (row["change"], row["params"]) for row in diff["layers"]}
    assert changes == {"hidden": ("changed", [8320, 16640]), "new_head": ("added", [None, 20]),
                       "old_head": ("removed", [10, None])}
    params = next(q for q in diff["quantities"] if q["key"] == "params_total")
    assert params["change"] == pytest.approx((17660 - 9330) / 9330)


def test_each_threshold_fails_with_its_own_reason_naming_the_layer():
    baseline = _document([("hidden", 8320, 512)], peak=100_000, step=0.010)
    current = _document([("hidden", 16640, 1024)], peak=104_000, step=0.030)
    current["baseline_diff"] = compare_reports(baseline, current)
    result = evaluate_gate(current, GateThresholds(peak=0.10, params=0.10, step_time=0.5))
    assert [f.id for f in result.failures] == ["gate-params", "gate-step-time"]  # peak +4 % is within 10 %
    assert "layer 'hidden' (Dense) params 8,320 → 16,640 (+100%)" in result.reasons[0]
    assert "max-step-time-increase" in result.reasons[1]
    assert evaluate_gate(current, GateThresholds(peak=0.10, params=1.5, step_time=3.0)).passed
    assert evaluate_gate(current).passed  # no thresholds: the diff is shown, nothing is gated


def test_the_diff_is_in_every_renderer_and_escaped():
    baseline = _document([("hidden", 8320, 512)])
    current = _document([("hidden", 16640, 1024), ("<b>x</b>", 5, 4)])
    current.update(device={"kind": "CPU", "name": "cpu", "allocator": "BFC"}, footprint={}, budget_bytes=None)
    current["baseline_diff"] = compare_reports(baseline, current)
    current["gate"] = evaluate_gate(current, GateThresholds(params=0.1)).to_dict()
    markdown, text, html = render_markdown(current), render_text(current), render_html(current)
    assert "| `hidden` | Dense | changed | 8,320 → 16,640 (+100%) | 512 B → 1.0 KiB (+100%) |" in markdown
    assert "Against the baseline" in text and "hidden (Dense)" in text and "8,320 → 16,640 (+100%)" in text
    assert 'id="baseline-diff"' in html and "8,320 → 16,640 (+100%)" in html
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in markdown


def test_a_baseline_at_another_batch_size_is_not_comparable():
    baseline = dict(_document([("hidden", 10, 4)]), batch_size=64)
    current = _document([("hidden", 10, 4)])
    current["baseline_diff"] = compare_reports(baseline, current)
    assert current["baseline_diff"]["quantities"] == []
    result = evaluate_gate(current, GateThresholds(peak=0.1))
    assert [f.id for f in result.failures] == ["baseline-not-comparable"]


def test_loss_sanity_checks_and_the_gate():
    document = _document([("hidden", 10, 4)])
    document["probes"][0].update(losses=[0.7, "nan"], weights_changed=True)
    finding = loss_not_finite(CheckContext(document, None))
    assert finding.severity == "error" and "nan in 1 of 2" in finding.message
    document["findings"] = [finding.to_dict()]
    assert [f.id for f in evaluate_gate(document).failures] == ["loss-not-finite"]
    document["probes"][0].update(losses=[0.7, 0.6], weights_changed=False)
    assert loss_not_finite(CheckContext(document, None)) is None
    assert weights_unchanged(CheckContext(document, None)).severity == "warning"
    document["probes"][0]["weights_changed"] = None  # not compared (large model): no finding
    assert weights_unchanged(CheckContext(document, None)) is None


def test_models_config_expands_globs_and_keeps_per_model_settings(tmp_path):
    (tmp_path / "models").mkdir()
    for name in ("a", "b"):
        (tmp_path / "models" / f"{name}.py").write_text("")
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(textwrap.dedent("""
        [tool.preflight]
        budget = "1GiB"
        [[tool.preflight.models]]
        path = "models/*.py"
        batch-size = 16
        max-params-increase = "5%"
    """))
    settings = load_settings({}, pyproject=pyproject, environ={})
    assert [entry.name for entry in settings.models] == ["a", "b"]
    first = settings.models[0].settings(settings)
    assert (first.batch_size, first.budget, first.max_params_increase) == (16, "1GiB", "5%")
    pyproject.write_text('[[tool.preflight.models]]\npath = "models/*.py"\nname = "x"\n'
                         '[[tool.preflight.models]]\npath = "models/a.py"\n')
    with pytest.raises(ConfigError, match="two models are named 'a'"):
        load_settings({}, pyproject=pyproject, environ={})
    pyproject.write_text('[[tool.preflight.models]]\npath = "nothing/*.py"\n')
    with pytest.raises(ConfigError, match="matches no file"):
        load_settings({}, pyproject=pyproject, environ={})


def test_no_model_file_and_no_models_listed_is_a_usage_error(tmp_path, monkeypatch, capsys):
    (tmp_path / "pyproject.toml").write_text('[tool.preflight]\nbudget = "1GiB"\n')
    monkeypatch.chdir(tmp_path)
    assert main([]) == 2
    assert "[[tool.preflight.models]]" in capsys.readouterr().err


@pytest.fixture
def ci_repo(tmp_path, monkeypatch) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(CI_REPO, repo, ignore=shutil.ignore_patterns("preflight-reports"))
    monkeypatch.chdir(repo)
    return repo


@pytest.mark.slow
def test_unchanged_models_pass_the_gate(ci_repo):
    assert main(["--quiet"]) == 0
    summary = (ci_repo / "preflight-reports" / "summary.md").read_text()
    assert "| classifier | ✅ Fits |" in summary and "| regressor |" in summary
    assert "No layer was added, removed or changed." in summary
    document = json.loads((ci_repo / "preflight-reports" / "classifier.json").read_text())
    assert document["gate"]["passed"] and document["baseline_diff"]["comparable"]
    assert all(isinstance(loss, float) for probe in document["probes"] for loss in probe["losses"])


@pytest.mark.slow
def test_doubling_a_dense_layer_fails_the_gate_naming_the_layer(ci_repo):
    model_file = ci_repo / "models" / "classifier.py"
    model_file.write_text(model_file.read_text().replace('Dense(128, activation="relu", name="hidden")',
                                                         'Dense(256, activation="relu", name="hidden")'))
    assert main(["--quiet", "--markdown", "step-summary.md"]) == 1
    summary = (ci_repo / "step-summary.md").read_text()
    assert "❌ failed" in summary.splitlines()[0]
    rows = {line.split("|")[1].strip(): line for line in summary.splitlines() if line.startswith("| classifier")
            or line.startswith("| regressor")}
    assert rows["classifier"].endswith("| ❌ failed | 1 |") and rows["regressor"].endswith("| ✅ passed | 0 |")
    assert "parameters grew +99.9% against the baseline (9,610 → 19,210)" in summary
    assert "layer 'hidden' (Dense) params 8,320 → 16,640 (+100%)" in summary
    assert "| `hidden` | Dense | changed | 8,320 → 16,640 (+100%) |" in summary
    html = (ci_repo / "preflight-reports" / "classifier.html").read_text()
    assert 'id="baseline-diff"' in html and "16,640" in html


@pytest.mark.slow
def test_nan_loss_and_unchanged_weights_are_measured_findings(models_dir):
    import preflight

    nan_report = preflight.check(models_dir / "nan_loss.py", probe_batch_sizes=[4], steps=2, progress=False)
    assert nan_report.document["probes"][0]["losses"] == ["nan", "nan"]
    assert [f["id"] for f in nan_report.findings] == ["loss-not-finite"]
    assert not evaluate_gate(nan_report.document).passed
    frozen = preflight.check(models_dir / "zero_gradients.py", probe_batch_sizes=[4], steps=1, progress=False)
    assert frozen.document["probes"][0]["weights_changed"] is False
    assert [f["id"] for f in frozen.findings] == ["weights-unchanged"]
