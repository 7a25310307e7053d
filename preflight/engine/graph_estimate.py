"""Static peak estimate of one training step from its concrete graph, without running the step (notes §3).

`estimate_step_peak` traces `model.train_step` for a fixed batch size, so every op's output shape is
known, then simulates liveness: ops are walked in creation order (topological), each output is
allocated when produced and freed after its last consumer; view-like ops (ReadVariableOp, Identity,
Reshape, ...) alias their input instead of allocating. The estimate is the persistent bytes (weights,
optimizer slots) plus the transient peak. Measured on a CNN and MobileNetV2 it came within 0.87-1.00
of the BFC peak (notes §3); it does not see kernel scratch space, the executor's parallel reordering,
or memory inside `While` bodies (RNN loops), so `predict.py` uses it for the *shape* of peak vs batch
and calibrates its level on measured probes.

`xla_buffer_total_bytes` reads XLA's own buffer assignment for the jit-compiled step (what a GPU/TPU
target runs by default) from an `XLA_FLAGS=--xla_dump_to` dump; compiled on the CPU, it is
unvalidated against a real GPU.

Both run inside a process where TensorFlow is already initialized (the dry-run child); TF is imported
lazily here.
"""
from __future__ import annotations

import glob
import os
import re
from typing import Any

from preflight.common.units import tensor_bytes

# Ops whose output is a view of (or the same buffer as) their first input: no new allocation.
_ALIAS_OPS = frozenset({
    "ReadVariableOp", "Identity", "IdentityN", "Reshape", "Squeeze", "ExpandDims", "StopGradient",
    "Snapshot", "PreventGradient", "EnsureShape", "CheckNumerics", "BroadcastGradientArgs",
})
# Ops that produce no tensor memory worth counting in the step (constants live in the graph; handles).
_FREE_OPS = frozenset({"Const", "VarHandleOp", "NoOp", "Shape", "ShapeN", "Size", "Rank"})


def _tensor_bytes(tensor) -> int | None:
    """Bytes of a tensor with a fully known shape; None when unknown or not a plain dtype."""
    shape = tensor.shape
    if tensor.dtype.name in ("resource", "variant", "string"):
        return None
    if shape.rank is None or any(dim is None for dim in shape.as_list()):
        return None
    return tensor_bytes(shape.as_list(), tensor.dtype)


def _with_batch(spec, batch_size: int):
    """A TensorSpec (or nest of them) with the leading dimension set to `batch_size`."""
    import tensorflow as tf

    def fix(one):
        if one is None:   # no targets (the loss needs none) or no sample weights
            return None
        if not isinstance(one, tf.TensorSpec):
            one = tf.TensorSpec.from_tensor(tf.convert_to_tensor(one))
        dims = one.shape.as_list()
        if dims:
            dims[0] = batch_size
        return tf.TensorSpec(dims, one.dtype)

    return tf.nest.map_structure(fix, spec)


def persistent_bytes(model) -> int:
    """Weights plus optimizer variables (built if needed): what stays allocated between steps."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and not optimizer.built:
        optimizer.build(model.trainable_variables)
    variables = list(model.variables) + (list(optimizer.variables) if optimizer is not None else [])
    seen: set[int] = set()
    total = 0
    for variable in variables:
        if id(variable) in seen:
            continue
        seen.add(id(variable))
        total += tensor_bytes(variable.shape, variable.dtype)
    return total


def estimate_step_peak(model, batch_size: int, x_spec, y_spec) -> dict[str, Any]:
    """Liveness estimate of one `train_step` at `batch_size`.

    `x_spec` / `y_spec`: a `tf.TensorSpec` (or nest of them, or example arrays) for the inputs and
    targets; the leading (batch) dimension is replaced by `batch_size`. Returns
    {"persistent_bytes", "transient_peak_bytes", "peak_bytes", "peak_op", "ops", "unknown_shape_outputs",
     "trace_seconds"}.
    """
    import time

    import tensorflow as tf

    persistent = persistent_bytes(model)
    started = time.perf_counter()
    data_spec = (_with_batch(x_spec, batch_size), _with_batch(y_spec, batch_size))
    concrete = tf.function(model.train_step).get_concrete_function(data_spec)
    trace_seconds = time.perf_counter() - started
    operations = concrete.graph.get_operations()

    # Last consumer index of every tensor, and aliasing to the buffer that really holds the bytes.
    position = {op.name: index for index, op in enumerate(operations)}
    last_use: dict[str, int] = {}
    for index, op in enumerate(operations):
        for tensor in op.inputs:
            last_use[tensor.name] = max(last_use.get(tensor.name, -1), index)
    root_of: dict[str, str] = {}
    buffer_bytes: dict[str, int] = {}
    buffer_last_use: dict[str, int] = {}
    unknown = 0
    for op in operations:
        for tensor in op.outputs:
            if op.type in _ALIAS_OPS and op.inputs:
                root = root_of.get(op.inputs[0].name, op.inputs[0].name)
                root_of[tensor.name] = root
                if root in buffer_bytes:
                    buffer_last_use[root] = max(buffer_last_use[root], last_use.get(tensor.name, -1))
                continue
            root_of[tensor.name] = tensor.name
            if op.type in _FREE_OPS:
                continue
            size = _tensor_bytes(tensor)
            if size is None:
                if tensor.dtype.name not in ("resource",):
                    unknown += 1
                continue
            buffer_bytes[tensor.name] = size
            buffer_last_use[tensor.name] = last_use.get(tensor.name, position[op.name])

    # Walk: allocate outputs at their producer, free buffers after their last consumer.
    frees_at: dict[int, list[str]] = {}
    for name, last in buffer_last_use.items():
        frees_at.setdefault(last, []).append(name)
    live = 0
    transient_peak = 0
    peak_op = ""
    for index, op in enumerate(operations):
        for tensor in op.outputs:
            if tensor.name in buffer_bytes:
                live += buffer_bytes[tensor.name]
        if live > transient_peak:
            transient_peak, peak_op = live, op.name
        for name in frees_at.get(index, ()):
            live -= buffer_bytes[name]
    return {
        "persistent_bytes": int(persistent),
        "transient_peak_bytes": int(transient_peak),
        "peak_bytes": int(persistent + transient_peak),
        "peak_op": peak_op,
        "ops": len(operations),
        "unknown_shape_outputs": unknown,
        "trace_seconds": round(trace_seconds, 3),
    }


_TOTAL_LINE = re.compile(r"Total bytes used:\s*([0-9.]+)\s*([KMGT]?i?B|B)?", re.IGNORECASE)
_UNIT = {"b": 1, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
         "kb": 1024, "mb": 1024**2, "gb": 1024**3}


def parse_buffer_assignment_total(text: str) -> int | None:
    """'Total bytes used: 444.44MiB' (from an XLA *buffer-assignment.txt) -> bytes."""
    match = _TOTAL_LINE.search(text)
    if not match:
        return None
    unit = (match.group(2) or "B").lower()
    return int(float(match.group(1)) * _UNIT.get(unit, 1))


def xla_buffer_total_bytes(model, batch_size: int, x_spec, y_spec, dump_dir: str) -> dict[str, Any]:
    """XLA's buffer-assignment total for the jit-compiled train step, compiled (not run) on this host.

    XLA reads `XLA_FLAGS` once per process, so the caller must set
    `XLA_FLAGS=--xla_dump_to=<dump_dir>` before TensorFlow initializes. The total covers XLA's
    parameters, outputs and temporaries of the step; weights and slots are parameters. Unvalidated
    on a real GPU: the GPU backend fuses and schedules differently from the CPU backend.
    """
    import time

    import tensorflow as tf

    if dump_dir not in os.environ.get("XLA_FLAGS", ""):
        raise RuntimeError("set XLA_FLAGS=--xla_dump_to=<dump_dir> before TensorFlow starts")
    optimizer = model.optimizer
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    before = set(glob.glob(os.path.join(dump_dir, "*buffer-assignment.txt")))
    x_data = tf.nest.map_structure(lambda s: tf.zeros(s.shape, s.dtype), _with_batch(x_spec, batch_size))
    y_data = tf.nest.map_structure(lambda s: tf.zeros(s.shape, s.dtype), _with_batch(y_spec, batch_size))
    started = time.perf_counter()
    compiled = tf.function(model.train_step, jit_compile=True)
    compiled.experimental_get_compiler_ir((x_data, y_data))(stage="optimized_hlo")
    compile_seconds = time.perf_counter() - started
    new_files = sorted(set(glob.glob(os.path.join(dump_dir, "*buffer-assignment.txt"))) - before,
                       key=os.path.getsize, reverse=True)
    totals = [parse_buffer_assignment_total(open(path, encoding="utf-8").read()) for path in new_files]
    totals = [total for total in totals if total is not None]
    return {"xla_total_bytes": max(totals) if totals else None, "files": new_files,
            "compile_seconds": round(compile_seconds, 3),
            "note": "XLA CPU buffer assignment, compiled not run; unvalidated against a real GPU"}
