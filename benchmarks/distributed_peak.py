"""Per-device peak under a tf.distribute MirroredStrategy over logical CPU devices: preflight's figure
against a real `fit` under the same strategy (issue 25).

For each case a model.py is written that splits the CPU into N logical devices and builds the model in a
MirroredStrategy scope (as multi-device scripts do). preflight checks it (`python -m preflight`, its
`per_device` section: the allocator's total over the replicas / N + its margin); the truth is `model.fit`
on the same file in 3 fresh processes, the allocator's peak of every step after the first (reset before
each step), divided by N (the logical devices share one allocator), max over the processes.

Under JAX (Keras's DataParallel and ModelParallel over host devices, `tests/models/*_parallel_jax.py`) the
host devices keep no allocator statistics (`memory_stats()` is None on CPU), so the truth is XLA's memory
analysis of the train step as `fit` itself compiles it (jit of train_step, state donated, fit's own
`out_shardings`), lowered with the state and the first batch `fit` hands its train function (fit's own
sharding of the weights, slots and batch), in 3 fresh processes, max. preflight's figure comes from its own
step (its layout of the batch, no out_shardings). Both sides read XLA's analysis: the rows check that
preflight lays out the step as fit does (batch split, sharded state, outputs), not XLA's analysis against
an allocator, which JAX's CPU backend does not have.

    python -m benchmarks.distributed_peak            # writes benchmarks/results/distributed_peak.json
    python -m benchmarks.distributed_peak --jax      # only the JAX rows again, the others kept
"""
from __future__ import annotations

import json
import math
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
MIRRORED_FIT = """
import runpy
import sys

namespace = runpy.run_path(sys.argv[1])  # the file sets up its logical devices and strategy first
import keras
import tensorflow as tf

peaks = []


class Peak(keras.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        if batch:
            tf.config.experimental.reset_memory_stats("CPU:0")

    def on_train_batch_end(self, batch, logs=None):
        if batch:
            peaks.append(tf.config.experimental.get_memory_info("CPU:0")["peak"])


namespace["model"].fit(namespace["x"], namespace["y"], batch_size=int(sys.argv[2]), epochs=1, verbose=0,
                       callbacks=[Peak()], shuffle=False)
print("PEAK", max(peaks))
"""


def _environment() -> dict[str, str]:
    return {**os.environ, "TF_CPU_ALLOCATOR_USE_BFC": "true", "PYTHONPATH": str(REPO_ROOT),
            "PREFLIGHT_CALIBRATION": "none", "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}


def measure(name: str, devices: int, batch: int, workdir: Path) -> dict:
    source = workdir / f"{name}_{devices}.py"
    body = SETUP.format(devices=devices) + MODELS[name].format(samples=batch * FIT_STEPS)
    source.write_text(textwrap.dedent(body) + f"batch_size = {batch}\n")
    report = workdir / f"{name}_{devices}.json"
    subprocess.run([sys.executable, "-m", "preflight", str(source), "--batch-size", str(batch), "--budget", "8GiB",
                    "--no-whatif", "--json", str(report), "--html", "none", "--quiet"],
                   env=_environment(), check=False, timeout=900)
    document = json.loads(report.read_text())
    section = document["per_device"]
    real_totals = [mirrored_fit_total(source, batch, workdir) for _ in range(RUNS)]
    real = -(-max(real_totals) // devices)
    return {"model": name, "devices": devices, "global_batch": batch,
            "per_replica_batch": section["per_replica_batch_size"],
            "predicted_per_device_bytes": section["peak_bytes"], "margin_fraction": section["margin_fraction"],
            "predicted_total_bytes": section["total_peak_bytes"],
            "real_per_device_bytes": real, "real_total_bytes_runs": real_totals,
            "above_real_at_most_fraction": section["above_real_at_most_fraction"],
            "ratio": round(section["peak_bytes"] / real, 3), "covered": section["peak_bytes"] >= real,
            "within_margin": within_margin(section["peak_bytes"], real, section["above_real_at_most_fraction"])}


def mirrored_fit_total(source: Path, batch: int, workdir: Path) -> int:
    """The truth for one process: `model.fit` on the file's model and data, the allocator's peak of every step
    after the first (all replicas: the logical devices share one allocator)."""
    driver = workdir / "mirrored_fit.py"
    driver.write_text(MIRRORED_FIT)
    done = subprocess.run([sys.executable, str(driver), str(source), str(batch)], env=_environment(),
                          capture_output=True, text=True, timeout=600, check=True)
    return int(done.stdout.split("PEAK")[-1].split()[0])


def within_margin(predicted: int, real: int, margin: float) -> bool:
    """The figure covers the truth and is at most as far above it as the section states (the figure is rounded
    up to a whole byte)."""
    return real <= predicted <= math.ceil(real * (1 + margin))


JAX_FIT = """
import runpy
import sys

import jax
import keras

namespace = runpy.run_path(sys.argv[1])
model, x, y = namespace["model"], namespace["x"], namespace["y"]
peaks = []


class FitsOwnStep(keras.callbacks.Callback):
    \"\"\"fit's train function wrapped: the step fit compiles, analysed with the state and batch fit hands it.\"\"\"

    def on_train_begin(self, logs=None):
        original = self.model.train_function
        step = jax.jit(self.model.train_step, donate_argnums=0,
                       out_shardings=(None, self.model._get_state_sharding_spec()))

        def measured(state, iterator):
            first = next(iterator)
            if not peaks:
                a = step.lower(state, first).compile().memory_analysis()
                peaks.append(a.argument_size_in_bytes + a.temp_size_in_bytes + a.output_size_in_bytes
                             - a.alias_size_in_bytes)
            return original(state, iter([first]))

        self.model.train_function = measured


model.fit(x, y, batch_size=namespace["batch_size"], epochs=1, verbose=0, callbacks=[FitsOwnStep()], shuffle=False)
print("PEAK", peaks[0])
"""


def measure_jax(model_file: str, batch: int, workdir: Path) -> dict:
    """A Keras distribution under JAX on host devices: preflight's per-device figure against fit's own step."""
    source = REPO_ROOT / "tests" / "models" / model_file
    report = workdir / f"{source.stem}.json"
    environment = {**_environment(), "KERAS_BACKEND": "jax"}
    subprocess.run([sys.executable, "-m", "preflight", str(source), "--backend", "jax", "--batch-size", str(batch),
                    "--budget", "8GiB", "--no-whatif", "--json", str(report), "--html", "none", "--quiet"],
                   env=environment, check=False, timeout=900)
    section = json.loads(report.read_text())["per_device"]
    driver = workdir / "jax_fit.py"
    driver.write_text(JAX_FIT)
    real_runs = []
    for _ in range(RUNS):
        done = subprocess.run([sys.executable, str(driver), str(source)], env=environment, capture_output=True,
                              text=True, timeout=600, check=True)
        real_runs.append(int(done.stdout.split("PEAK")[-1].split()[0]))
    real = max(real_runs)
    return {"model": source.stem, "strategy": section["strategy"], "backend": "jax", "devices": section["devices"],
            "global_batch": batch, "per_replica_batch": section["per_replica_batch_size"],
            "predicted_per_device_bytes": section["peak_bytes"], "margin_fraction": section["margin_fraction"],
            "predicted_total_bytes": None, "real_per_device_bytes": real, "real_per_device_bytes_runs": real_runs,
            "above_real_at_most_fraction": section["above_real_at_most_fraction"],
            "ratio": round(section["peak_bytes"] / real, 3),
            "covered": section["peak_bytes"] >= real,
            "within_margin": within_margin(section["peak_bytes"], real, section["above_real_at_most_fraction"])}


def table(rows: list[dict]) -> str:
    lines = ["| model | strategy | devices | global batch | predicted per device | real fit per device (max of 3) | "
             "predicted / real | applied margin | stated: at most above real | within it |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        devices = f"{r['devices']} JAX host devices" if r.get("backend") == "jax" else f"{r['devices']} logical CPUs"
        lines.append(f"| {r['model']} | {r.get('strategy', 'MirroredStrategy')} | {devices} | {r['global_batch']} | "
                     f"{r['predicted_per_device_bytes'] / 2**20:.1f} MiB | {r['real_per_device_bytes'] / 2**20:.1f} MiB"
                     f" | {r['ratio']:.2f} | {r['margin_fraction']:.0%} | {r['above_real_at_most_fraction']:.0%} | "
                     f"{'yes' if r['within_margin'] else 'no'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    jax_only = "--jax" in (sys.argv[1:] if argv is None else argv)
    rows = []
    if jax_only:  # the MirroredStrategy rows kept as they were measured
        rows = [r for r in json.loads(RESULTS_PATH.read_text())["rows"] if r.get("backend") != "jax"]
    with tempfile.TemporaryDirectory() as tmp:
        for name, devices, batch in () if jax_only else (("mlp", 2, 128), ("cnn", 2, 64)):
            rows.append(measure(name, devices, batch, Path(tmp)))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
        for model_file in ("data_parallel_jax.py", "model_parallel_jax.py"):
            rows.append(measure_jax(model_file, 64, Path(tmp)))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    RESULTS_PATH.write_text(json.dumps({"runs": RUNS, "rows": rows}, indent=1) + "\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
