"""Measured saving of every what-if on three small models: peak and step time against the baseline.

    .venv/bin/python benchmarks/whatif_savings.py            # all three models
    .venv/bin/python benchmarks/whatif_savings.py --models mlp --steps 2
    .venv/bin/python benchmarks/whatif_savings.py --rerank   # ranking rules changed: no new measurements

Each (model, variant) runs in `--repeats` fresh engine children (preflight.whatif.measure) with
TF_CPU_ALLOCATOR_USE_BFC=true and one inter-/intra-op thread: a warm-up step, then `--steps` measured
steps on the same synthetic batch; peak = max allocator peak over all steps and processes, step =
median time. The machine is shared, so step ratios are rough; peaks are what the ranking uses.
Prints a table and writes benchmarks/results/whatif_savings.json (with the ranked recommendations).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import zoo  # noqa: E402
from preflight.common.units import format_bytes  # noqa: E402
from preflight.whatif.measure import list_variants_in_child, measure_variant  # noqa: E402
from preflight.analysis.recommendations import rank_recommendations  # noqa: E402

MiB = 2**20
# name -> (model file or zoo name, batch size, budget used for the "fits" column)
MODELS = {
    "wide_dense_cnn": (str(ROOT / "examples" / "wide_dense_cnn.py"), 64, 160 * MiB),
    "mlp": ("zoo:mlp", 128, None),
    "mobilenetv2": ("zoo:mobilenetv2", 32, None),
}


def _model_file(source: str, batch_size: int, workdir: Path) -> str:
    if source.startswith("zoo:"):
        name = source.split(":", 1)[1]
        return str(zoo.write_model_file(name, workdir / f"{name}.py", batch_size))
    return source


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1,
                        help="fresh processes per configuration; the peak is the max over all of them")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "whatif_savings.json"))
    parser.add_argument("--rerank", action="store_true",
                        help="re-rank and print the saved results without measuring again")
    args = parser.parse_args(argv)
    if args.rerank:
        return _rerank(Path(args.out))

    results = {"command": "benchmarks/whatif_savings.py " + " ".join(sys.argv[1:] if argv is None else argv),
               "machine": f"{platform.processor() or platform.machine()}, BFC allocator, 1 thread",
               "measured_steps": args.steps, "repeats": args.repeats, "models": {}}
    with tempfile.TemporaryDirectory(prefix="preflight-whatif-") as tmp:
        for name in args.models:
            source, batch_size, budget = MODELS[name]
            model_file = _model_file(source, batch_size, Path(tmp))
            specs = list_variants_in_child(model_file, "CPU")
            started = time.monotonic()
            baseline = _measure(model_file, None, batch_size, args.steps, args.repeats)
            if baseline.get("status") != "ok":
                print(f"{name}: baseline failed: {baseline.get('message', '')[-500:]}", file=sys.stderr)
                continue
            rows = []
            for spec in specs:
                measured = _measure(model_file, spec, batch_size, args.steps, args.repeats)
                description = measured.get("description") or {"kind": spec["kind"], "title": spec["kind"]}
                rows.append({**description, "spec": spec, "status": measured.get("status"),
                             "message": measured.get("message", "")[-500:],
                             "peak_bytes": measured.get("peak_bytes"), "step_seconds": measured.get("step_seconds"),
                             "peak_bytes_runs": measured.get("peak_bytes_runs"),
                             "peak_bytes_processes": measured.get("peak_bytes_processes")})
                _print_row(name, rows[-1], baseline)
            ranked = rank_recommendations(baseline["peak_bytes"], rows, budget, baseline["step_seconds"])
            results["models"][name] = {
                "batch_size": batch_size, "budget_bytes": budget, "baseline": baseline, "variants": rows,
                "recommendations": ranked, "seconds": round(time.monotonic() - started, 1),
            }
            _print_table(name, batch_size, baseline, ranked, budget)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists() and set(args.models) != set(MODELS):
        # A partial run updates its models and keeps the others' earlier results.
        earlier = json.loads(out.read_text(encoding="utf-8")).get("models", {})
        results["models"] = {**earlier, **results["models"]}
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


def _measure(model_file: str, spec: dict | None, batch_size: int, steps: int, repeats: int) -> dict:
    """`repeats` fresh processes: peak = max of their peaks (the peak varies between processes even
    single-threaded, by up to ~15 % for the optimizer-bound MLP), step = median of their medians."""
    import statistics

    runs = [measure_variant(model_file, spec, batch_size, steps=steps) for _ in range(repeats)]
    ok = [run for run in runs if run.get("status") == "ok"]
    if len(ok) < len(runs):
        return next(run for run in runs if run.get("status") != "ok")
    merged = dict(ok[0])
    merged["peak_bytes_processes"] = [run["peak_bytes"] for run in ok]
    merged["peak_bytes"] = max(merged["peak_bytes_processes"])
    merged["peak_bytes_runs"] = [peak for run in ok for peak in run["peak_bytes_runs"]]
    merged["step_seconds"] = statistics.median(run["step_seconds"] for run in ok)
    return merged


def _rerank(path: Path) -> int:
    """Apply the current ranking rules to saved measurements (rank.py is pure, so this needs no TF)."""
    results = json.loads(path.read_text(encoding="utf-8"))
    for name, model in results["models"].items():
        baseline = model["baseline"]
        model["recommendations"] = rank_recommendations(baseline["peak_bytes"], model["variants"],
                                                        model["budget_bytes"], baseline["step_seconds"])
        _print_table(name, model["batch_size"], baseline, model["recommendations"], model["budget_bytes"])
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"re-ranked {path}")
    return 0


def _print_row(model: str, row: dict, baseline: dict) -> None:
    peak = row.get("peak_bytes")
    text = "n/a" if peak is None else f"{format_bytes(peak)} ({(peak - baseline['peak_bytes']) / baseline['peak_bytes']:+.0%})"
    print(f"  [{model}] {row.get('title')}: {text} {row.get('status')}", file=sys.stderr, flush=True)


def _print_table(name: str, batch_size: int, baseline: dict, ranked: list[dict], budget: int | None) -> None:
    print(f"\n{name}  batch {batch_size}  baseline peak {format_bytes(baseline['peak_bytes'])}, "
          f"step {baseline['step_seconds']:.3f} s, {baseline['params']:,} params"
          + (f", budget {format_bytes(budget)}" if budget else ""))
    print(f"  {'what-if':58} {'peak':>11} {'saving':>8} {'step x':>7} {'params':>11} {'fits':>5} rec")
    print(f"  {'baseline':58} {format_bytes(baseline['peak_bytes']):>11} {'':>8} {'1.00':>7} "
          f"{baseline['params']:>11,}")
    for entry in ranked:
        peak = format_bytes(entry["peak_bytes"]) if entry["peak_bytes"] is not None else entry["status"]
        saving = f"{entry['saving_fraction']:.0%}" if entry["saving_fraction"] is not None else ""
        ratio = f"{entry['step_ratio']:.2f}" if entry["step_ratio"] is not None else ""
        params = f"{entry['params']:,}" if entry.get("params") is not None else ""
        fits = "" if entry["fits"] is None else ("yes" if entry["fits"] else "no")
        mark = ("LEAD" if entry["lead"] else "yes") if entry["recommended"] else "no"
        print(f"  {entry['title'][:58]:58} {peak:>11} {saving:>8} {ratio:>7} {params:>11} {fits:>5} {mark}")


if __name__ == "__main__":
    sys.exit(main())
