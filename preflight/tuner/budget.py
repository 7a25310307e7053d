"""What a search costs besides memory: wall time against a time limit, and checkpoint disk.

Owns `search_schedule` (trials and epochs a tuner will run, Hyperband's real bracket schedule
included), `time_estimate` and `disk_estimate`. Pure arithmetic plus `psutil.disk_usage`; no TF.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Any

# keras-tuner writes per trial a trial.json, a build_config.json and its checkpoint (weights only).
TRIAL_METADATA_BYTES = 16 * 1024


@dataclass(frozen=True)
class SearchSchedule:
    tuner: str
    trials: int
    epochs_total: int            # epochs trained summed over trials, one execution each
    executions_per_trial: int
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def hyperband_schedule(max_epochs: int, factor: int = 3, hyperband_iterations: int = 1) -> tuple[int, int]:
    """(trials, epochs) of keras-tuner's Hyperband oracle, computed with its own bracket formulas.

    Bracket b has b+1 rounds; round r runs ceil(end_size * factor**(b-r)) trials, where end_size is
    ceil(1 + log_factor(max_epochs)) / (b+1); a round-r trial resumes the round r-1 model and trains
    from ceil(max_epochs / factor**(b-r+1)) to ceil(max_epochs / factor**(b-r)) epochs.
    """
    epochs, brackets = float(max_epochs), 0
    while epochs >= 1:
        epochs /= factor
        brackets += 1
    end_size0 = math.ceil(1 + math.log(max_epochs, factor))

    def size(b: int, r: int) -> int:
        return math.ceil(end_size0 / (b + 1) * factor ** (b - r))

    def epochs_at(b: int, r: int) -> int:
        return math.ceil(max_epochs / factor ** (b - r))

    trials = total_epochs = 0
    for _ in range(int(hyperband_iterations)):
        for b in range(brackets - 1, -1, -1):
            for r in range(b + 1):
                start = epochs_at(b, r - 1) if r > 0 else 0
                trials += size(b, r)
                total_epochs += size(b, r) * (epochs_at(b, r) - start)
    return trials, total_epochs


def search_schedule(tuner: Any = None, *, epochs: int | None = None, max_trials: int | None = None) -> SearchSchedule:
    """Trials and epochs the tuner will run. `epochs` is what `search(..., epochs=)` will get."""
    oracle = getattr(tuner, "oracle", None)
    executions = int(getattr(tuner, "executions_per_trial", 1) or 1)
    if oracle is not None and hasattr(oracle, "hyperband_iterations"):
        iterations = oracle.hyperband_iterations
        iterations = 1 if iterations in (None, float("inf")) else int(iterations)
        trials, total = hyperband_schedule(int(oracle.max_epochs), int(oracle.factor), iterations)
        return SearchSchedule("Hyperband", trials, total, executions,
                              f"Hyperband max_epochs={oracle.max_epochs} factor={oracle.factor} "
                              f"iterations={iterations}: {trials} trials, {total} epochs")
    trials = max_trials or getattr(oracle, "max_trials", None) or 10
    per_trial = int(epochs or 1)
    name = type(tuner).__name__ if tuner is not None else "search"
    return SearchSchedule(name, int(trials), int(trials) * per_trial, executions,
                          f"{name}: {trials} trials x {per_trial} epochs")


def time_estimate(schedule: SearchSchedule, step_seconds: float, steps_per_epoch: int,
                  trial_overhead_seconds: float = 0.0) -> float:
    """Seconds: step time x steps per epoch x epochs x executions, plus per-trial build and trace."""
    training = step_seconds * steps_per_epoch * schedule.epochs_total * schedule.executions_per_trial
    return float(training + trial_overhead_seconds * schedule.trials * schedule.executions_per_trial)


def steps_per_epoch(num_samples: int | None, batch_size: int, validation_split: float = 0.0) -> int | None:
    if not num_samples:
        return None
    return max(1, math.ceil(num_samples * (1.0 - validation_split) / batch_size))


def disk_estimate(schedule: SearchSchedule, mean_param_bytes: int) -> int:
    """keras-tuner 1.4 keeps one weights-only checkpoint per trial (the best epoch, overwritten), so:
    trials x (weights + metadata). Optimizer state is not saved."""
    return int(schedule.trials * (mean_param_bytes + TRIAL_METADATA_BYTES))


def free_disk_bytes(directory: str | os.PathLike | None) -> int | None:
    """Free bytes on the disk that holds `directory` (its nearest existing parent)."""
    import psutil

    path = os.path.abspath(str(directory or "."))
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    try:
        return int(psutil.disk_usage(path).free)
    except OSError:
        return None


def tuner_directory(tuner: Any) -> str | None:
    """The project directory a tuner writes to, if it is a tuner."""
    oracle = getattr(tuner, "oracle", None)
    project_dir = getattr(oracle, "_project_dir", None) if oracle is not None else None
    if project_dir:
        return str(project_dir)
    directory = getattr(tuner, "directory", None)
    return str(directory) if directory else None
