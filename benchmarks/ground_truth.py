"""Ground truth for the benchmarks: the real allocator peak of training steps, one fresh process per run.

One run = a fresh Python process with `TF_CPU_ALLOCATOR_USE_BFC=true` (the GPU's BFC allocator code on
the CPU, notes §1): build the zoo model, one warm-up `train_on_batch` (tracing, Adam slots), then
`STEPS` real steps, each after `reset_memory_stats`; the run's peak is the max of
`get_memory_info('CPU:0')['peak']` over them. The truth at a batch size is the max over >= 3 runs,
because the executor's op order, and so the peak, changes from process to process.

Results are cached in `benchmarks/results/ground_truth.json` (written after every run, atomically), so a
rerun only measures what is missing. `run_trial` is also the OOM trial `max_batch.py` uses
(`TF_CPU_BFC_MEM_LIMIT_IN_MB` in the child; with oneDNN on, an OOM may kill the child with a signal
rather than raise, so the parent classifies by exit code and the allocator's message).

    python -m benchmarks.ground_truth                      # all zoo models, batch 8 24 48 96, 3 runs each
    python -m benchmarks.ground_truth --models cnn mlp --batch-sizes 8 24 --runs 3
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
GROUND_TRUTH_PATH = RESULTS_DIR / "ground_truth.json"
DEFAULT_BATCH_SIZES = (8, 24, 48, 96)   # not powers of two, so they never coincide with engine probes
DEFAULT_RUNS = 3
DEFAULT_STEPS = 3
TRIAL_TIMEOUT_S = 600

_OOM_MARKERS = ("ResourceExhaustedError", "ran out of memory", "OOM when allocating", "Out of memory")


def _worker(model_name: str, batch_size: int, steps: int) -> dict[str, Any]:
    """Runs inside the fresh child: measure `steps` real steps after a warm-up step."""
    import tensorflow as tf

    sys.path.insert(0, str(REPO_ROOT))
    from benchmarks import zoo

    model = zoo.build(model_name)
    x, y = zoo.make_data(model_name, batch_size)
    started = time.perf_counter()
    model.train_on_batch(x, y)
    warmup_seconds = time.perf_counter() - started
    peaks: list[int] = []
    step_seconds: list[float] = []
    resident_bytes = tf.config.experimental.get_memory_info("CPU:0")["current"]
    for _ in range(steps):
        tf.config.experimental.reset_memory_stats("CPU:0")
        started = time.perf_counter()
        model.train_on_batch(x, y)
        step_seconds.append(time.perf_counter() - started)
        peaks.append(int(tf.config.experimental.get_memory_info("CPU:0")["peak"]))
    return {
        "status": "ok", "peak_bytes": max(peaks) if peaks else None, "step_peaks": peaks,
        "resident_bytes": int(resident_bytes), "warmup_seconds": round(warmup_seconds, 3),
        "step_seconds": round(sorted(step_seconds)[len(step_seconds) // 2], 4) if step_seconds else None,
    }


def run_trial(model_name: str, batch_size: int, steps: int = DEFAULT_STEPS,
              mem_limit_mb: int | None = None, timeout_s: float = TRIAL_TIMEOUT_S) -> dict[str, Any]:
    """One fresh-process run. Returns {"status": "ok"|"oom"|"error", "peak_bytes", ..., "wall_seconds"}."""
    env = dict(os.environ)
    env["TF_CPU_ALLOCATOR_USE_BFC"] = "true"
    env["TF_CPP_MIN_LOG_LEVEL"] = env.get("TF_CPP_MIN_LOG_LEVEL", "1")
    if mem_limit_mb is not None:
        env["TF_CPU_BFC_MEM_LIMIT_IN_MB"] = str(int(mem_limit_mb))
    command = [sys.executable, "-m", "benchmarks.ground_truth", "--worker", model_name,
               str(int(batch_size)), str(int(steps))]
    started = time.perf_counter()
    try:
        completed = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                                   timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "wall_seconds": round(time.perf_counter() - started, 2)}
    wall_seconds = round(time.perf_counter() - started, 2)
    result_lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode == 0 and result_lines:
        result = json.loads(result_lines[-1])
        result["wall_seconds"] = wall_seconds
        return result
    stderr_tail = completed.stderr[-3000:]
    status = "oom" if any(marker in completed.stderr for marker in _OOM_MARKERS) else "error"
    return {"status": status, "returncode": completed.returncode, "wall_seconds": wall_seconds,
            "message": stderr_tail if status == "error" else ""}


def load_cache(path: Path = GROUND_TRUTH_PATH) -> dict[str, Any]:
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    return {"format": 1, "description": (
        "BFC peak (TF_CPU_ALLOCATOR_USE_BFC=true) of real train_on_batch steps after a warm-up step; "
        "runs = one fresh process each (max over its measured steps); truth = max over runs"),
        "models": {}}


def save_cache(cache: dict[str, Any], path: Path = GROUND_TRUTH_PATH) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(cache, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def truth_bytes(cache: dict[str, Any], model_name: str, batch_size: int, min_runs: int = DEFAULT_RUNS) -> int | None:
    """The ground-truth peak (max over runs), or None when fewer than `min_runs` runs succeeded."""
    entry = cache.get("models", {}).get(model_name, {}).get(str(batch_size))
    if not entry:
        return None
    peaks = [run["peak_bytes"] for run in entry["runs"] if run.get("status") == "ok"]
    return max(peaks) if len(peaks) >= min_runs else None


def measure(model_names: list[str], batch_sizes: list[int], runs: int = DEFAULT_RUNS,
            steps: int = DEFAULT_STEPS, path: Path = GROUND_TRUTH_PATH, log=print) -> dict[str, Any]:
    """Fill the cache up to `runs` successful runs per (model, batch size). Round-robin over repeats, so
    every model gets its first run before any model gets its third."""
    cache = load_cache(path)
    for repeat in range(runs):
        for model_name in model_names:
            for batch_size in batch_sizes:
                entry = cache["models"].setdefault(model_name, {}).setdefault(str(batch_size), {"runs": []})
                done = [run for run in entry["runs"] if run.get("status") == "ok"]
                failures = [run for run in entry["runs"] if run.get("status") != "ok"]
                if len(done) > repeat or len(failures) >= 2:
                    continue
                result = run_trial(model_name, batch_size, steps)
                entry["runs"].append(result)
                save_cache(cache, path)
                peak = result.get("peak_bytes")
                log(f"{model_name:15s} bs {batch_size:4d} run {repeat + 1}: {result['status']:7s} "
                    f"peak {peak / 2**20 if peak else float('nan'):8.1f} MiB  wall {result['wall_seconds']:.1f} s",)
    return cache


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", nargs=3, metavar=("MODEL", "BATCH", "STEPS"), help=argparse.SUPPRESS)
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--batch-sizes", nargs="*", type=int, default=list(DEFAULT_BATCH_SIZES))
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS)
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    args = parser.parse_args(argv)
    if args.worker:
        model_name, batch_size, steps = args.worker
        print(json.dumps(_worker(model_name, int(batch_size), int(steps))), flush=True)
        return 0
    sys.path.insert(0, str(REPO_ROOT))
    from benchmarks import zoo

    model_names = args.models or list(zoo.ZOO)
    cache = measure(model_names, args.batch_sizes, args.runs, args.steps, log=lambda text: print(text, flush=True))
    print(f"\n{'model':15s} " + " ".join(f"{'bs ' + str(b):>10s}" for b in args.batch_sizes) + "   (MiB, max over runs)")
    for model_name in model_names:
        cells = []
        for batch_size in args.batch_sizes:
            truth = truth_bytes(cache, model_name, batch_size, min_runs=1)
            cells.append(f"{truth / 2**20:10.1f}" if truth else f"{'-':>10s}")
        print(f"{model_name:15s} " + " ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
