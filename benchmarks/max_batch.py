"""Largest batch under a memory budget: real trial-and-error against preflight's `max_batch_size`.

The trial way: fresh processes with `TF_CPU_BFC_MEM_LIMIT_IN_MB=<budget>` (the BFC allocator refuses
beyond it, as a GPU would), a warm-up step and `STEPS` measured steps; a batch "fits" only when all
`--repeats` runs succeed. Batch doubles from 8 until a failure, then bisects between the last fit and
the first failure. The preflight way: one `preflight.api.check(model.py, batch_size=32, budget=...)`,
then its `max_batch_size` (recomputed from the report's probes with `preflight.analysis.predict.PeakModel` when
the report has none). Both wall times are recorded; every trial is cached in
`benchmarks/results/max_batch.json`, so a rerun only measures what is missing.

    python -m benchmarks.max_batch                          # default models and budgets
    python -m benchmarks.max_batch --models cnn --budgets 256MiB 512MiB --repeats 3
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from benchmarks import accuracy, ground_truth  # noqa: E402
from preflight.common.units import format_bytes, parse_size  # noqa: E402

MAX_BATCH_PATH = ground_truth.RESULTS_DIR / "max_batch.json"
DEFAULT_CASES = ("cnn:256MiB", "cnn:512MiB", "mlp:256MiB", "lstm:256MiB")
STEPS = 2
START_BATCH = 8
BATCH_CAP = 8192


def _load() -> dict[str, Any]:
    return json.loads(MAX_BATCH_PATH.read_text(encoding="utf-8")) if MAX_BATCH_PATH.exists() else {}


def _save(data: dict[str, Any]) -> None:
    MAX_BATCH_PATH.parent.mkdir(parents=True, exist_ok=True)
    tmp = MAX_BATCH_PATH.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, MAX_BATCH_PATH)


def fits(model_name: str, batch_size: int, budget_bytes: int, repeats: int, record: dict[str, Any]) -> bool:
    """True when `repeats` fresh runs at this batch all succeed under the budget (cached in `record`)."""
    trials = record.setdefault("trials", {}).setdefault(str(batch_size), [])
    while len(trials) < repeats and all(t["status"] == "ok" for t in trials):
        result = ground_truth.run_trial(model_name, batch_size, STEPS, mem_limit_mb=budget_bytes // 2**20)
        trials.append({key: result.get(key) for key in ("status", "peak_bytes", "wall_seconds", "returncode")})
        print(f"  trial {model_name} bs {batch_size}: {result['status']} ({result['wall_seconds']} s)", flush=True)
        if result["status"] not in ("ok", "oom"):
            raise RuntimeError(f"trial failed for another reason: {result.get('message', '')[-500:]}")
    return all(t["status"] == "ok" for t in trials[:repeats]) and len(trials) >= repeats


def true_max_batch(model_name: str, budget_bytes: int, repeats: int, record: dict[str, Any]) -> int | None:
    """Doubling from START_BATCH, then bisection; None when not even batch 1 fits."""
    if fits(model_name, START_BATCH, budget_bytes, repeats, record):
        low, high = START_BATCH, START_BATCH * 2
        while high <= BATCH_CAP and fits(model_name, high, budget_bytes, repeats, record):
            low, high = high, high * 2
        if high > BATCH_CAP:
            return low
    else:
        high = START_BATCH
        low = high // 2
        while low >= 1 and not fits(model_name, low, budget_bytes, repeats, record):
            high, low = low, low // 2
        if low < 1:
            return None
    while high - low > 1:
        middle = (low + high) // 2
        if fits(model_name, middle, budget_bytes, repeats, record):
            low = middle
        else:
            high = middle
    return low


def run_case(model_name: str, budget_bytes: int, repeats: int, cache: dict[str, Any], rerun: bool) -> dict[str, Any]:
    key = f"{model_name}@{budget_bytes}"
    record = cache.setdefault(key, {"model": model_name, "budget_bytes": budget_bytes})
    if rerun or "preflight" not in record:
        print(f"[preflight] {model_name} under {format_bytes(budget_bytes)} ...", flush=True)
        run = accuracy.run_preflight(model_name, accuracy.DEFAULT_PLANNED_BATCH, budget=budget_bytes)
        reported = run.get("max_batch_size")
        recomputed = accuracy.peak_model_from_run(run).max_batch_size(budget_bytes)
        record["preflight"] = {"max_batch_size": reported if reported is not None else recomputed,
                               "reported_max_batch_size": reported, "recomputed_max_batch_size": recomputed,
                               "recommended_batch_size": run.get("recommended_batch_size"),
                               "wall_seconds": run["wall_seconds"],
                               "probes": [p["batch_size"] for p in run["probes"]]}
        _save(cache)
    if "true_max_batch_size" not in record:
        print(f"[trials] {model_name} under {format_bytes(budget_bytes)} ...", flush=True)
        started = time.perf_counter()
        record["true_max_batch_size"] = true_max_batch(model_name, budget_bytes, repeats, record)
        _save(cache)
        record["trial_search_seconds"] = round(sum(
            t["wall_seconds"] for trials in record["trials"].values() for t in trials), 1)
        record["trial_search_elapsed_seconds"] = round(time.perf_counter() - started, 1)
        _save(cache)
    predicted = record["preflight"]["max_batch_size"]
    if predicted and predicted > (record["true_max_batch_size"] or 0):
        record["preflight_max_fits"] = False
    elif predicted:
        record["preflight_max_fits"] = True
    _save(cache)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="*", default=list(DEFAULT_CASES), help="MODEL:BUDGET, e.g. cnn:512MiB")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rerun", action="store_true")
    args = parser.parse_args(argv)
    cache = _load()
    rows = []
    for case in args.cases:
        model_name, budget_text = case.split(":")
        rows.append(run_case(model_name, parse_size(budget_text), args.repeats, cache, args.rerun))
    print(f"\n{'model':10s} {'budget':>10s} {'true max':>9s} {'preflight':>10s} {'ratio':>6s} {'OOM?':>5s} "
          f"{'trials s':>9s} {'preflight s':>12s} {'time ratio':>10s}")
    for row in rows:
        true_max, predicted = row["true_max_batch_size"], row["preflight"]["max_batch_size"]
        ratio = (predicted or 0) / true_max if true_max else float("nan")
        time_ratio = row["preflight"]["wall_seconds"] / row["trial_search_seconds"]
        print(f"{row['model']:10s} {format_bytes(row['budget_bytes']):>10s} {true_max!s:>9s} {predicted!s:>10s} "
              f"{ratio:6.2f} {'yes' if row.get('preflight_max_fits') is False else 'no':>5s} "
              f"{row['trial_search_seconds']:9.1f} {row['preflight']['wall_seconds']:12.1f} {time_ratio:10.2f}")
    print(f"\nwritten: {MAX_BATCH_PATH.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
