"""How far the zoo's truth moves between two draws (issue 21): the same `model.fit` truth measured again.

`benchmarks.external_zoo` takes as truth the largest allocator peak of `model.fit` (3 steps) over 3 fresh
processes. This script measures each of its truth points again, in 3 new fresh processes, and compares the
two maxima. The change is the part of a prediction's error that no prediction can remove: a predictor equal to
the first draw's truth is wrong by that much against the second. It bounds how tight the zoo's goals (none
below by more than 2 %, median over at most 5 %) can be met honestly.

No preflight code runs here: the fit runs are `benchmarks/max_batch_fit.py`'s worker, with no limit that binds.

    python -m benchmarks.truth_repeat                 # every point of results/external_zoo.json, ~30 min
    python -m benchmarks.truth_repeat --cases mobilenet_v2 hub_bert_classifier
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from benchmarks.external_zoo import RESULTS_PATH as ZOO_RESULTS, TRUTH_LIMIT_BYTES
from benchmarks.max_batch_fit import runs_everywhere

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "truth_repeat.json"


def repeat_point(model_file: str, batch_size: int, first_peaks: list[int], processes: int) -> dict:
    again = runs_everywhere(model_file, batch_size, TRUTH_LIMIT_BYTES, processes)
    row = {"model": Path(model_file).stem, "batch_size": batch_size, "first_peaks": first_peaks,
           "second_peaks": again["peaks"], "second_statuses": again["statuses"]}
    if first_peaks and len(again["peaks"]) == processes:
        first, second = max(first_peaks), max(again["peaks"])
        every = [*first_peaks, *again["peaks"]]
        row.update({"first_bytes": first, "second_bytes": second,
                    "change": round(second / first - 1, 4),
                    # the spread of all six processes: what one draw of three can miss
                    "six_process_spread": round((max(every) - min(every)) / max(every), 4)})
    return row


def table(rows: list[dict]) -> str:
    lines = ["| model | batch | first truth MiB (3 processes) | second truth MiB (3 more) | change | spread of all 6 |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        if "change" not in row:
            lines.append(f"| {row['model']} | {row['batch_size']} | n/a | {'/'.join(row['second_statuses'])} | | |")
            continue
        lines.append(f"| {row['model']} | {row['batch_size']} | {row['first_bytes'] / 2**20:.1f} | "
                     f"{row['second_bytes'] / 2**20:.1f} | {row['change']:+.1%} | {row['six_process_spread']:.1%} |")
    return "\n".join(lines)


def summary(rows: list[dict]) -> dict:
    changes = [row["change"] for row in rows if "change" in row]
    if not changes:
        return {"points": 0}
    return {"points": len(changes),
            "median_abs_change": round(statistics.median(abs(c) for c in changes), 4),
            "largest_drop": round(min(changes), 4), "largest_rise": round(max(changes), 4),
            # a predictor equal to the first truth: how many points it would have below the second by > 2 %
            "first_below_second_by_2_percent": sum(1 for c in changes if c > 0.02 / 0.98)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zoo", type=Path, default=ZOO_RESULTS, help="the zoo results whose truths to repeat")
    parser.add_argument("--cases", nargs="*", default=None, help="model file stems (default: every case)")
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--results", type=Path, default=RESULTS_PATH)
    args = parser.parse_args(argv)
    zoo_rows = json.loads(args.zoo.read_text(encoding="utf-8"))["rows"]
    rows = []
    for zoo_row in zoo_rows:
        model_file = zoo_row["case"].rsplit(":", 1)[0]
        if args.cases and Path(model_file).stem not in args.cases:
            continue
        for point in zoo_row.get("predictions") or []:
            started = time.monotonic()
            rows.append(repeat_point(model_file, point["batch_size"], point["peaks"], args.processes))
            print(f"{Path(model_file).stem} @ {point['batch_size']}: {rows[-1].get('change', 'n/a')} "
                  f"({time.monotonic() - started:.0f} s)", flush=True)
            args.results.write_text(json.dumps({"rows": rows, "summary": summary(rows)}, indent=1) + "\n",
                                    encoding="utf-8")
    print(table(rows))
    print(json.dumps(summary(rows), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
