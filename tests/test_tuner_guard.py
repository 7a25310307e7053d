"""The guard on real keras-tuner searches: oversized configurations never reach a trial and the search
does not abort; host RSS growth across trials is reported with its numbers."""
from __future__ import annotations

import keras
import keras_tuner as kt
import numpy as np
import pytest

from preflight.tuner.features import static_features
from preflight.tuner.guard import guard
from preflight.tuner.predict import PeakPredictor
from preflight.tuner.space import build_and_values, enumerate_space, sample_values

BUDGET_BYTES = 96 * 1024  # a pretend device: small enough that most of the space does not fit
BATCH = 8
X = np.random.default_rng(0).standard_normal((32, 8)).astype("float32")
Y = np.random.default_rng(1).standard_normal((32, 1)).astype("float32")


def build_model(hp):
    inputs = keras.Input((8,))
    x = inputs
    for i in range(hp.Int("num_layers", 1, 4)):
        x = keras.layers.Dense(hp.Int(f"units_{i}", 8, 96, step=8), activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(1)(x))
    model.compile(optimizer="adam", loss="mse")
    return model


def predicted_peak(values) -> int:
    features = static_features(build_and_values(build_model, values, allocate=False)[0])
    return PeakPredictor.prior().predict(features, BATCH)


def test_space_is_mostly_too_big_for_the_budget():
    samples = sample_values(enumerate_space(build_model), 60, seed=0)
    too_big = sum(predicted_peak(values) > BUDGET_BYTES for values in samples)
    assert too_big / len(samples) >= 0.5


@pytest.mark.slow  # a whole keras-tuner search
def test_unguarded_search_with_keras_tuner_failures_aborts(tmp_path):
    def build_or_fail(hp):
        model = build_model(hp)
        if PeakPredictor.prior().predict(static_features(model), BATCH) > BUDGET_BYTES:
            raise kt.errors.FailedTrialError("predicted peak over budget")
        return model

    tuner = kt.RandomSearch(build_or_fail, objective="val_loss", max_trials=12, seed=3,
                            directory=str(tmp_path), project_name="unguarded")
    with pytest.raises(RuntimeError, match="consecutive failures"):
        tuner.search(X, Y, epochs=1, batch_size=BATCH, validation_split=0.25, verbose=0)
    assert len(tuner.oracle.trials) < 12


@pytest.mark.slow  # a whole keras-tuner search
def test_guarded_search_completes_every_trial_within_budget(tmp_path):
    tuner = kt.RandomSearch(build_model, objective="val_loss", max_trials=5, seed=3,
                            directory=str(tmp_path), project_name="guarded")
    search_guard = guard(tuner, BUDGET_BYTES, PeakPredictor.prior(), batch_size=BATCH)
    tuner.search(X, Y, epochs=1, batch_size=BATCH, validation_split=0.25, verbose=0)

    trials = list(tuner.oracle.trials.values())
    assert len(trials) == 5
    assert all(trial.status == "COMPLETED" for trial in trials)
    assert all(predicted_peak(trial.hyperparameters.values) <= BUDGET_BYTES for trial in trials)
    assert search_guard.skipped, "the space is mostly too big, so proposals must have been skipped"
    assert all(s["predicted_peak_bytes"] > BUDGET_BYTES for s in search_guard.skipped)
    record = search_guard.to_dict()
    assert record["skipped_count"] == len(search_guard.skipped) and len(record["rss_per_trial"]) == 5


@pytest.mark.slow  # a whole keras-tuner search
def test_guard_on_hyperband_keeps_its_schedule(tmp_path):
    tuner = kt.Hyperband(build_model, objective="val_loss", max_epochs=3, factor=3, seed=5,
                         directory=str(tmp_path), project_name="hb")
    search_guard = guard(tuner, BUDGET_BYTES, PeakPredictor.prior(), batch_size=BATCH)
    tuner.search(X, Y, batch_size=BATCH, validation_split=0.25, verbose=0)
    from preflight.tuner.budget import hyperband_schedule

    assert len(tuner.oracle.trials) == hyperband_schedule(3, 3, 1)[0]
    assert all(t.status == "COMPLETED" for t in tuner.oracle.trials.values())
    assert all(predicted_peak(t.hyperparameters.values) <= BUDGET_BYTES for t in tuner.oracle.trials.values())
    assert search_guard.skipped


LEAKED: list = []


def build_leaky_model(hp):
    LEAKED.append(np.ones(48 * 1024 * 1024 // 8))  # 48 MiB, written so it is resident
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(hp.Int("units", 2, 64)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    return model


def build_clean_model(hp):
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(hp.Int("units", 2, 64)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    return model


@pytest.mark.slow  # two whole keras-tuner searches
@pytest.mark.parametrize("leaky", [True, False])
def test_rss_growth_warning_only_for_a_leaking_build(tmp_path, leaky):
    LEAKED.clear()
    tuner = kt.RandomSearch(build_leaky_model if leaky else build_clean_model, objective="val_loss",
                            max_trials=5, seed=1, directory=str(tmp_path), project_name="rss")
    search_guard = guard(tuner, None)
    try:
        tuner.search(X, Y, epochs=1, batch_size=BATCH, validation_split=0.25, verbose=0)
    finally:
        LEAKED.clear()
    assert len(search_guard.rss_per_trial) == 5
    rss_warnings = [w for w in search_guard.warnings() if "RSS" in w]
    if leaky:
        assert len(rss_warnings) == 1, search_guard.rss_per_trial
        assert "MiB per trial" in rss_warnings[0]
        assert search_guard.rss_growth()["mean_growth_bytes"] >= 40 * 1024 * 1024
    else:
        assert rss_warnings == [], search_guard.rss_per_trial


def build_grid_model(hp):
    """Grid order starts with the biggest widths, so the first proposals do not fit."""
    inputs = keras.Input((8,))
    x = keras.layers.Dense(hp.Choice("units_a", [96, 64, 8]), activation="relu")(inputs)
    x = keras.layers.Dense(hp.Choice("units_b", [96, 64, 8]), activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(1)(x))
    model.compile(optimizer="adam", loss="mse")
    return model


@pytest.mark.slow  # a whole keras-tuner search
def test_guard_checks_proposals_that_do_not_come_from_random_draws(tmp_path):
    def grid_peak(values) -> int:
        features = static_features(build_and_values(build_grid_model, values, allocate=False)[0])
        return PeakPredictor.prior().predict(features, BATCH)

    budget = grid_peak({"units_a": 64, "units_b": 8})
    assert grid_peak({"units_a": 96, "units_b": 96}) > budget
    tuner = kt.GridSearch(build_grid_model, objective="val_loss", max_trials=3, directory=str(tmp_path),
                          project_name="grid")
    search_guard = guard(tuner, budget, PeakPredictor.prior(), batch_size=BATCH)
    tuner.search(X, Y, epochs=1, batch_size=BATCH, validation_split=0.25, verbose=0)
    trials = list(tuner.oracle.trials.values())
    assert trials and all(t.status == "COMPLETED" for t in trials)
    assert all(grid_peak(t.hyperparameters.values) <= budget for t in trials)
    assert any(s["action"] == "replaced by a random configuration that fits" for s in search_guard.skipped)
    assert {record["trial_id"] for record in search_guard.trials} == {t.trial_id for t in trials}
    assert all(record["fits"] for record in search_guard.trials)
