"""Does the engine's peak agree with an independent measurement, and are its byte counts exact?

For an MLP, a small CNN and an LSTM: `preflight.check(model.py)` at the file's batch size against
`tests/independent_peak.py` (real training steps in fresh processes with the BFC allocator, written
without preflight's code), 3 processes x 3 steps; and the parameter / optimizer bytes preflight reports
against sizes computed by hand from the layer shapes. Prints a table, writes
benchmarks/results/engine_agreement.json.

    python -m benchmarks.engine_agreement
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "engine_agreement.json"
MIB = 2**20

# name: (model file, batch, hand-computed params, optimizer slots per weight)
MODELS = {
    "mlp": ("examples/mnist_mlp.py", 256, 784 * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 10 + 10, 2),
    "cnn": ("tests/models/cnn.py", 32, (3 * 3 * 3 * 16 + 16) + (3 * 3 * 16 * 32 + 32) + (32 * 10 + 10), 2),
    "lstm": ("tests/models/lstm.py", 16, 500 * 32 + 4 * (32 * 64 + 64 * 64 + 64) + 65, 1),
}
OPTIMIZER_SCALARS = 8 + 4  # iterations (int64) + learning rate (float32)


def independent(model_file: str, batch: int, processes: int = 3, steps: int = 3) -> list[int]:
    peaks: list[int] = []
    for _ in range(processes):
        out = subprocess.run([sys.executable, str(REPO / "tests" / "independent_peak.py"), str(REPO / model_file),
                              str(batch), str(steps)], capture_output=True, text=True, check=True)
        peaks += json.loads(out.stdout.strip().splitlines()[-1])["peaks"]
    return peaks


def main() -> int:
    import preflight

    rows = []
    for name, (path, batch, params, slots) in MODELS.items():
        started = time.monotonic()
        doc = preflight.check(str(REPO / path), progress=False).document
        seconds = time.monotonic() - started
        reference = independent(path, batch)
        probe = next(p for p in doc["probes"] if p["batch_size"] == batch)
        rows.append({
            "model": name, "batch_size": batch,
            "preflight_peak_bytes": doc["peak_bytes"], "preflight_runs": probe["peak_bytes_runs"],
            "independent_runs": reference, "independent_max": max(reference), "independent_min": min(reference),
            "ratio_to_independent_max": doc["peak_bytes"] / max(reference),
            "within_independent_range": min(reference) <= doc["peak_bytes"] <= max(reference),
            "param_bytes": doc["footprint"]["parameters"], "param_bytes_expected": params * 4,
            "optimizer_bytes": doc["footprint"]["optimizer"],
            "optimizer_bytes_expected": slots * params * 4 + OPTIMIZER_SCALARS,
            "preflight_seconds": round(seconds, 1),
        })
    print(f"{'model':<6} {'batch':>5} {'preflight MiB':>14} {'independent MiB (min-max)':>26} {'ratio':>6} "
          f"{'params exact':>12} {'optimizer exact':>15}")
    for row in rows:
        print(f"{row['model']:<6} {row['batch_size']:>5} {row['preflight_peak_bytes'] / MIB:>14.1f} "
              f"{row['independent_min'] / MIB:>12.1f} - {row['independent_max'] / MIB:<11.1f} "
              f"{row['ratio_to_independent_max']:>6.3f} {str(row['param_bytes'] == row['param_bytes_expected']):>12} "
              f"{str(row['optimizer_bytes'] == row['optimizer_bytes_expected']):>15}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
