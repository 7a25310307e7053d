"""What the dry-run child records about how the real run will be launched, beside the memory probes.

Three records, each one function, each sent to the parent as plain data (the "readiness" event):
- distribution: the tf.distribute strategy the model's variables were created under, the replicas, and
  the accelerators this machine offers (a TPU address in the environment, the GPUs TF sees);
- xla: whether the planned batch's train step compiles under XLA (`jit_compile=True`), as it must on a
  TPU and as Keras does by default on a GPU; the op and layer XLA cannot compile;
- rebuilds: host RSS over N calls of build_model(), as written and with clear_session() + gc.collect().
Runs inside the child (it imports TensorFlow); preflight.analysis.checks turns the records into findings.
"""
from __future__ import annotations

import gc
import os
import re
import threading
import time
from typing import Any, Callable

from preflight.engine.step_errors import error_line

XLA_TIME_CAP_SECONDS = 30.0
TPU_ADDRESS_VARIABLES = ("COLAB_TPU_ADDR", "TPU_NAME")
# Messages by which TF says a graph cannot be compiled by XLA (as opposed to a broken step).
_XLA_REFUSALS = ("unsupported operations", "must be a compile-time constant", "XLA compilation requires",
                 "No registered", "is not compilable", "Unsupported")
_UNSUPPORTED_OP = re.compile(r"on XLA_\w+: (\w+) \((.*?)\)\{\{node")
_NODE = re.compile(r"\{\{node ([^}]+)\}\}")


def tpu_address() -> str | None:
    """The TPU address Colab (COLAB_TPU_ADDR) or a Cloud TPU VM (TPU_NAME) announces, if any. Read from the
    environment only: TPUClusterResolver() on a machine without a TPU asks the cloud metadata server."""
    for name in TPU_ADDRESS_VARIABLES:
        if os.environ.get(name):
            return f"{name}={os.environ[name]}"
    return None


def distribution_record(tf, model, handed_off_strategy: dict | None = None) -> dict[str, Any]:
    """The strategy the model's variables live under and the accelerators present. A notebook model reaches
    the child as a file, without its strategy: the parent recorded it (`handed_off_strategy`)."""
    if handed_off_strategy is not None:
        strategy_name, replicas = handed_off_strategy["strategy"], handed_off_strategy["replicas"]
    else:
        strategy_name, replicas = strategy_of(model)
    return {"strategy": strategy_name, "replicas": replicas, "tpu_address": tpu_address(),
            "tpu_devices": len(tf.config.list_logical_devices("TPU")),
            "gpus": len(tf.config.list_physical_devices("GPU"))}


def strategy_of(model) -> tuple[str | None, int]:
    """(strategy class name, replicas) the model was created under; (None, 1) outside any strategy scope."""
    import tensorflow as tf

    # Keras wraps each tf.Variable; under a strategy scope that variable is a distributed (mirrored) one.
    distributed = [v for v in model.variables if isinstance(getattr(v, "value", v), tf.distribute.DistributedValues)]
    # OneDeviceStrategy keeps plain variables; Keras remembers the strategy the model was created under.
    strategy = (getattr(distributed[0].value, "distribute_strategy", None) if distributed
                else getattr(model, "_distribute_strategy", None))
    if strategy is None:
        return None, 1
    return type(strategy).__name__, int(strategy.num_replicas_in_sync)


def xla_record(tf, model, batch, time_cap_seconds: float = XLA_TIME_CAP_SECONDS) -> dict[str, Any]:
    """Compile (not run) the train step on `batch` with XLA. {"status": "ok" | "fails" | "timeout" |
    "unknown", "seconds", "op", "layer", "message"}. Compiling runs in a thread, abandoned after the cap."""
    result: dict[str, Any] = {}

    def compile_step() -> None:
        try:
            inputs = tf.nest.map_structure(tf.convert_to_tensor, batch)
            step = tf.function(model.train_step, jit_compile=True)
            step.experimental_get_compiler_ir(inputs)(stage="hlo")
            result["error"] = None
        except Exception as exc:  # noqa: BLE001 - any failure is the finding's material
            result["error"] = exc

    started = time.monotonic()
    worker = threading.Thread(target=compile_step, daemon=True)
    worker.start()
    worker.join(time_cap_seconds)
    seconds = round(time.monotonic() - started, 2)
    if "error" not in result:
        return {"status": "timeout", "seconds": seconds, "op": None, "layer": None,
                "message": f"no answer within {time_cap_seconds:.0f} s"}
    if result["error"] is None:
        return {"status": "ok", "seconds": seconds, "op": None, "layer": None, "message": ""}
    error = str(result["error"])
    if not any(marker in error for marker in _XLA_REFUSALS):
        return {"status": "unknown", "seconds": seconds, "op": None, "layer": None,
                "message": f"{type(result['error']).__name__}: {error_line(result['error'])}"}
    op = _UNSUPPORTED_OP.search(error)
    node = _NODE.search(error)
    return {"status": "fails", "seconds": seconds, "op": op.group(1) if op else None,
            "layer": _layer_of_node(model, node.group(1)) if node else None,
            "message": op.group(2) if op else error.replace("Failed getting HLO text: ", "").splitlines()[0][:400]}


def _layer_of_node(model, node_name: str) -> str | None:
    """The model's layer a graph node belongs to: 'functional_1_1/my_pyfunc_1/EagerPyFunc' -> 'my_pyfunc'
    (Keras appends _N to name scopes)."""
    names = {layer.name for layer in _all_layers(model)}
    for part in node_name.split("/")[1:]:
        for candidate in (part, re.sub(r"_\d+$", "", part)):
            if candidate in names:
                return candidate
    return None


def _all_layers(model) -> list:
    layers = []
    for layer in getattr(model, "layers", []):
        layers.append(layer)
        layers.extend(_all_layers(layer))
    return layers


def rebuild_record(build: Callable[[], Any], count: int) -> dict[str, Any]:
    """Host RSS after each of `count` calls of `build` as a training loop makes them (the previous model
    dropped, nothing cleared), then after `count` more, each after clear_session() + gc.collect()."""
    import keras
    import psutil

    process = psutil.Process()
    as_written, cleared = [], []
    model = None
    for _ in range(count):
        model = build()
        as_written.append(int(process.memory_info().rss))
    del model
    for _ in range(count):
        keras.backend.clear_session()
        gc.collect()
        model = build()
        cleared.append(int(process.memory_info().rss))
    return {"count": count, "rss_as_written": as_written, "rss_cleared": cleared}


def rebuild_factory(source: dict) -> tuple[Callable[[], Any] | None, str]:
    """(the file's build_model()/get_model(), "") or (None, why rebuilds cannot be measured)."""
    if source["kind"] != "file" or source.get("hp_values") is not None:
        return None, "rebuilds need a model.py with build_model() or get_model()"
    from preflight.engine.loader import model_factory, run_model_file

    name = os.path.basename(source["path"])
    factory = model_factory(run_model_file(source["path"]), name)
    if factory is None:
        return None, f"{name} assigns `model` at module level; rebuilds need build_model() or get_model()"
    return factory[1], ""


def readiness_record(tf, model, pool, job: dict) -> dict[str, Any]:
    """The three records for the job; each failure of the measuring itself is recorded, never raised."""
    record: dict[str, Any] = {"distribution": distribution_record(tf, model, job["source"].get("strategy"))}
    record["xla"] = xla_record(tf, model, pool.batch(job.get("planned_batch_size") or 1))
    if job.get("rebuilds"):
        build, why = rebuild_factory(job["source"])
        try:
            record["rebuilds"] = rebuild_record(build, job["rebuilds"]) if build else {"skipped": why}
        except Exception as exc:  # noqa: BLE001 - the user's build may raise on a rebuild
            record["rebuilds"] = {"skipped": f"a rebuild failed: {type(exc).__name__}: {error_line(exc)}"}
    return record
