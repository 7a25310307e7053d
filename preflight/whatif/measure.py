"""A small stand-alone what-if measurement: one variant, one batch size, in a fresh process.

`measure_variant(model_file, spec, batch_size)` starts `python -m preflight.whatif.measure` with
TF_CPU_ALLOCATOR_USE_BFC=true (it must be set before TensorFlow starts), which loads `model` (or calls
`build_model()`) from the file, applies the spec (None = baseline), runs a warm-up step, resets the
allocator stats and measures `steps` steps on synthetic data: the max peak and the median step time.
Used by the tests and by benchmarks/whatif_savings.py; the engine's own dry-run child (preflight.child)
does the same through `apply_variant` with the user's real data.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

_RESULT_PREFIX = "PREFLIGHT_WHATIF_RESULT "


def measure_variant(model_file: str, spec: dict | None, batch_size: int, steps: int = 3,
                    single_thread: bool = True, timeout_s: float = 600) -> dict[str, Any]:
    """{"peak_bytes", "step_seconds", "params", "description", "output_dtypes"} or {"status": "error", ...}."""
    env = dict(os.environ, TF_CPU_ALLOCATOR_USE_BFC="true", TF_CPP_MIN_LOG_LEVEL="2")
    command = [sys.executable, "-m", "preflight.whatif.measure", model_file, json.dumps(spec),
               str(batch_size), str(steps), "1" if single_thread else "0"]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s)
    for line in completed.stdout.splitlines():
        if line.startswith(_RESULT_PREFIX):
            return json.loads(line[len(_RESULT_PREFIX):])
    return {"status": "error", "message": (completed.stderr or completed.stdout)[-2000:],
            "returncode": completed.returncode}


def list_variants_in_child(model_file: str, target_kind: str = "CPU", timeout_s: float = 600) -> list[dict]:
    """list_variants for the model in `model_file`, computed in a fresh process.

    Specs name layers, and Keras numbers auto-named layers per process ("dense_3"), so the listing must
    come from a process that built the model the same way as the one that will apply the spec.
    """
    command = [sys.executable, "-m", "preflight.whatif.measure", "--list", model_file, target_kind]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s)
    for line in completed.stdout.splitlines():
        if line.startswith(_RESULT_PREFIX):
            return json.loads(line[len(_RESULT_PREFIX):])
    raise RuntimeError(f"listing the what-ifs of {model_file} failed:\n{completed.stderr[-2000:]}")


def _synthetic_batch(model, batch_size: int):
    """Random inputs of the model's input shape; labels shaped for its loss (sparse ids or dense targets)."""
    import numpy as np

    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((batch_size, *t.shape[1:])).astype(str(t.dtype)) for t in model.inputs]
    output = model.outputs[0]
    loss = str(model.get_compile_config().get("loss", ""))
    if "sparse" in loss:
        labels = rng.integers(0, int(output.shape[-1]), size=(batch_size,)).astype("int32")
    else:
        labels = rng.random((batch_size, *output.shape[1:])).astype("float32")
    return (inputs[0] if len(inputs) == 1 else inputs), labels


def _load_model(model_file: str):
    import runpy

    namespace = runpy.run_path(model_file, run_name="preflight_model")
    if "model" in namespace:
        return namespace["model"]
    if "build_model" in namespace:
        return namespace["build_model"]()
    raise SystemExit(f"{model_file} defines neither `model` nor `build_model()`")


def _child(model_file: str, spec_json: str, batch_size: int, steps: int, single_thread: bool) -> dict:
    import gc
    import statistics
    import time

    import tensorflow as tf

    if single_thread:
        # Deterministic peaks (notes §1): scheduling order changes which tensors coexist.
        tf.config.threading.set_inter_op_parallelism_threads(1)
        tf.config.threading.set_intra_op_parallelism_threads(1)
    model = _load_model(model_file)
    spec = json.loads(spec_json)
    description: dict[str, Any] = {"kind": "baseline", "title": "baseline", "params": int(model.count_params())}
    if spec:
        from preflight.whatif.variants import VariantNotApplicable, apply_variant

        try:
            model, description = apply_variant(model, spec)
        except VariantNotApplicable as exc:
            return {"status": "not_applicable", "message": exc.message, "kind": spec.get("kind")}
    # The original model (now unreferenced, but in reference cycles) and the throw-away optimizers built
    # to count state bytes still hold allocator memory until collected: it would count in the peak.
    gc.collect()
    x, y = _synthetic_batch(model, batch_size)
    model.train_on_batch(x, y)  # warm-up: tracing and optimizer slots
    gc.collect()  # tracing leaves tensors in reference cycles; uncollected they would count as resident
    resident_bytes = int(tf.config.experimental.get_memory_info("CPU:0")["current"])
    peaks, times = [], []
    for _ in range(steps):
        tf.config.experimental.reset_memory_stats("CPU:0")
        started = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - started)
        peaks.append(int(tf.config.experimental.get_memory_info("CPU:0")["peak"]))
    return {"status": "ok", "peak_bytes": max(peaks), "peak_bytes_runs": peaks,
            "resident_bytes": resident_bytes,
            "step_seconds": statistics.median(times), "params": int(model.count_params()),
            "description": description,
            "output_dtypes": [str(layer.compute_dtype) for layer in model.layers]}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[0] == "--list":
        from preflight.whatif.variants import list_variants

        print(_RESULT_PREFIX + json.dumps(list_variants(_load_model(argv[1]), argv[2])), flush=True)
        return 0
    model_file, spec_json, batch_size, steps, single_thread = argv
    result = _child(model_file, spec_json, int(batch_size), int(steps), single_thread == "1")
    print(_RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
