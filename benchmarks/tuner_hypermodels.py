"""The search check on keras-tuner's own hypermodels: predicted worst case and time vs real runs.

For each case (HyperResNet, HyperXception, a Tuner subclass whose run_trial tunes the batch size):

1. `check_search(tuner, (x, y), ...)` as a notebook would call it: the worst case's peak (measured or
   predicted), its source, and the time estimate for the search;
2. the truth of that worst configuration: a fresh process per run (`TF_CPU_ALLOCATOR_USE_BFC=true`)
   builds it with keras-tuner's own HyperParameters (not preflight's code), runs one warm-up
   `train_on_batch` and 3 measured steps (peak reset before each); truth = max over `--runs` processes.
   The run_trial case is run at the largest batch its run_trial can choose, which preflight cannot see;
3. one real trial: a fresh process runs `tuner.search(max_trials=1)` (keras-tuner's first trial is the
   space's defaults) and times it, against preflight's estimate per trial (estimate / trials).

    python -m benchmarks.tuner_hypermodels                       # 3 cases, 3 truth runs each
    python -m benchmarks.tuner_hypermodels --cases hyperresnet --runs 1 --configs 2 --samples 20

Prints a table and writes `benchmarks/results/tuner_hypermodels.json`.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_PATH = Path(__file__).resolve().parent / "results" / "tuner_hypermodels.json"
CASES = ("hyperresnet", "hyperxception", "run_trial")
RUN_TRIAL_BATCH_SIZES = (16, 128)  # the batch_size hp the run_trial case registers: min, max
STEPS = 3
RUN_TIMEOUT_S = 900


def make_data(samples: int) -> tuple[Any, Any, Any]:
    """(x, one-hot y) for the CIFAR-sized applications, (x, class ids) for the dense run_trial case."""
    import numpy as np

    rng = np.random.default_rng(0)
    images = rng.random((samples, 32, 32, 3), dtype=np.float32)
    one_hot = np.eye(10, dtype=np.float32)[rng.integers(0, 10, size=samples)]
    return images, one_hot, (rng.standard_normal((samples, 256)).astype("float32"),
                             rng.integers(0, 10, size=samples))


def _dense_model(hp):
    import keras

    inputs = keras.Input((256,))
    x = inputs
    for i in range(hp.Int("layers", 1, 3)):
        x = keras.layers.Dense(hp.Int(f"units_{i}", 64, 2048, step=64), activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def make_tuner(case: str, directory: str, max_trials: int) -> Any:
    import keras_tuner as kt

    common = {"objective": "val_accuracy", "max_trials": max_trials, "directory": directory,
              "project_name": case, "overwrite": True, "seed": 0}
    if case == "hyperresnet":
        return kt.RandomSearch(kt.applications.HyperResNet(input_shape=(32, 32, 3), classes=10), **common)
    if case == "hyperxception":
        return kt.RandomSearch(kt.applications.HyperXception(input_shape=(32, 32, 3), classes=10), **common)

    class BatchSizeTuner(kt.RandomSearch):
        def run_trial(self, trial, *args, **kwargs):
            low, high = RUN_TRIAL_BATCH_SIZES
            kwargs["batch_size"] = trial.hyperparameters.Int("batch_size", low, high, step=16)
            return super().run_trial(trial, *args, **kwargs)

    return BatchSizeTuner(_dense_model, **common)


def case_data(case: str, samples: int) -> tuple[Any, Any]:
    images, one_hot, (dense_x, dense_y) = make_data(samples)
    return (dense_x, dense_y) if case == "run_trial" else (images, one_hot)


# ---------------------------------------------------------------- children (fresh processes)
def _truth_worker(case: str, values: dict[str, Any], batch_size: int, samples: int) -> dict[str, Any]:
    """Build `values` with keras-tuner's HyperParameters and measure STEPS steps after a warm-up."""
    import keras_tuner as kt
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as directory:
        hypermodel = make_tuner(case, directory, 1).hypermodel
    hp = kt.HyperParameters()
    hypermodel.build(hp)            # registers the space at its defaults
    hp.values.update(values)
    model = hypermodel.build(hp)    # conditional hyperparameters follow the new values
    x, y = case_data(case, max(samples, batch_size))
    x, y = x[:batch_size], y[:batch_size]
    model.train_on_batch(x, y)
    peaks = []
    for _ in range(STEPS):
        tf.config.experimental.reset_memory_stats("CPU:0")
        model.train_on_batch(x, y)
        peaks.append(int(tf.config.experimental.get_memory_info("CPU:0")["peak"]))
    return {"peak_bytes": max(peaks), "peaks": peaks}


def _trial_worker(case: str, batch_size: int, samples: int) -> dict[str, Any]:
    """One real trial of keras-tuner (its first: the defaults), timed from tuner creation to the end."""
    x, y = case_data(case, samples)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as directory:
        tuner = make_tuner(case, directory, 1)
        kwargs = {} if case == "run_trial" else {"batch_size": batch_size}
        tuner.search(x, y, epochs=1, validation_split=0.2, verbose=0, **kwargs)
        trial = next(iter(tuner.oracle.trials.values()))
        return {"seconds": time.perf_counter() - started, "status": trial.status,
                "values": dict(trial.hyperparameters.values)}


def _in_fresh_process(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    env = dict(os.environ, TF_CPU_ALLOCATOR_USE_BFC="true", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=str(REPO_ROOT))
    command = [sys.executable, "-m", "benchmarks.tuner_hypermodels", "--worker", kind, json.dumps(payload)]
    try:
        completed = subprocess.run(["nice", "-n", "10", *command], capture_output=True, text=True, env=env,
                                   timeout=RUN_TIMEOUT_S, cwd=REPO_ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {RUN_TIMEOUT_S} s"}
    lines = [line for line in completed.stdout.splitlines() if line.startswith("@@ ")]
    if not lines:
        return {"error": f"exit {completed.returncode}: " + " | ".join(completed.stderr.strip().splitlines()[-3:])}
    return json.loads(lines[-1][3:])


# ---------------------------------------------------------------- one case
def run_case(case: str, args: argparse.Namespace) -> dict[str, Any]:
    from preflight.tuner.plan import check_search

    x, y = case_data(case, args.samples_data)
    with tempfile.TemporaryDirectory() as directory:
        tuner = make_tuner(case, directory, args.max_trials)
        started = time.perf_counter()
        section = check_search(tuner, (x, y), batch_size=args.batch_size, epochs=1, validation_split=0.2,
                               n_measure=args.configs, n_samples=args.samples)
        preflight_seconds = time.perf_counter() - started
    worst = section["worst_case"]
    truth_batch = RUN_TRIAL_BATCH_SIZES[-1] if case == "run_trial" else worst["batch_size"]
    runs = [_in_fresh_process("truth", {"case": case, "values": worst["values"], "batch_size": truth_batch,
                                        "samples": args.samples_data}) for _ in range(args.runs)]
    peaks = [r["peak_bytes"] for r in runs if "peak_bytes" in r]
    truth = max(peaks) if peaks else None
    trial = _in_fresh_process("trial", {"case": case, "batch_size": args.batch_size, "samples": args.samples_data})
    schedule = section["schedule"]
    trials = schedule["trials"] * schedule["executions_per_trial"]
    estimate = section["time_estimate_seconds"]
    return {
        "case": case, "worst_values": worst["values"], "preflight_batch_size": worst["batch_size"],
        "truth_batch_size": truth_batch, "predicted_worst_bytes": worst["peak_bytes"],
        "predicted_source": worst["peak_source"], "truth_bytes": truth, "truth_runs": peaks,
        "truth_errors": [r["error"] for r in runs if "error" in r],
        "error": None if not truth else round(worst["peak_bytes"] / truth - 1, 4),
        "measured_configs": [m["status"] for m in section["measurements"]],
        "estimate_per_trial_seconds": None if estimate is None else estimate / trials,
        "time_estimate_missing": section.get("time_estimate_missing"),
        "real_trial_seconds": trial.get("seconds"), "real_trial_status": trial.get("status", trial.get("error")),
        "real_trial_values": trial.get("values"), "preflight_seconds": round(preflight_seconds, 1),
        "findings": [f["id"] for f in section["findings"]],
    }


def _mib(value: Any) -> str:
    return "-" if value is None else f"{value / 2**20:.0f} MiB"


def _seconds(value: Any) -> str:
    return "-" if value is None else f"{value:.0f} s"


def print_table(rows: list[dict[str, Any]]) -> None:
    print("| case | worst case (preflight, source) | truth: max of runs (batch) | error | "
          "estimate per trial | real trial | preflight time |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        error = "-" if row["error"] is None else f"{row['error']:+.1%}"
        print(f"| {row['case']} | {_mib(row['predicted_worst_bytes'])} ({row['predicted_source']}, batch "
              f"{row['preflight_batch_size']}) | {_mib(row['truth_bytes'])} ({len(row['truth_runs'])} runs, batch "
              f"{row['truth_batch_size']}) | {error} | {_seconds(row['estimate_per_trial_seconds'])} | "
              f"{_seconds(row['real_trial_seconds'])} ({row['real_trial_status']}) | "
              f"{_seconds(row['preflight_seconds'])} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--runs", type=int, default=3, help="fresh processes for the truth (default 3)")
    parser.add_argument("--configs", type=int, default=5, help="configurations preflight dry-runs (default 5)")
    parser.add_argument("--samples", type=int, default=200, help="configurations preflight samples (default 200)")
    parser.add_argument("--samples-data", type=int, default=64, help="training rows (default 64)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-trials", type=int, default=10, help="the search preflight estimates (default 10)")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        kind, payload = args.worker[0], json.loads(args.worker[1])
        result = _truth_worker(**payload) if kind == "truth" else _trial_worker(**payload)
        print("@@ " + json.dumps(result), flush=True)
        return 0
    rows = []
    for case in args.cases:
        rows.append(run_case(case, args))
        print(f"{case}: done", file=sys.stderr, flush=True)
    print_table(rows)
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps({"settings": {k: v for k, v in vars(args).items() if k != "worker"},
                                        "rows": rows}, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS_PATH.relative_to(REPO_ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
