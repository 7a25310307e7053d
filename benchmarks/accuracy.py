"""Accuracy of preflight's peak prediction at batch sizes it did not probe, against ground truth.

For each zoo model: run `preflight.api.check` on a generated model.py at planned batch `--batch-size`
(default 32: the engine probes 8, 16, 32 and then 64), rebuild the prediction from the report's probes
and graph estimates with `preflight.analysis.predict.PeakModel`, exactly as the report's curve does, and compare it at the ground-truth
batch sizes (8, 24, 48, 96 by default; `benchmarks/ground_truth.py`, max over >= 3 fresh processes).

error = predicted / truth - 1 (positive: over-estimate, safe). Unsafe: error < -2 %.
`--fresh-probes` instead runs one `check()` per probe batch (B/4, B/2, B, 2B), each a fresh process:
probes that share a process read 15-25 % lower than fresh processes on some models (U-Net batch 64:
251-263 MiB after batches 8/16/32 in the same process, 306-327 MiB fresh), and real training is a
fresh process. Those runs go to `preflight_runs_fresh_probes.json` / `accuracy_fresh_probes.json`.
Engine runs are cached in `benchmarks/results/preflight_runs.json` (wall time included; speed.py reads
it); results go to `benchmarks/results/accuracy.json`.

    python -m benchmarks.accuracy                     # every zoo model with ground truth
    python -m benchmarks.accuracy --models cnn mlp --rerun
    python -m benchmarks.accuracy --fresh-probes
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from benchmarks import ground_truth, zoo  # noqa: E402
from preflight.common.measurements import ProbeResult  # noqa: E402
from preflight.analysis.predict import PeakModel  # noqa: E402

RESULTS_DIR = ground_truth.RESULTS_DIR
RUNS_PATH = RESULTS_DIR / "preflight_runs.json"
RUNS_FRESH_PATH = RESULTS_DIR / "preflight_runs_fresh_probes.json"
ACCURACY_PATH = RESULTS_DIR / "accuracy.json"
ACCURACY_FRESH_PATH = RESULTS_DIR / "accuracy_fresh_probes.json"
UNSAFE_BELOW = -0.02
DEFAULT_PLANNED_BATCH = 32


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _save(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def run_preflight(model_name: str, planned_batch_size: int, budget: int | None = None) -> dict[str, Any]:
    """One `check()` on the zoo model's model.py; returns probes, wall time and the report's own figures."""
    from preflight.api import check

    with tempfile.TemporaryDirectory(prefix=f"preflight-bench-{model_name}-") as directory:
        path = zoo.write_model_file(model_name, Path(directory) / "model.py", planned_batch_size,
                                    num_samples=4 * planned_batch_size)
        started = time.perf_counter()
        report = check(str(path), batch_size=planned_batch_size, budget=budget, progress=False)
        wall_seconds = time.perf_counter() - started
    document = report.document
    return {
        "model": model_name, "planned_batch_size": planned_batch_size, "budget_bytes": budget,
        "wall_seconds": round(wall_seconds, 2), "probes": document.get("probes", []),
        # The engine floors the slope at x + y bytes per sample; the document may not carry it.
        "input_bytes_per_sample": (document.get("model") or {}).get("input_bytes_per_sample")
        or input_bytes_per_sample(model_name),
        "memory_limit_bytes": (document.get("device") or {}).get("memory_limit_bytes"),
        "graph_estimates": document.get("graph_estimates") or {},
        "curve": document.get("curve"), "max_batch_size": document.get("max_batch_size"),
        "recommended_batch_size": document.get("recommended_batch_size"),
    }


def run_preflight_fresh_probes(model_name: str, probe_sizes: list[int]) -> dict[str, Any]:
    """One `check()` per probe batch size, so every probe runs in a fresh process (as real training
    does); the probes are pooled into one run record. Wall time is the sum."""
    merged: dict[str, Any] | None = None
    for batch_size in probe_sizes:
        from preflight.api import check

        with tempfile.TemporaryDirectory(prefix=f"preflight-bench-{model_name}-") as directory:
            path = zoo.write_model_file(model_name, Path(directory) / "model.py", batch_size,
                                        num_samples=2 * batch_size)
            started = time.perf_counter()
            report = check(str(path), batch_size=batch_size, probe_batch_sizes=[batch_size], progress=False)
            wall_seconds = time.perf_counter() - started
        document = report.document
        if merged is None:
            merged = {"model": model_name, "planned_batch_size": max(probe_sizes), "budget_bytes": None,
                      "wall_seconds": 0.0, "probes": [], "input_bytes_per_sample": input_bytes_per_sample(model_name),
                      "memory_limit_bytes": (document.get("device") or {}).get("memory_limit_bytes"),
                      "graph_estimates": {}, "fresh_process_per_probe": True}
        merged["wall_seconds"] = round(merged["wall_seconds"] + wall_seconds, 2)
        merged["probes"].extend(document.get("probes", []))
        merged["graph_estimates"].update(document.get("graph_estimates") or {})
    return merged


def input_bytes_per_sample(model_name: str) -> int:
    import numpy as np

    x, y = zoo.make_data(model_name, 1)
    return int(sum(np.asarray(part).nbytes for part in (*(x if isinstance(x, tuple) else (x,)), y)))


def peak_model_from_run(run: dict[str, Any]) -> PeakModel:
    probes = [ProbeResult.from_dict(probe) for probe in run["probes"]]
    return PeakModel(probes, min_bytes_per_sample=run.get("input_bytes_per_sample")
                     or input_bytes_per_sample(run["model"]),
                     graph_estimates={int(b): int(v) for b, v in (run.get("graph_estimates") or {}).items()},
                     memory_limit_bytes=run.get("memory_limit_bytes"))


def evaluate(model_names: list[str], truth_sizes: list[int], planned_batch_size: int, rerun: bool,
             min_runs: int, fresh_probes: bool = False) -> dict[str, Any]:
    runs_path = RUNS_FRESH_PATH if fresh_probes else RUNS_PATH
    runs = _load(runs_path)
    truth_cache = ground_truth.load_cache()
    rows: list[dict[str, Any]] = []
    for model_name in model_names:
        key = f"{model_name}@{planned_batch_size}" + (":fresh" if fresh_probes else "")
        if rerun or key not in runs:
            print(f"[preflight] {model_name} at planned batch {planned_batch_size} ...", flush=True)
            if fresh_probes:
                sizes = sorted({max(1, planned_batch_size // 4), max(1, planned_batch_size // 2),
                                planned_batch_size, 2 * planned_batch_size})
                runs[key] = run_preflight_fresh_probes(model_name, sizes)
            else:
                runs[key] = run_preflight(model_name, planned_batch_size)
            _save(runs_path, runs)
        run = runs[key]
        peak_model = peak_model_from_run(run)
        probed = sorted(p["batch_size"] for p in run["probes"] if p["status"] == "ok")
        for batch_size in truth_sizes:
            truth = ground_truth.truth_bytes(truth_cache, model_name, batch_size, min_runs=min_runs)
            if truth is None:
                continue
            prediction = peak_model.predict_peak(batch_size)
            runs_entry = truth_cache["models"][model_name][str(batch_size)]["runs"]
            rows.append({
                "model": model_name, "batch_size": batch_size, "truth_bytes": truth,
                "truth_runs": sum(1 for r in runs_entry if r.get("status") == "ok"),
                "predicted_bytes": prediction.peak_bytes, "source": prediction.source,
                "margin_fraction": prediction.margin_fraction, "probed": probed,
                "error": round(prediction.peak_bytes / truth - 1, 4),
            })
    return {"rows": rows, "summary": summarize(rows), "planned_batch_size": planned_batch_size,
            "fresh_process_per_probe": fresh_probes, "unsafe_below": UNSAFE_BELOW}


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def stats(subset: list[dict[str, Any]]) -> dict[str, Any]:
        errors = [row["error"] for row in subset]
        return {"n": len(errors), "median_error": round(statistics.median(errors), 4) if errors else None,
                "worst_over": round(max(errors), 4) if errors else None,
                "worst_under": round(min(errors), 4) if errors else None,
                "unsafe": sum(1 for e in errors if e < UNSAFE_BELOW)}

    per_model = {}
    for model_name in dict.fromkeys(row["model"] for row in rows):
        per_model[model_name] = stats([row for row in rows if row["model"] == model_name])
    return {"all": stats(rows), "unprobed": stats([r for r in rows if r["source"] == "predicted"]),
            "per_model": per_model}


def print_table(result: dict[str, Any]) -> None:
    print(f"\n{'model':15s} {'batch':>5s} {'truth MiB':>10s} {'runs':>4s} {'pred MiB':>9s} {'error':>7s}  source     probed")
    for row in result["rows"]:
        flag = "  UNSAFE" if row["error"] < UNSAFE_BELOW else ""
        print(f"{row['model']:15s} {row['batch_size']:5d} {row['truth_bytes'] / 2**20:10.1f} {row['truth_runs']:4d} "
              f"{row['predicted_bytes'] / 2**20:9.1f} {row['error']:+7.1%}  {row['source']:9s}  "
              f"{row['probed']}{flag}")
    print(f"\n{'model':15s} {'n':>3s} {'median':>8s} {'worst over':>11s} {'worst under':>12s} {'unsafe':>7s}")
    summary = result["summary"]
    for name, stats in list(summary["per_model"].items()) + [("ALL", summary["all"]),
                                                              ("ALL unprobed", summary["unprobed"])]:
        if not stats["n"]:
            continue
        print(f"{name:15s} {stats['n']:3d} {stats['median_error']:+8.1%} {stats['worst_over']:+11.1%} "
              f"{stats['worst_under']:+12.1%} {stats['unsafe']:7d}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--batch-sizes", nargs="*", type=int, default=list(ground_truth.DEFAULT_BATCH_SIZES))
    parser.add_argument("--planned-batch-size", type=int, default=DEFAULT_PLANNED_BATCH)
    parser.add_argument("--min-truth-runs", type=int, default=ground_truth.DEFAULT_RUNS)
    parser.add_argument("--rerun", action="store_true", help="run preflight again even when cached")
    parser.add_argument("--fresh-probes", action="store_true",
                        help="one check() per probe batch (B/4, B/2, B, 2B), each in a fresh process")
    args = parser.parse_args(argv)
    model_names = args.models or [name for name in zoo.ZOO
                                  if name in ground_truth.load_cache().get("models", {})]
    result = evaluate(model_names, args.batch_sizes, args.planned_batch_size, args.rerun, args.min_truth_runs,
                      args.fresh_probes)
    output = ACCURACY_FRESH_PATH if args.fresh_probes else ACCURACY_PATH
    _save(output, result)
    print_table(result)
    print(f"\nwritten: {output.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
