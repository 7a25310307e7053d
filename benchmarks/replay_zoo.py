"""Replay the held-out zoo's predictions with the prediction code as it is now, without running anything.

`benchmarks/external_zoo.py` keeps each case's report (its probes, the largest-batch search's `fit` runs) beside
the truths it measured (`model.fit`, 3 fresh processes). This script rebuilds the report's peak curve from
those measurements with the current `preflight.analysis.predict` and compares it with the same truths, so a
change to the curve or its margin is judged against 24 truths in seconds rather than a 60-minute zoo run. The
truths stay where the zoo measured them; a replayed curve may pick other points, which only a zoo run measures.

It lists the cases whose rebuilt curve differs from the stored one: with the code that made the results none
should (the replay is faithful); after a change to the prediction, the cases the change moved.

    python -m benchmarks.replay_zoo                                   # benchmarks/results/external_zoo.json
    python -m benchmarks.replay_zoo --results /tmp/trial.json
    python -m benchmarks.replay_zoo --all --largest-tensor-margin     # every stored draw, per model

`--largest-tensor-margin` adds to each replayed prediction what TensorFlow's BFC allocator may hand one tensor
beyond its request: a request takes a whole free chunk when splitting it would leave under 128 MiB and the chunk
is under twice the request, so up to min(the tensor, 128 MiB) more; the tensor is the report's largest layer
output (`activation_bytes_per_sample` x the batch). It prints what that margin would cost per model (README,
"What decides a draw").
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from benchmarks.external_zoo import BELOW_GOAL, RESULTS_PATH, WORST_GOAL, stored_draws

OUT_PATH = Path(__file__).resolve().parent / "results" / "replay_zoo.json"
BFC_UNSPLIT_BYTES = 128 * 2**20   # tensorflow/core/common_runtime/bfc_allocator: kMaxInternalFragmentation


def rebuilt_curve(report: dict) -> dict[int, int]:
    """{batch: peak bytes} as analysis.document builds the report's curve from the same measurements."""
    from preflight.analysis.document import curve_model_of_report

    sizes = [row["batch_size"] for row in report.get("curve") or []]
    return {row["batch_size"]: row["peak_bytes"] for row in curve_model_of_report(report).curve(sizes)}


def largest_tensor_bytes(report: dict, batch_size: int) -> int:
    """The report's largest layer output at `batch_size`, at most what BFC may leave unsplit."""
    per_sample = max((layer.get("activation_bytes_per_sample") or 0 for layer in report.get("layers") or []),
                     default=0)
    return min(per_sample * batch_size, BFC_UNSPLIT_BYTES)


def replay(rows: list[dict], largest_tensor_margin: bool = False) -> tuple[list[dict], list[str]]:
    replayed, curve_differs = [], []
    for row in rows:
        report = row.get("report")
        if not report:
            continue
        curve = rebuilt_curve(report)
        stored = {r["batch_size"]: r["peak_bytes"] for r in report.get("curve") or []}
        if any(curve.get(b) != v for b, v in stored.items()):
            curve_differs.append(row["case"])
        for point in row.get("predictions") or []:
            batch = point["batch_size"]
            replayed.append({"case": row["case"], "batch_size": batch, "truth_bytes": point["truth_bytes"],
                             "stored_error": point["error"],
                             "error": round(curve[batch] / point["truth_bytes"] - 1, 4)})
            if largest_tensor_margin:
                replayed[-1]["error_with_margin"] = round(
                    (curve[batch] + largest_tensor_bytes(report, batch)) / point["truth_bytes"] - 1, 4)
    return replayed, curve_differs


def error_summary(points: list[dict]) -> dict:
    """The replayed errors against the goals: how many, the median, the worst over, how many below -2 %."""
    errors = [p["error"] for p in points]
    return {"points": len(points), "median_error": round(statistics.median(errors), 4),
            "worst_over": max(errors), "below_2_percent": sum(1 for e in errors if e < BELOW_GOAL)}


def by_model(points: list[dict]) -> str:
    """Per model over every replayed point: the median error, the lowest, the highest, how many lie outside the
    goals (below BELOW_GOAL, over WORST_GOAL), and with the largest-tensor margin."""
    lines = ["| model | points | median | lowest | highest | below -2 % | over +15 % | median with margin "
             "| worst with margin |", "|---|---|---|---|---|---|---|---|---|"]
    cases: dict[str, list[dict]] = {}
    for point in points:
        cases.setdefault(Path(point["case"]).name, []).append(point)
    for case, mine in cases.items():
        errors = [p["error"] for p in mine]
        margined = [p["error_with_margin"] for p in mine if "error_with_margin" in p]
        lines.append(f"| {case} | {len(mine)} | {statistics.median(errors):+.1%} | {min(errors):+.1%} | "
                     f"{max(errors):+.1%} | {sum(1 for e in errors if e < BELOW_GOAL)} | "
                     f"{sum(1 for e in errors if e > WORST_GOAL)} | "
                     + (f"{statistics.median(margined):+.1%} | {max(margined):+.1%} |" if margined else "n/a | n/a |"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS_PATH)
    parser.add_argument("--all", action="store_true", help="every stored draw (benchmarks.external_zoo --history)")
    parser.add_argument("--largest-tensor-margin", action="store_true",
                        help="also replay with one largest tensor (at most 128 MiB) added to each prediction")
    args = parser.parse_args(argv)
    if args.all:
        points, curve_differs = [], []
        for _, path in stored_draws(RESULTS_PATH.parent):
            more, differs = replay(json.loads(path.read_text(encoding="utf-8"))["rows"], args.largest_tensor_margin)
            points += more
            curve_differs += [f"{path.name}: {case}" for case in differs]
        print(by_model(points))
        print(json.dumps({**error_summary(points), "rows_whose_curve_moved": len(curve_differs)}, indent=1))
        return 0
    rows = json.loads(args.results.read_text(encoding="utf-8"))["rows"]
    points, curve_differs = replay(rows, args.largest_tensor_margin)
    if not points:
        print(f"no row of {args.results} keeps its report: run benchmarks.external_zoo first", file=sys.stderr)
        return 1
    print("| case | batch | stored error | replayed error |\n|---|---|---|---|")
    for p in points:
        print(f"| {Path(p['case']).name} | {p['batch_size']} | {p['stored_error']:+.1%} | {p['error']:+.1%} |")
    summary = {**error_summary(points), "curve_differs": curve_differs}
    print(json.dumps(summary, indent=1))
    OUT_PATH.write_text(json.dumps({"points": points, "summary": summary}, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
