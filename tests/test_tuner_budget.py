"""Search budget: Hyperband's schedule against keras-tuner's own oracle, time and disk arithmetic."""
from __future__ import annotations

import pytest

from preflight.tuner.budget import (
    SearchSchedule,
    disk_estimate,
    free_disk_bytes,
    hyperband_schedule,
    search_schedule,
    steps_per_epoch,
    time_estimate,
)


def _run_real_hyperband_oracle(tmp_path, max_epochs: int, factor: int, iterations: int) -> tuple[int, int]:
    """Drive keras-tuner's HyperbandOracle with fake scores (no training): trials and epochs it schedules."""
    import random

    import keras_tuner as kt

    hps = kt.HyperParameters()
    hps.Int("units", 1, 10_000)
    oracle = kt.oracles.HyperbandOracle(objective=kt.Objective("score", "max"), max_epochs=max_epochs,
                                        factor=factor, hyperband_iterations=iterations,
                                        hyperparameters=hps, seed=1)
    oracle._set_project_dir(str(tmp_path), f"hb_{max_epochs}_{factor}_{iterations}")
    rng = random.Random(0)
    trials = epochs = 0
    while True:
        trial = oracle.create_trial("tuner0")
        if trial.status == "STOPPED":
            break
        values = trial.hyperparameters.values
        trials += 1
        epochs += values["tuner/epochs"] - values["tuner/initial_epoch"]
        oracle.update_trial(trial.trial_id, {"score": rng.random()})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    return trials, epochs


@pytest.mark.parametrize("max_epochs,factor,iterations", [(9, 3, 1), (20, 3, 1), (10, 2, 2)])
def test_hyperband_schedule_matches_keras_tuner_oracle(tmp_path, max_epochs, factor, iterations):
    expected = _run_real_hyperband_oracle(tmp_path, max_epochs, factor, iterations)
    assert hyperband_schedule(max_epochs, factor, iterations) == expected


def test_search_schedule_reads_a_hyperband_tuner(tmp_path):
    import keras
    import keras_tuner as kt

    def build_model(hp):
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(hp.Int("units", 2, 8))])
        model.compile("adam", "mse")
        return model

    tuner = kt.Hyperband(build_model, objective="val_loss", max_epochs=20, factor=3, directory=str(tmp_path),
                         executions_per_trial=2)
    schedule = search_schedule(tuner)
    assert (schedule.trials, schedule.epochs_total) == hyperband_schedule(20, 3, 1)
    assert schedule.executions_per_trial == 2


def test_time_and_disk_arithmetic(tmp_path):
    schedule = SearchSchedule("RandomSearch", trials=10, epochs_total=50, executions_per_trial=2, detail="")
    assert steps_per_epoch(1000, 32, validation_split=0.2) == 25
    assert time_estimate(schedule, step_seconds=0.1, steps_per_epoch=25, trial_overhead_seconds=1.0) == \
        pytest.approx(0.1 * 25 * 50 * 2 + 1.0 * 10 * 2)
    assert disk_estimate(schedule, 4_000_000) > 10 * 4_000_000
    assert free_disk_bytes(tmp_path / "not" / "made" / "yet") > 0
