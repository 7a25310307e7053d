"""Chart of the accuracy benchmark: per zoo model, preflight's probes and upper-bound curve against the
ground truth (every fresh-process run, and their max). Reads the JSON the benchmarks wrote; runs no TF.

    python -m benchmarks.chart          # -> benchmarks/results/accuracy.png
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from benchmarks import accuracy, ground_truth  # noqa: E402

CHART_PATH = ground_truth.RESULTS_DIR / "accuracy.png"


def main(argv: list[str] | None = None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = json.loads(accuracy.RUNS_PATH.read_text(encoding="utf-8"))
    truth = ground_truth.load_cache()["models"]
    keys = [key for key in runs if key.endswith(f"@{accuracy.DEFAULT_PLANNED_BATCH}") and key.split("@")[0] in truth]
    columns = 4
    rows = max(1, math.ceil(len(keys) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.2 * rows), squeeze=False)
    for axis, key in zip(axes.flat, keys):
        model_name = key.split("@")[0]
        run = runs[key]
        peak_model = accuracy.peak_model_from_run(run)
        top = max([96] + [int(size) for size in truth[model_name]]) + 8
        sizes = list(range(1, top + 1))
        axis.plot(sizes, [peak_model.predict_peak(b).peak_bytes / 2**20 for b in sizes], color="tab:blue",
                  label="preflight upper bound")
        probes = [p for p in run["probes"] if p["status"] == "ok"]
        axis.scatter([p["batch_size"] for p in probes], [p["peak_bytes"] / 2**20 for p in probes],
                     color="tab:blue", marker="o", zorder=3, label="probe (max of steps)")
        for size, entry in truth[model_name].items():
            peaks = [r["peak_bytes"] / 2**20 for r in entry["runs"] if r.get("status") == "ok"]
            if peaks:
                axis.scatter([int(size)] * len(peaks), peaks, color="tab:red", marker="x", zorder=4,
                             label="fresh-process run" if size == next(iter(truth[model_name])) else None)
        axis.set_title(model_name)
        axis.set_xlabel("batch size")
        axis.set_ylabel("peak MiB (BFC)")
        axis.set_ylim(bottom=0)
    for axis in list(axes.flat)[len(keys):]:
        axis.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=3)
    figure.tight_layout(rect=(0, 0.05, 1, 1))
    figure.savefig(CHART_PATH, dpi=80)
    print(f"written: {CHART_PATH.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
