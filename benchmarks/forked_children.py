"""A step's peak in children forked from the fork server against fresh interpreters (issue 22).

preflight forks every dry-run child from a process that imported TensorFlow once (preflight.engine.zygote).
That is only right if a forked child's peak is drawn from the same spread as a fresh process's: a real run is
a fresh process, and the verdict must not miss a high mode it reaches. For each fixture the same job (one
batch size, 3 measured steps, default threading) runs in N children forked from one server and in N fresh
interpreters; the table gives min / median / max and the share of runs in the upper mode (over the midpoint
of the two extremes seen).

    python -m benchmarks.forked_children            # writes benchmarks/results/forked_children.json
    python -m benchmarks.forked_children --runs 8   # fewer runs
    python -m benchmarks.forked_children --single-thread --runs 3   # one inter-op, one intra-op thread
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from preflight.engine import zygote
from preflight.engine.runner import ProbeJob, run_probes

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_PATH = Path(__file__).resolve().parent / "results" / "forked_children.json"
FIXTURES = {"lstm": ("tests/models/lstm.py", 16), "cnn": ("tests/models/cnn.py", 32)}


def peaks(path: str, batch_size: int, runs: int, fork_server: str, single_thread: bool) -> tuple[list[int], float]:
    os.environ["PREFLIGHT_FORK_SERVER"] = fork_server
    started = time.monotonic()
    measured = []
    for _ in range(runs):
        outcome = run_probes(ProbeJob(source={"kind": "file", "path": str(REPO_ROOT / path)},
                                      batch_sizes=[batch_size], measured_steps=3, backend="tensorflow",
                                      single_thread=single_thread))
        measured += [p.peak_bytes for p in outcome.probes if p.status == "ok"]
    zygote.stop()
    return measured, time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--single-thread", action="store_true", help="one inter-op and one intra-op thread")
    args = parser.parse_args(argv)
    rows = []
    for name, (path, batch_size) in FIXTURES.items():
        measured = {kind: peaks(path, batch_size, args.runs, server, args.single_thread) for kind, server in
                    (("forked", "keep"), ("fresh", "0"))}
        every = [p for values, _ in measured.values() for p in values]
        midpoint = (min(every) + max(every)) / 2
        for kind, (values, seconds) in measured.items():
            rows.append({"model": name, "batch_size": batch_size, "children": kind, "runs": len(values),
                         "min_bytes": min(values), "median_bytes": int(statistics.median(values)),
                         "max_bytes": max(values), "upper_mode_share": sum(v > midpoint for v in values) / len(values),
                         "seconds_per_child": seconds / max(1, len(values)), "peaks": values})
    print(f"{'model':6} {'children':8} {'runs':>4} {'min MB':>8} {'median MB':>9} {'max MB':>8} {'upper':>6} "
          f"{'s/child':>7}")
    for row in rows:
        print(f"{row['model']:6} {row['children']:8} {row['runs']:4d} {row['min_bytes'] / 1e6:8.2f} "
              f"{row['median_bytes'] / 1e6:9.2f} {row['max_bytes'] / 1e6:8.2f} {row['upper_mode_share']:6.0%} "
              f"{row['seconds_per_child']:7.1f}")
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    results = RESULTS_PATH.with_name("forked_children_single_thread.json") if args.single_thread else RESULTS_PATH
    summary = {"runs": args.runs, "single_thread": args.single_thread, "rows": rows}
    results.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {results.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
