"""`python -m preflight tune.py` on keras-tuner's own hypermodels and on a Tuner with its own run_trial.

The issue-16 search (HyperResNet, class-id labels, categorical_crossentropy) must exit 3 naming the
label/loss mismatch; with one-hot labels it must exit 0 with measured configurations and a time
estimate. Tiny data (64 rows), 2 dry-run configurations, 20 sampled: 12-110 s per file on 2 cores.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from preflight.cli import main

pytest.importorskip("keras_tuner")
MODELS = Path(__file__).resolve().parent / "models"
FAST = ["--budget", "4GiB", "--time-limit", "1h", "--configs", "2", "--samples", "20"]


def run_cli(name: str, tmp_path, monkeypatch, capsys) -> tuple[int, dict, str]:
    monkeypatch.chdir(tmp_path)  # the tuners in these files write their project directory here
    code = main([str(MODELS / name), *FAST, "--json", "report.json", "--html", "report.html"])
    out, err = capsys.readouterr()
    return code, json.loads((tmp_path / "report.json").read_text()), out + err


@pytest.mark.slow  # keras-tuner's large hypermodels, end to end
def test_hyper_resnet_with_class_ids_exits_3_and_names_the_label_loss_mismatch(tmp_path, monkeypatch, capsys):
    code, document, printed = run_cli("tune_resnet_int_labels.py", tmp_path, monkeypatch, capsys)
    assert code == 3
    assert "TRIALS FAIL" in printed and "Traceback" not in printed
    assert "must have the same rank" in printed and "sparse_categorical_crossentropy" in printed
    assert "keras.utils.to_categorical(y, 10)" in printed
    assert document["fits"] is None and document["peak_source"] == "shapes"
    assert {m["status"] for m in document["search"]["measurements"]} == {"error"}
    assert "Trials fail" in (tmp_path / "report.html").read_text()


@pytest.mark.slow  # about 110 s: the worst case (ResNet-152-like) is trained for real
def test_hyper_resnet_with_one_hot_labels_exits_0_with_measurements_and_a_time_estimate(tmp_path, monkeypatch,
                                                                                          capsys):
    code, document, printed = run_cli("tune_resnet_onehot.py", tmp_path, monkeypatch, capsys)
    search = document["search"]
    assert code == 0, printed
    assert [m["status"] for m in search["measurements"]] == ["ok", "ok"]
    assert document["fits"] is True and search["fits_fraction"] > 0
    assert search["time_estimate_seconds"] > 0 and search["time_estimate_missing"] is None
    assert "about n/a" not in printed and "for the whole search" in printed


@pytest.mark.slow  # keras-tuner's large hypermodels, end to end
def test_hyper_xception_is_checked(tmp_path, monkeypatch, capsys):
    code, document, printed = run_cli("tune_xception.py", tmp_path, monkeypatch, capsys)
    assert code == 0, printed
    assert "ok" in {m["status"] for m in document["search"]["measurements"]}
    assert document["search"]["time_estimate_seconds"] > 0


@pytest.mark.slow  # keras-tuner's large hypermodels, end to end
def test_a_tuner_with_its_own_run_trial_is_checked_and_named(tmp_path, monkeypatch, capsys):
    code, document, printed = run_cli("tune_run_trial.py", tmp_path, monkeypatch, capsys)
    assert code == 0, printed
    [warning] = [f for f in document["search"]["findings"] if f["id"] == "search-custom-training"]
    assert warning["severity"] == "warning" and "BatchSizeTuner.run_trial" in warning["message"]
    assert "--batch-size" in warning["message"]
