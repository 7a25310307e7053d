"""check_search end to end on a tiny real search space: a few real BFC dry runs, the rest predicted."""
from __future__ import annotations

import json

import keras
import keras_tuner as kt
import numpy as np
import pytest

from preflight.tuner.plan import check_search

BUDGET = 8 * 1024**2
X = np.random.default_rng(0).standard_normal((256, 64)).astype("float32")
Y = np.random.default_rng(1).integers(0, 10, size=(256,))


def build_model(hp):
    inputs = keras.Input((64,))
    x = inputs
    for i in range(hp.Int("num_layers", 1, 4)):
        x = keras.layers.Dense(hp.Int(f"units_{i}", 32, 1024, step=32), activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


@pytest.fixture(scope="module")
def section():
    return check_search(build_model, (X, Y), batch_size=16, budget_bytes=BUDGET, epochs=3, max_trials=50,
                        validation_split=0.2, time_limit_seconds=0.5, n_samples=80, n_measure=4, n_validate=1)


def test_section_reports_worst_case_fraction_and_bounds(section):
    names = {h["name"] for h in section["hyperparameters"]}
    assert {"num_layers", "units_0", "units_1", "units_2", "units_3"} == names
    worst = section["worst_case"]
    assert worst["values"]["num_layers"] == 4 and worst["values"]["units_3"] == 1024
    assert worst["fits"] is False and worst["peak_bytes"] > BUDGET
    assert 0.0 < section["fits_fraction"] < 1.0
    assert all((s["predicted_peak_bytes"] <= BUDGET) == s["fits"] for s in section["samples"])
    assert section["drivers"][0]["name"] in names and section["drivers"][0]["effect"] > 0
    together = section["bounds"]["_together"]["values"]
    assert together["num_layers"] < 4 or together["units_0"] < 1024
    ids = {f["id"] for f in section["findings"]}
    assert {"search-worst-case-does-not-fit", "search-space-does-not-fit", "search-bounds",
            "search-time-over-limit"} <= ids
    json.dumps(section)  # the report document must serialise


def test_measured_configurations_are_covered_by_the_margin(section):
    fitted = [m for m in section["measurements"] if m["used_in_fit"] and m["status"] == "ok"]
    assert len(fitted) >= 3
    for row in fitted:
        assert row["predicted_peak_bytes"] >= row["peak_bytes"]
    # a configuration kept out of the fit is predicted within a loose band
    for row in section["validation"]:
        assert abs(row["relative_error_raw"]) < 0.5, row


def test_time_and_disk_estimates(section):
    schedule = section["schedule"]
    assert schedule["trials"] == 50 and schedule["epochs_total"] == 150
    steps = int(np.ceil(256 * 0.8 / 16))
    assert section["time_estimate_seconds"] >= section["step_seconds"] * steps * 150
    mean_params = sum(s["param_bytes"] for s in section["samples"]) / len(section["samples"])
    assert section["disk_estimate_bytes"] >= 50 * mean_params
    assert section["disk_free_bytes"] > 0


def test_a_tuner_gives_its_schedule_and_directory(tmp_path):
    tuner = kt.Hyperband(build_model, objective="val_loss", max_epochs=9, directory=str(tmp_path),
                         project_name="p")
    from preflight.tuner.budget import hyperband_schedule

    section = check_search(tuner, batch_size=16, budget_bytes=BUDGET, n_samples=10, n_measure=0)
    assert section["schedule"]["trials"] == hyperband_schedule(9, 3, 1)[0]
    assert section["directory"].startswith(str(tmp_path))
    assert section["predictor"]["fitted_on"] == 0  # nothing measured: the conservative prior
    assert len(tuner.oracle.trials) == 0


TUNE_FILE = '''
import keras, keras_tuner as kt, numpy as np

def build_model(hp):
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(hp.Int("units", 8, 512, step=8)),
                              keras.layers.Dense(1)])
    model.compile("adam", "mse")
    return model

x = np.zeros((100, 16), "float32"); y = np.zeros((100, 1), "float32")
tuner = kt.RandomSearch(build_model, objective="val_loss", max_trials=7, directory=DIRECTORY)
tuner.search(x, y, epochs=4, batch_size=10, validation_split=0.2)
SEARCHED = len(tuner.oracle.trials)
'''


def test_a_file_that_searches_at_top_level_is_checked_without_searching(tmp_path):
    from preflight.tuner.cli_support import check_search_file

    path = tmp_path / "tune.py"
    path.write_text(TUNE_FILE.replace("DIRECTORY", repr(str(tmp_path / "runs"))))
    section = check_search_file(path, budget="64MiB", n_samples=10, n_measure=2)
    assert section["source"]["found"] == "tuner" and section["source"]["search_call_recorded"]
    assert section["batch_size"] == 10                      # from the recorded search call
    assert section["schedule"]["trials"] == 7 and section["schedule"]["epochs_total"] == 28
    assert [m["status"] for m in section["measurements"]] == ["ok", "ok"]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("trial.json"))


def test_search_files_are_recognised_without_running_them(tmp_path):
    from preflight.tuner.cli_support import looks_like_search_file

    search = tmp_path / "tune.py"
    search.write_text("import keras_tuner as kt\nraise SystemExit('must not run')\n")
    plain = tmp_path / "model.py"
    plain.write_text("import keras\ndef build_model():\n    return None\n")
    function_only = tmp_path / "hp.py"
    function_only.write_text("def make(hp, scale=2):\n    return hp\n")
    assert looks_like_search_file(search) and looks_like_search_file(function_only)
    assert not looks_like_search_file(plain)
    assert looks_like_search_file("examples/tune.py") and looks_like_search_file("examples/tune_resnet.py")


@pytest.mark.slow
def test_hyper_resnet_file_is_checked_end_to_end():
    from preflight.tuner.cli_support import check_search_file

    section = check_search_file("examples/tune_resnet.py", budget="1GiB", n_samples=6, n_measure=1,
                                epochs=2, max_trials=4)
    names = {h["name"] for h in section["hyperparameters"]}
    assert {"version", "conv3_depth", "conv4_depth", "pooling", "optimizer", "learning_rate"} <= names
    assert section["source"]["found"] == "hypermodel"
    assert section["worst_case"]["values"]["conv4_depth"] == 36
    assert [m["status"] for m in section["measurements"]] == ["ok"]
    assert section["measurements"][0]["peak_bytes"] > 0
    assert section["fits_fraction"] is not None and section["time_estimate_seconds"] > 0
    assert section["drivers"][0]["name"] in ("conv4_depth", "optimizer", "version")
