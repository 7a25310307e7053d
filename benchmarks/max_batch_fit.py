"""Is preflight's largest batch one that `model.fit` runs, and is it within 10 % of the largest that does?

For each case (a model file, a budget): one `preflight.check(file, budget=...)` (no what-ifs), then, written
without preflight's code, `model.fit` for 3 steps in fresh processes with `TF_CPU_BFC_MEM_LIMIT_IN_MB` at the
budget: at preflight's largest batch M (it must run in all 3 processes), and at the next batch past 10 %
above it, 1.1 M + 1 (if that runs in all 3 with a peak under 96 % of the budget, preflight left more than
10 % on the table). Each batch is fed as `tf.data.Dataset.from_tensors(batch).repeat()`, the samples the
file's `get_dataset()` gives (repeated when fewer). Results go to `benchmarks/results/max_batch_fit.json`
after every case (earlier cases kept); the table is printed.

    python -m benchmarks.max_batch_fit                                  # the default cases
    python -m benchmarks.max_batch_fit --cases examples/mnist_mlp.py:1GiB --processes 3
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_PATH = Path(__file__).resolve().parent / "results" / "max_batch_fit.json"
DEFAULT_CASES = ("examples/mnist_mlp.py:1GiB", "benchmarks/external/recommender.py:1GiB",
                 "benchmarks/external/ts_transformer.py:1GiB", "benchmarks/external/mobilenet_v2.py:512MiB")
FIT_STEPS = 3
NEAR_LIMIT_FILL = 0.96
OOM_MARKERS = ("ResourceExhaustedError", "ran out of memory", "OOM when allocating", "Out of memory")


def _worker(model_file: str, batch_size: int, steps: int = FIT_STEPS) -> dict:
    """In the fresh child: model.fit for `steps` steps at `batch_size`; the allocator's peak."""
    import importlib.util

    import numpy as np
    import tensorflow as tf

    spec = importlib.util.spec_from_file_location("fit_target", model_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.build_model()
    if hasattr(module, "get_dataset"):
        data = module.get_dataset()  # (x, y), or x alone for a model whose own train_step needs no labels
        x, y = data if isinstance(data, tuple) else (data, None)
    else:  # a file without data (the README's MLP): one input, sparse class ids, as its __main__ block trains it
        rng = np.random.default_rng(0)
        x = rng.random((1024, *model.inputs[0].shape[1:]), dtype=np.float32)
        y = rng.integers(0, model.outputs[0].shape[-1], size=(1024,))

    def first(array):
        reps = -(-batch_size // len(array))
        return np.concatenate([array] * reps)[:batch_size] if reps > 1 else array[:batch_size]

    xb = {k: first(v) for k, v in x.items()} if isinstance(x, dict) else first(x)
    dataset = tf.data.Dataset.from_tensors(xb if y is None else (xb, first(y))).repeat()
    tf.config.experimental.reset_memory_stats("CPU:0")
    started = time.perf_counter()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
    return {"status": "ok", "peak_bytes": int(tf.config.experimental.get_memory_info("CPU:0")["peak"]),
            "seconds": round(time.perf_counter() - started, 2)}


def run_fit(model_file: str, batch_size: int, budget_bytes: int, steps: int = FIT_STEPS) -> dict:
    env = {**os.environ, "TF_CPU_ALLOCATOR_USE_BFC": "true", "TF_CPP_MIN_LOG_LEVEL": "1",
           "TF_CPU_BFC_MEM_LIMIT_IN_MB": str(budget_bytes // 2**20)}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "benchmarks.max_batch_fit", "--worker", model_file, str(batch_size),
                           str(steps)], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    wall = {"process_seconds": round(time.monotonic() - started, 1)}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode == 0 and lines:
        return {**json.loads(lines[-1]), **wall}
    text = done.stdout[-3000:] + done.stderr[-3000:]
    return {"status": "oom" if any(m in text for m in OOM_MARKERS) or done.returncode < 0 else "error",
            "returncode": done.returncode, "message": text.strip().splitlines()[-1][:300] if text.strip() else "",
            **wall}


def runs_everywhere(model_file: str, batch_size: int, budget_bytes: int, processes: int) -> dict:
    """{"runs": n ok of `processes`, "fits": all ran under NEAR_LIMIT_FILL of the budget, "peaks"}."""
    peaks, results = [], []
    for _ in range(processes):
        result = run_fit(model_file, batch_size, budget_bytes)
        results.append(result["status"])
        print(f"    fit {Path(model_file).stem} at {batch_size}: {result['status']} "
              f"{(result.get('peak_bytes') or 0) / 2**20:.1f} MiB", flush=True)
        if result["status"] != "ok":
            break
        peaks.append(result["peak_bytes"])
    fits = len(peaks) == processes and max(peaks) <= NEAR_LIMIT_FILL * budget_bytes
    return {"batch_size": batch_size, "statuses": results, "peaks": peaks, "fits": fits}


def measure_case(case: str, processes: int) -> dict:
    from preflight.api import check
    from preflight.common.units import parse_size

    model_file, budget = case.rsplit(":", 1)
    budget_bytes = parse_size(budget)
    started = time.monotonic()
    report = check(model_file, budget=budget, whatif=False, progress=False)
    seconds = round(time.monotonic() - started, 1)
    document = report.document
    largest = document.get("max_batch_size")
    row = {"case": case, "preflight_max": largest, "recommended": document.get("recommended_batch_size"),
           "check_seconds": seconds, "timing": document.get("timing"),
           "confirmation": document.get("max_batch_confirmation")}
    if largest:
        row["at_max"] = runs_everywhere(model_file, largest, budget_bytes, processes)
        row["past_10_percent"] = runs_everywhere(model_file, int(largest * 1.1) + 1, budget_bytes, processes)
    return row


def table(rows: list[dict]) -> str:
    lines = ["| case | preflight max | fit at max (all processes) | fit at 1.1x max + 1 | verdict s | search s |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        at, past = row.get("at_max") or {}, row.get("past_10_percent") or {}

        def said(result: dict) -> str:
            if not result:
                return "n/a"
            peak = f", peak {max(result['peaks']) / 2**20:.0f} MiB" if result["peaks"] else ""
            return f"{'fits' if result['fits'] else 'does not fit'} ({'/'.join(result['statuses'])}{peak})"

        timing = row.get("timing") or {}
        lines.append(f"| {row['case']} | {row['preflight_max']} | {said(at)} | {said(past)} | "
                     f"{timing.get('verdict_seconds', '')} | {timing.get('max_batch_seconds', '')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES), help="MODEL.py:BUDGET")
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--worker", nargs="+", metavar="MODEL BATCH [STEPS]", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args.worker[0], *map(int, args.worker[1:]))), flush=True)
        return 0
    # Earlier cases stay in the results file; a case measured again replaces its row.
    rows = {row["case"]: row for row in (json.loads(RESULTS_PATH.read_text(encoding="utf-8"))
                                          if RESULTS_PATH.exists() else [])}
    for case in args.cases:
        print(f"{case}:", flush=True)
        rows[case] = measure_case(case, args.processes)
        RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
        RESULTS_PATH.write_text(json.dumps(list(rows.values()), indent=1) + "\n", encoding="utf-8")
    print(table(list(rows.values())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
