"""Per-device peak under a tf.distribute MirroredStrategy over logical CPU devices: preflight's figure
against a real `fit` under the same strategy (issue 25).

For each case a model.py is written that splits the CPU into N logical devices and builds the model in a
MirroredStrategy scope (as multi-device scripts do). preflight checks it (`python -m preflight`, its
`per_device` section: the allocator's total over the replicas / N + its margin); the truth is `model.fit`
on the same file in 3 fresh processes, the allocator's peak of every step after the first (reset before
each step), divided by N (the logical devices share one allocator), max over the processes.

    python -m benchmarks.distributed_peak            # writes benchmarks/results/distributed_peak.json
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_PATH = Path(__file__).resolve().parent / "results" / "distributed_peak.json"
RUNS = 3
FIT_STEPS = 6

SETUP = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * {devices})
import keras
import numpy as np
strategy = tf.distribute.MirroredStrategy([f"/cpu:{{i}}" for i in range({devices})])
"""
MODELS = {
    "mlp": """
with strategy.scope():
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(1024, activation="relu"),
                              keras.layers.Dense(1024, activation="relu"), keras.layers.Dense(10)], name="mlp")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
x = np.random.rand({samples}, 784).astype("float32")
y = np.random.randint(0, 10, {samples}).astype("int32")
""",
    "cnn": """
with strategy.scope():
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(32, 3, activation="relu"),
                              keras.layers.MaxPooling2D(), keras.layers.Conv2D(64, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(128, activation="relu"),
                              keras.layers.Dense(10)], name="cnn")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
x = np.random.rand({samples}, 32, 32, 3).astype("float32")
y = np.random.randint(0, 10, {samples}).astype("int32")
""",
}
FIT = """

class Peak(keras.callbacks.Callback):
    peaks = []

    def on_train_batch_begin(self, batch, logs=None):
        if batch:
            tf.config.experimental.reset_memory_stats("CPU:0")

    def on_train_batch_end(self, batch, logs=None):
        if batch:
            self.peaks.append(tf.config.experimental.get_memory_info("CPU:0")["peak"])


if __name__ == "__main__":
    model.fit(x, y, batch_size={batch}, epochs=1, verbose=0, callbacks=[Peak()], shuffle=False)
    print("PEAK", max(Peak.peaks))
"""


def _environment() -> dict[str, str]:
    return {**os.environ, "TF_CPU_ALLOCATOR_USE_BFC": "true", "PYTHONPATH": str(REPO_ROOT),
            "PREFLIGHT_CALIBRATION": "none", "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}


def measure(name: str, devices: int, batch: int, workdir: Path) -> dict:
    source = workdir / f"{name}_{devices}.py"
    body = SETUP.format(devices=devices) + MODELS[name].format(samples=batch * FIT_STEPS)
    source.write_text(textwrap.dedent(body) + f"batch_size = {batch}\n" + FIT.format(batch=batch))
    report = workdir / f"{name}_{devices}.json"
    subprocess.run([sys.executable, "-m", "preflight", str(source), "--batch-size", str(batch), "--budget", "8GiB",
                    "--no-whatif", "--json", str(report), "--html", "none", "--quiet"],
                   env=_environment(), check=False, timeout=900)
    document = json.loads(report.read_text())
    section = document["per_device"]
    real_totals = []
    for _ in range(RUNS):
        done = subprocess.run([sys.executable, str(source)], env=_environment(), capture_output=True, text=True,
                              timeout=600, check=True)
        real_totals.append(int(done.stdout.split("PEAK")[-1].split()[0]))
    real = -(-max(real_totals) // devices)
    return {"model": name, "devices": devices, "global_batch": batch,
            "per_replica_batch": section["per_replica_batch_size"],
            "predicted_per_device_bytes": section["peak_bytes"],
            "predicted_total_bytes": section["total_peak_bytes"],
            "real_per_device_bytes": real, "real_total_bytes_runs": real_totals,
            "ratio": round(section["peak_bytes"] / real, 3), "covered": section["peak_bytes"] >= real}


def table(rows: list[dict]) -> str:
    lines = ["| model | devices | global batch | predicted per device | real fit per device (max of 3) | "
             "predicted / real | covered |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['devices']} logical CPUs | {r['global_batch']} | "
                     f"{r['predicted_per_device_bytes'] / 2**20:.1f} MiB | {r['real_per_device_bytes'] / 2**20:.1f} MiB"
                     f" | {r['ratio']:.2f} | {'yes' if r['covered'] else 'no'} |")
    return "\n".join(lines)


def main() -> int:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, devices, batch in (("mlp", 2, 128), ("cnn", 2, 64)):
            rows.append(measure(name, devices, batch, Path(tmp)))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    RESULTS_PATH.write_text(json.dumps({"strategy": "MirroredStrategy", "runs": RUNS, "rows": rows}, indent=1) + "\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
