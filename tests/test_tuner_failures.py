"""Search configurations whose dry run fails for the user's reason: the error finding, its fix, exit 3.

Unit tests (no TensorFlow) on the advice and the findings; then real tiny searches whose labels do not
match the loss, checked through `check_search` and every renderer.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from preflight.engine.step_errors import GENERIC_FIX, fix_for
from preflight.analysis.checks import CONFIGURATION_FAILED
from preflight.analysis.search_checks import configurations_failed, configurations_unmeasured

RANK_ERROR = ("ValueError: Arguments `target` and `output` must have the same rank (ndim). "
              "Received: target.shape=(16,), output.shape=(16, 10)")


def test_the_fix_for_class_ids_with_a_categorical_loss_names_both_ways_out():
    fix = fix_for(RANK_ERROR, "categorical_crossentropy")
    assert "keras.utils.to_categorical(y, 10)" in fix and "sparse_categorical_crossentropy" in fix
    assert "(categorical_crossentropy)" in fix


def test_other_label_errors_get_their_own_fix():
    one_hot = fix_for("ValueError: Argument `output` must have rank (ndim) `target.ndim - 1`. "
                      "Received: target.shape=(8, 10), output.shape=(8, 10)", "sparse_categorical_crossentropy")
    assert "argmax" in one_hot and "loss='categorical_crossentropy'" in one_hot
    assert "0 to the output's units - 1" in fix_for("Received a label value of 12 which is outside the valid "
                                                    "range of [0, 10).")
    assert "(8, 5)" in fix_for("Arguments `target` and `output` must have the same shape. "
                               "Received: target.shape=(8, 5), output.shape=(8, 10)")
    assert fix_for("ZeroDivisionError: division by zero") == GENERIC_FIX


def failure_findings(rows):
    """The two search checks that read the dry-run configurations, on a section holding only those."""
    section = {"measurements": rows}
    unmeasured = configurations_unmeasured(section)
    return [f.to_dict() for f in configurations_failed(section) + ([unmeasured] if unmeasured else [])]


def _row(status, values, message="", fix=""):
    return {"values": values, "batch_size": 16, "status": status, "peak_bytes": 2**20 if status == "ok" else None,
            "message": message, "fix": fix}


def test_every_configuration_failing_is_one_error_with_values_error_and_fix():
    rows = [_row("error", {"depth": d, "opt": "adam"}, RANK_ERROR, "one-hot the labels") for d in (4, 8)]
    [finding] = failure_findings(rows)
    assert finding["id"] == CONFIGURATION_FAILED and finding["severity"] == "error"
    message = finding["message"]
    assert message.startswith("every configuration preflight dry-ran failed (2 of 2)")
    assert "3 failed trials in a row" in message and RANK_ERROR in message
    assert "depth=4, opt=adam" in message and message.endswith("Fix: one-hot the labels")


def test_some_configurations_failing_names_the_values_that_make_trials_fail():
    rows = [_row("ok", {"wide": False, "lr": 0.1}), _row("ok", {"wide": False, "lr": 0.01}),
            _row("error", {"wide": True, "lr": 0.1}, RANK_ERROR), _row("error", {"wide": True, "lr": 0.01}, RANK_ERROR)]
    [finding] = failure_findings(rows)
    assert finding["message"].startswith("2 of 4 dry-run configurations failed")
    assert "trials with wide=True fail" in finding["message"] and "lr=" not in finding["message"]


def test_a_dry_run_that_could_not_finish_is_a_warning_not_the_users_error():
    rows = [_row("ok", {"depth": 4}), _row("timeout", {"depth": 8}, "timed out after 300 s"),
            _row("oom", {"depth": 16}, "ResourceExhaustedError: OOM")]
    [finding] = failure_findings(rows)
    assert finding["severity"] == "warning" and finding["id"] != CONFIGURATION_FAILED
    assert "2 of 3" in finding["message"] and "oom, timeout" in finding["message"]


# ---------------------------------------------------------------- real searches (TensorFlow)
keras = pytest.importorskip("keras")
X = np.random.default_rng(0).standard_normal((64, 8)).astype("float32")
Y = np.random.default_rng(1).integers(0, 4, size=(64,))  # class ids


def class_ids_with_categorical_loss(hp):
    inputs = keras.Input((8,))
    x = keras.layers.Dense(hp.Int("units", 8, 64, step=8), activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x))
    model.compile(optimizer=hp.Choice("optimizer", ["adam", "sgd"]), loss="categorical_crossentropy")
    return model


def wide_head_is_categorical(hp):
    """The wide variant was written for one-hot labels: with class ids only its trials fail."""
    wide = hp.Boolean("wide")
    inputs = keras.Input((8,))
    x = keras.layers.Dense(256 if wide else 8, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x))
    model.compile(optimizer="adam", loss="categorical_crossentropy" if wide else "sparse_categorical_crossentropy")
    return model


@pytest.fixture(scope="module")
def failing_document():
    from preflight.analysis.document import search_document
    from preflight.tuner.plan import check_search

    section = check_search(class_ids_with_categorical_loss, (X, Y), batch_size=16, budget_bytes=2**30,
                           epochs=2, max_trials=5, n_samples=10, n_measure=2)
    return search_document(section, "class_ids")


def test_a_search_whose_every_configuration_fails_is_never_called_fitting(failing_document):
    search = failing_document["search"]
    assert [m["status"] for m in search["measurements"]] == ["error", "error"]
    assert failing_document["fits"] is None and search["fits_fraction"] is None
    assert search["worst_case"]["peak_source"] == "shapes" and search["worst_case"]["margin"] == 0.5
    assert search["time_estimate_seconds"] is None
    assert "no dry-run configuration finished a training step" in search["time_estimate_missing"]
    [failed] = [f for f in search["findings"] if f["id"] == CONFIGURATION_FAILED]
    assert "must have the same rank" in failed["message"] and "to_categorical(y, 4)" in failed["message"]


def test_every_renderer_shows_the_failure_and_no_fit_claim(failing_document):
    from preflight.render.html import render_html
    from preflight.render.markdown import render_markdown
    from preflight.render.terminal import render_text

    text = render_text(failing_document)
    assert "class_ids: TRIALS FAIL" in text and "ERROR" in text and "same rank" in text
    assert "no fit verdict: no configuration could be measured" in text
    assert "estimated from layer shapes alone" in text and "50% margin included" in text
    assert "no time estimate (no dry-run configuration finished a training step" in text
    markdown = render_markdown(failing_document)
    assert "Trials fail" in markdown and "to\\_categorical(y, 4)" in markdown
    page = render_html(failing_document)
    assert "Trials fail" in page and "Arguments `target` and `output` must have the same rank" in page
    for rendered in (text, markdown, page):
        assert "predicted from the probes" not in rendered and "about n/a" not in rendered
        assert "100% of" not in rendered
    assert json.loads(json.dumps(failing_document))["search"]["findings"][0]["id"] == CONFIGURATION_FAILED


def test_only_the_failing_values_are_named_when_some_configurations_run():
    from preflight.tuner.plan import check_search

    section = check_search(wide_head_is_categorical, (X, Y), batch_size=16, budget_bytes=2**30,
                           epochs=1, n_samples=6, n_measure=2)
    assert sorted(m["status"] for m in section["measurements"]) == ["error", "ok"]
    [failed] = [f for f in section["findings"] if f["id"] == CONFIGURATION_FAILED]
    assert "1 of 2 dry-run configurations failed" in failed["message"]
    assert "trials with wide=True fail" in failed["message"]
    assert section["worst_case"]["fits"] is not None and section["time_estimate_seconds"] > 0


def test_check_search_in_a_notebook_returns_the_report_with_the_error():
    import preflight

    report = preflight.check_search(class_ids_with_categorical_loss, (X, Y), batch_size=16, budget="1GiB",
                                    n_samples=4, n_measure=1)
    assert report.fits is None
    assert any(f["id"] == CONFIGURATION_FAILED for f in report.findings)
    assert "Trials fail" in report._repr_html_()


def test_a_search_file_checked_by_the_engine_exits_3_with_the_fix(tmp_path, capsys):
    from pathlib import Path

    from preflight.cli import main

    model_file = Path(__file__).parent / "models" / "tune_class_ids.py"
    code = main([str(model_file), "--budget", "1GiB", "--configs", "2", "--samples", "8",
                 "--json", str(tmp_path / "r.json"), "--html", "none"])
    printed = "".join(capsys.readouterr())
    assert code == 3 and "Traceback" not in printed
    search = json.loads((tmp_path / "r.json").read_text())["search"]
    assert search["source"]["search_call_recorded"] is False  # measured by the dry-run engine
    assert [m["status"] for m in search["measurements"]] == ["error", "error"]
    assert "to_categorical(y, 4)" in printed
