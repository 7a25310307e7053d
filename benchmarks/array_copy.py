"""model.fit(x, y) on NumPy arrays under TensorFlow holds a copy of the whole arrays in the allocator a CPU step
uses: how much, and does preflight's largest batch leave room for it?

1. What fit holds, no limit: a dense model (1,024 float32 features, Dense 128, Dense 10, Adam), fit(x, y) at
   batch 64 for 3 steps on 1,024 to 16,384 samples, against fit on the first batch repeated through tf.data
   (the step alone, as preflight's own fit runs and the zoo's truth feed it); one fresh process each.
2. The answer under a budget: the same model with 20,000 samples of 256 features (19.7 MiB of arrays) under
   64 MiB. preflight's largest batch with the file's arrays (the copy counted), and from the step alone (the
   same file without its data: what preflight answered before it counted the copy); then model.fit(x, y) at
   each answer in 3 fresh processes with TF_CPU_BFC_MEM_LIMIT_IN_MB at the budget.

    python -m benchmarks.array_copy        # about 3 minutes; writes benchmarks/results/array_copy.json
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.max_batch_fit import NEAR_LIMIT_FILL, OOM_MARKERS

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_PATH = Path(__file__).resolve().parent / "results" / "array_copy.json"
PROCESSES = 3
MODEL = """
import keras
import numpy as np

FEATURES, SAMPLES = {features}, {samples}


def get_dataset():
    rng = np.random.default_rng(0)
    return rng.random((SAMPLES, FEATURES), dtype=np.float32), rng.integers(0, 10, SAMPLES)


model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(128, activation="relu"),
                          keras.layers.Dense(10)])
model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
batch_size = 64
"""
WORKER = """
import runpy
import sys

import tensorflow as tf

namespace = runpy.run_path(sys.argv[1])
x, y = namespace["get_dataset"]()
batch, form = int(sys.argv[2]), sys.argv[3]
if form == "arrays":
    namespace["model"].fit(x, y, batch_size=batch, steps_per_epoch=3, epochs=1, verbose=0, shuffle=False)
else:
    stream = tf.data.Dataset.from_tensors((x[:batch], y[:batch])).repeat()
    namespace["model"].fit(stream, steps_per_epoch=3, epochs=1, verbose=0)
print("PEAK", tf.config.experimental.get_memory_info("CPU:0")["peak"])
"""


def write_model(folder: Path, features: int, samples: int, with_data: bool = True) -> Path:
    source = MODEL.format(features=features, samples=samples)
    if not with_data:  # the step alone: preflight synthesizes one batch's samples
        source = source.replace("def get_dataset", "def arrays")
    path = folder / f"dense_{features}x{samples}{'' if with_data else '_no_data'}.py"
    path.write_text(source)
    return path


def fit_peak(model_file: Path, batch: int, form: str, limit_bytes: int | None = None) -> dict:
    """One fresh process: fit in `form` ("arrays": fit(x, y); "stream": the first batch repeated)."""
    worker = model_file.parent / "worker.py"
    worker.write_text(WORKER)
    env = {**os.environ, "TF_CPU_ALLOCATOR_USE_BFC": "true", "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    if limit_bytes:
        env["TF_CPU_BFC_MEM_LIMIT_IN_MB"] = str(limit_bytes // 2**20)
    done = subprocess.run([sys.executable, str(worker), str(model_file), str(batch), form], env=env,
                          capture_output=True, text=True, timeout=600)
    if done.returncode == 0 and "PEAK" in done.stdout:
        peak = int(done.stdout.split("PEAK")[-1].split()[0])
        near = limit_bytes is not None and peak > NEAR_LIMIT_FILL * limit_bytes
        return {"status": "near_limit" if near else "ok", "peak_bytes": peak}
    oom = any(marker in done.stderr for marker in OOM_MARKERS)
    return {"status": "oom" if oom else f"crashed (exit {done.returncode})", "peak_bytes": None}


def largest_batch(model_file: Path, budget: str) -> int | None:
    from preflight.api import check

    return check(str(model_file), budget=budget, whatif=False, progress=False).document.get("max_batch_size")


def main() -> int:
    folder = Path(tempfile.mkdtemp(prefix="array_copy_"))
    held = []
    for samples in (1024, 4096, 16384):
        model_file = write_model(folder, 1024, samples)
        arrays = samples * (1024 * 4 + 8)
        with_arrays, alone = fit_peak(model_file, 64, "arrays"), fit_peak(model_file, 64, "stream")
        held.append({"samples": samples, "array_bytes": arrays, "fit_arrays_peak_bytes": with_arrays["peak_bytes"],
                     "fit_one_batch_peak_bytes": alone["peak_bytes"],
                     "difference_over_arrays": round((with_arrays["peak_bytes"] - alone["peak_bytes"]) / arrays, 3)})
        print(f"{samples:>6} samples: arrays {arrays / 2**20:.1f} MiB; fit(x, y) {with_arrays['peak_bytes'] / 2**20:.1f} "
              f"MiB, one batch repeated {alone['peak_bytes'] / 2**20:.1f} MiB", flush=True)
    budget, limit = "64MiB", 64 * 2**20
    arrays_file = write_model(folder, 256, 20000)
    answers = []
    for label, checked in (("arrays counted", arrays_file), ("step alone", write_model(folder, 256, 20000, False))):
        largest = largest_batch(checked, budget)
        runs = [fit_peak(arrays_file, largest, "arrays", limit) for _ in range(PROCESSES)]
        answers.append({"answer": label, "largest_batch": largest, "fit_runs": runs,
                        "fits": all(run["status"] == "ok" for run in runs)})
        print(f"{label}: largest batch {largest}; fit(x, y) under {budget}: "
              + ", ".join(f"{r['status']}" + (f" {r['peak_bytes'] / 2**20:.1f} MiB" if r["peak_bytes"] else "")
                          for r in runs), flush=True)
    RESULTS_PATH.write_text(json.dumps({"held": held, "budget": budget, "answers": answers}, indent=1) + "\n")
    print(f"wrote {RESULTS_PATH.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
