"""Preflight's wall time against the least a user could do: TF import + model build + one training step.

The baseline is one fresh process (`ground_truth.run_trial` with 0 measured steps): import TensorFlow,
build and compile the zoo model, one `train_on_batch` at preflight's smallest probed batch (tracing
included), exit. Preflight's time is the wall time of `preflight.api.check` from
`benchmarks/results/preflight_runs.json` (written by accuracy.py; missing models are run here).
Goal: preflight <= 3x the baseline. Results: `benchmarks/results/speed.json`.

    python -m benchmarks.speed --models cnn mlp lstm
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from benchmarks import accuracy, ground_truth  # noqa: E402

SPEED_PATH = ground_truth.RESULTS_DIR / "speed.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=["cnn", "mlp", "lstm"])
    parser.add_argument("--planned-batch-size", type=int, default=accuracy.DEFAULT_PLANNED_BATCH)
    parser.add_argument("--baseline-runs", type=int, default=2, help="fresh baseline processes (median taken)")
    args = parser.parse_args(argv)
    runs = json.loads(accuracy.RUNS_PATH.read_text(encoding="utf-8")) if accuracy.RUNS_PATH.exists() else {}
    results = json.loads(SPEED_PATH.read_text(encoding="utf-8")) if SPEED_PATH.exists() else {}
    for model_name in args.models:
        key = f"{model_name}@{args.planned_batch_size}"
        if key not in runs:
            runs[key] = accuracy.run_preflight(model_name, args.planned_batch_size)
            accuracy._save(accuracy.RUNS_PATH, runs)
        run = runs[key]
        smallest = min(p["batch_size"] for p in run["probes"])
        entry = results.setdefault(key, {"model": model_name, "smallest_probe": smallest, "baseline_seconds": []})
        while len(entry["baseline_seconds"]) < args.baseline_runs:
            trial = ground_truth.run_trial(model_name, smallest, steps=0)
            if trial["status"] != "ok":
                raise RuntimeError(f"baseline failed for {model_name}: {trial}")
            entry["baseline_seconds"].append(trial["wall_seconds"])
        entry["preflight_seconds"] = run["wall_seconds"]
        entry["probes"] = [p["batch_size"] for p in run["probes"]]
        entry["ratio"] = round(run["wall_seconds"] / statistics.median(entry["baseline_seconds"]), 2)
        SPEED_PATH.parent.mkdir(parents=True, exist_ok=True)
        tmp = SPEED_PATH.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, SPEED_PATH)
    print(f"{'model':15s} {'probes':22s} {'baseline s':>11s} {'preflight s':>12s} {'ratio':>6s}")
    for model_name in args.models:
        entry = results[f"{model_name}@{args.planned_batch_size}"]
        print(f"{model_name:15s} {str(entry['probes']):22s} {statistics.median(entry['baseline_seconds']):11.1f} "
              f"{entry['preflight_seconds']:12.1f} {entry['ratio']:6.2f}")
    print(f"\nwritten: {SPEED_PATH.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
