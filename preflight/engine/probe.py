"""Measuring training steps inside the dry-run child: the one place where the allocator's peak is read.

`probe_batch_size` runs a warm-up step (tracing, optimizer slots), then measured steps, each read by the
backend's memory reader (preflight.engine.readers), and returns a ProbeResult; `describe_model` says what
was measured; `graph_slope` adds the liveness estimate's growth per sample; `EventWriter` sends
JSON-line events to the parent (preflight.engine.runner). Engine probes, tuner configurations and
what-if variants all step here, started by preflight.child.
"""
from __future__ import annotations

import gc
import json
import os
import statistics
import sys
import time
from typing import Any

from preflight.engine.step_errors import error_line, fix_for, loss_name
from preflight.engine.training_signal import loss_value, snapshot_weights, weights_changed
from preflight.errors import DataError, ModelError, is_out_of_memory
from preflight.common.measurements import LayerInfo, ModelInfo, ProbeResult

MIN_MEASURED_STEPS = 2
SLOW_PROBE_SECONDS = 20.0


class EventWriter:
    def __init__(self, fd: int | None):
        self._stream = os.fdopen(fd, "w", buffering=1) if fd is not None else sys.stdout

    def emit(self, event: str, **payload: Any) -> None:
        self._stream.write(json.dumps({"event": event, **payload}) + "\n")
        self._stream.flush()


def graph_slope(model, pool, planned_batch_size: int, events: EventWriter) -> float:
    """Bytes per sample by which the liveness estimate of the step grows (preflight.engine.graph_estimate).

    Small probes of a model dominated by its optimizer show a flat peak; this slope is what keeps the
    prediction from promising that huge batches fit. Reported as an event; 0 when the estimate fails.
    """
    from preflight.engine.graph_estimate import estimate_step_peak

    x, y, _ = pool.unpacked(1)
    estimates = {}
    # Far past the probes, where activations dominate: the slope there is the per-sample growth that
    # optimizer temporaries hide at small batches. Tracing only computes shapes, so size costs nothing.
    large = max(16 * planned_batch_size, 4096)
    for batch_size in (large, 2 * large):
        try:
            estimates[batch_size] = int(estimate_step_peak(model, batch_size, x, y)["peak_bytes"])
        except Exception as exc:  # noqa: BLE001 - an estimate is optional; the probes stand alone
            events.emit("graph_estimate", estimates={}, message=f"{type(exc).__name__}: {error_line(exc)}")
            return 0.0
    events.emit("graph_estimate", estimates={str(b): v for b, v in estimates.items()}, message="")
    low, high = sorted(estimates)
    return max(0.0, (estimates[high] - estimates[low]) / (high - low))


def probe_batch_size(reader, model, pool, batch_size: int, measured_steps: int, events: EventWriter,
                     started: float, first: bool, source_kind: str, limit_bytes: int | None = None) -> ProbeResult:
    """A warm-up step (tracing, slot creation), then measured steps, each read by the backend's reader
    (preflight.engine.readers): the allocator's peak reset before each, or the compiled step's buffers.

    A failure other than out-of-memory on the first batch size means the step itself is broken, which is
    the user's error to fix; on a later batch size it is that probe's result.
    """
    batch = pool.batch(batch_size)
    reader.new_trace(model)
    runs: list[int] = []
    times: list[float] = []
    losses: list = []
    snapshot = snapshot_weights(model) if first else None  # once per run: did the steps train at all
    resident = None
    warmup_seconds = None
    log_offset = child_log_size()
    try:
        static = reader.static_peak(model, batch)
        if static is not None and limit_bytes and static > limit_bytes:
            # The compiled step's buffers alone exceed the limit: it cannot run within it.
            return ProbeResult(batch_size, "oom", peak_bytes=static, peak_bytes_runs=[static],
                               message=f"out of memory in the probe: the compiled step needs {static} bytes, "
                                       f"over the limit of {limit_bytes} ({reader.method})")
        for step in range(max(measured_steps, 1) + 1):
            events.emit("progress", stage="probe", batch_size=batch_size, step=step + 1,
                        steps=measured_steps + 1, elapsed=time.monotonic() - started)
            if step > 0:
                gc.collect()  # objects dropped by earlier work still hold allocator memory until collected
                resident = reader.start_window()
            else:
                reader.start_window()  # so that a failed warm-up's peak is its own (out_of_memory_evidence)
            t0 = time.perf_counter()
            step_result = reader.train_step(model, batch)
            elapsed = time.perf_counter() - t0
            if step == 0:
                warmup_seconds = elapsed
            else:
                times.append(elapsed)
                losses.append(loss_value(step_result))
                runs.append(reader.window_peak())
                if len(runs) >= MIN_MEASURED_STEPS and warmup_seconds + sum(times) > SLOW_PROBE_SECONDS:
                    break  # slow steps: two runs still show the spread; more would cost minutes
    except Exception as exc:  # noqa: BLE001 - the user's train_step may raise anything
        memory_evidence = out_of_memory_evidence(exc, reader, limit_bytes, log_offset)
        if memory_evidence:
            return ProbeResult(batch_size, "oom", peak_bytes_runs=runs,
                               message=f"out of memory in the probe ({memory_evidence}): {error_line(exc)}")
        text_dtype = _text_dtype(batch)
        if first and text_dtype:
            raise DataError(f"the inputs hold text (dtype {text_dtype}) and the training step failed on them: "
                            f"{type(exc).__name__}: {error_line(exc)}",
                            hint="turn text into numbers: a TextVectorization or StringLookup layer in the model, "
                                 "or numeric arrays") from None
        if first:
            from preflight.engine.backend_errors import foreign_backend_error

            raise (foreign_backend_error(exc) or step_failure(exc, model, pool, batch_size, source_kind)) from None
        return ProbeResult(batch_size, "error", peak_bytes_runs=runs, message=error_line(exc))
    return ProbeResult(batch_size, "ok", peak_bytes=max(runs), peak_bytes_runs=runs, resident_bytes=resident,
                       step_seconds=statistics.median(times), warmup_seconds=warmup_seconds,
                       losses=losses, weights_changed=weights_changed(model, snapshot))


def fit_probe(reader, model, pool, batch_size: int, steps: int, events: EventWriter, started: float,
              limit_bytes: int | None = None) -> ProbeResult:
    """`steps` training steps run by `model.fit` itself, as the real run runs them: its own train function
    and data iterator, the batch fed through a `tf.data` pipeline (`from_tensors(batch).repeat()`), with the
    allocator's peak over the whole fit. The confirmation of a largest batch (preflight.whatif.recommend):
    the probe hands one batch to the train function, and a two-tower recommender's largest batch by the
    probe ran out of memory under fit (issue 21). TensorFlow backend only; other readers step as the probe does.
    """
    import tensorflow as tf

    events.emit("progress", stage="model.fit", batch_size=batch_size, step=1, steps=steps,
                elapsed=time.monotonic() - started)
    dataset = tf.data.Dataset.from_tensors(pool.batch(batch_size)).repeat()
    log_offset = child_log_size()
    gc.collect()
    reader.start_window()
    t0 = time.perf_counter()
    try:
        history = model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
    except Exception as exc:  # noqa: BLE001 - the user's train_step may raise anything
        evidence = out_of_memory_evidence(exc, reader, limit_bytes, log_offset)
        return ProbeResult(batch_size, "oom" if evidence else "error",
                           message=(f"out of memory under model.fit ({evidence}): " if evidence else "")
                           + error_line(exc))
    elapsed = time.perf_counter() - t0
    peak = reader.window_peak()
    losses = [loss_value({"loss": value}) for value in history.history.get("loss", [])]
    return ProbeResult(batch_size, "ok", peak_bytes=peak, peak_bytes_runs=[peak], step_seconds=elapsed / steps,
                       losses=losses, message=f"{steps} steps of model.fit")


# A failed step whose allocator peak reached this share of the limit ran out of memory, whatever it raised:
# TF may report the failure of a temporary allocation as only "[[{{node .../tmp_var}}]]" (issue 21).
OOM_PEAK_FILL = 0.9
# What TF's allocators write when an allocation fails (BFC's "Allocator (...) ran out of memory trying to
# allocate", the executor's "OOM when allocating tensor"), on the child's stderr (its log).
ALLOCATOR_OOM_RECORDS = ("ran out of memory trying to allocate", "OOM when allocating")


def out_of_memory_evidence(exc: BaseException, reader, limit_bytes: int | None, log_offset: int | None) -> str:
    """Why a failed step counts as out of memory ("" when it does not): decided from the allocator and the
    process, so that no form of the error (its class, its text) turns a memory verdict into a model error.

    Evidence, first that holds: the exception's type (ResourceExhaustedError, MemoryError, ...), the
    allocator's peak in the failed step at OOM_PEAK_FILL of the limit, the allocator's own record of a
    failed allocation in this process's log since the step began.
    """
    if is_out_of_memory(exc):
        return "the backend's out-of-memory error"
    if limit_bytes:
        try:
            peak = reader.window_peak()
        except Exception:  # noqa: BLE001 - a reader that cannot tell leaves the other evidence
            peak = 0
        if peak >= OOM_PEAK_FILL * limit_bytes:
            return f"the allocator's peak reached {peak / limit_bytes:.0%} of the {limit_bytes // 2**20} MiB limit"
    if log_offset is not None and allocator_oom_recorded(log_offset):
        return "the allocator recorded a failed allocation"
    return ""


def child_log_size() -> int | None:
    """Bytes in this child's log (its stderr, named by the parent in PREFLIGHT_CHILD_LOG) so far."""
    path = os.environ.get("PREFLIGHT_CHILD_LOG")
    if not path:
        return None
    sys.stderr.flush()
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def allocator_oom_recorded(offset: int) -> bool:
    """Whether the allocator wrote an out-of-memory record to this child's log after `offset`."""
    sys.stderr.flush()
    try:
        with open(os.environ["PREFLIGHT_CHILD_LOG"], "rb") as log:
            log.seek(offset)
            text = log.read(4 * 2**20).decode("utf-8", errors="replace")
    except (OSError, KeyError):
        return False
    return any(record in text for record in ALLOCATOR_OOM_RECORDS)


def train_step_as_fit(model, batch):
    """One training step on `batch`, handed to `train_step` exactly as model.fit hands it, on the
    backend Keras runs on (preflight.engine.readers)."""
    from preflight.engine.readers import fit_step

    return fit_step(model, batch)


def step_failure(exc: BaseException, model, pool, batch_size: int, source_kind: str) -> ModelError:
    """The first step failed: say what it was fed, and, for synthesized data, how to give real data."""
    failure = f"the training step failed at batch {batch_size}: {type(exc).__name__}: {error_line(exc)}"
    if pool.kind != "synthetic":
        return ModelError(f"{failure} (fed {pool.describe(batch_size)})",
                          hint=fix_for(error_line(exc), loss_name(model)))
    where = {"saved": "data= in preflight.check(model, data)",
             "keras_file": "--data file.npz (arrays x and y), or data= in preflight.check"}.get(
        source_kind, "get_dataset() (or `dataset` / `train_data`) in your model.py, or a model.fit(x, y, ...) call")
    return ModelError(f"{failure}. The data was synthesized by preflight from the model's input specs and "
                      f"its loss, since none was given: {pool.describe(batch_size)}",
                      hint=f"give real training data with {where}; preflight then steps on it as fit would")


def _text_dtype(x) -> str | None:
    """The dtype of the first input array that holds text (NumPy str, bytes or object), if any."""
    import keras

    for array in keras.tree.flatten(x):
        dtype = getattr(array, "dtype", None)
        if getattr(dtype, "kind", None) in ("U", "S", "O"):
            return str(dtype)
    return None


def optimizer_state_bytes(model) -> int:
    """The optimizer's variables once built for the model, exact; counted from shapes while it is not built
    yet (the first step builds it, as in model.fit), without allocating them."""
    from preflight.engine.static_floor import optimizer_bytes_from_shapes, variable_bytes

    if model.optimizer.built:
        return sum(variable_bytes(v) for v in model.optimizer.variables)
    return optimizer_bytes_from_shapes(model)


def describe_model(model, pool) -> ModelInfo:
    import numpy as np

    from preflight.engine.static_floor import variable_bytes as nbytes

    by_dtype = param_bytes_by_dtype(model)
    trainable_bytes = sum(nbytes(w) for w in model.trainable_weights)
    optimizer_bytes = optimizer_state_bytes(model)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    total = sum(int(np.prod(w.shape)) for w in model.weights)
    policy = getattr(model, "dtype_policy", None)
    return ModelInfo(
        name=model.name,
        params_total=total,
        params_trainable=trainable,
        params_non_trainable=total - trainable,
        param_bytes=sum(by_dtype.values()),
        trainable_param_bytes=trainable_bytes,
        param_bytes_by_dtype=by_dtype,
        optimizer=type(model.optimizer).__name__,
        optimizer_bytes=optimizer_bytes,
        optimizer_slots_per_weight=round(optimizer_bytes / trainable_bytes, 3) if trainable_bytes else 0.0,
        input_bytes_per_sample=pool.bytes_per_sample(),
        jit_compile=bool(getattr(model, "jit_compile", False)),
        dtype_policy=getattr(policy, "name", str(policy)),
        layers=describe_layers(model, dynamic_sizes=dynamic_axis_sizes(model, pool)),
    )


def param_bytes_by_dtype(model) -> dict[str, int]:
    from preflight.engine.static_floor import variable_bytes

    by_dtype: dict[str, int] = {}
    for weight in model.weights:
        by_dtype[str(weight.dtype)] = by_dtype.get(str(weight.dtype), 0) + variable_bytes(weight)
    return by_dtype


def model_fingerprint(model) -> str:
    """The live model's fingerprint, from the same fields the check's report records
    (preflight.analysis.fingerprint): a run is matched to its check by it."""
    from preflight.analysis.fingerprint import fingerprint

    return fingerprint([layer.to_dict() for layer in describe_layers(model)], type(model.optimizer).__name__,
                       param_bytes_by_dtype(model))


def dynamic_axis_sizes(model, pool) -> list[int]:
    """The sizes the probe's batch gave the inputs' `None` axes besides the batch (sequence length, image
    size), in input order: a keras-hub GPT-2's token ids (None, None) fed (4, 128) give [128]."""
    import keras

    try:
        specs = keras.tree.flatten(model.inputs)
        arrays = keras.tree.flatten(pool.unpacked(1)[0])
    except (AttributeError, ValueError, TypeError):
        return []  # a subclassed model has no symbolic inputs
    if len(specs) != len(arrays):
        return []
    sizes = []
    for spec, array in zip(specs, arrays):
        shape = getattr(array, "shape", ())
        sizes += [int(shape[axis]) for axis, d in enumerate(spec.shape) if axis > 0 and d is None and axis < len(shape)]
    return sizes


def _concrete(dims: list, dynamic_sizes: list[int]) -> list | None:
    """A layer's per-sample dims with its `None` axes given the sizes the probe ran: one size for every
    `None` when the inputs had one (a sequence length), else by position when the counts match; None when
    that cannot be told."""
    unknown = [i for i, d in enumerate(dims) if d is None]
    if not unknown:
        return dims
    if len(set(dynamic_sizes)) == 1:
        fill = dynamic_sizes * len(unknown)
    elif len(dynamic_sizes) == len(unknown):
        fill = dynamic_sizes
    else:
        return None
    dims = list(dims)
    for index, size in zip(unknown, fill):
        dims[index] = size
    return dims


def describe_layers(model, prefix: str = "", dynamic_sizes: list[int] | None = None) -> list[LayerInfo]:
    """One row per layer; nested models (a pretrained base inside a Sequential) are expanded. A `None` axis
    besides the batch is sized from the batch the probe ran (`dynamic_sizes`, see dynamic_axis_sizes): with
    every such axis at 0 bytes a GPT-2's activations read "0 B" (issue 21)."""
    import numpy as np

    from preflight.common.units import dtype_size

    rows: list[LayerInfo] = []
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            rows.extend(describe_layers(layer, prefix=f"{prefix}{layer.name}/", dynamic_sizes=dynamic_sizes))
            continue
        shape: list = []
        per_sample = 0
        try:
            output = layer.output
            output = output[0] if isinstance(output, (list, tuple)) else output
            shape = [None] + [d for d in output.shape[1:]]
            dims = _concrete(shape[1:], dynamic_sizes or [])
            if dims is not None:
                per_sample = int(np.prod(dims, dtype=np.int64)) * dtype_size(output.dtype)
        except (AttributeError, ValueError):
            pass  # subclassed models have no symbolic outputs: shape unknown
        params = layer.count_params() if layer.built else 0
        rows.append(LayerInfo(prefix + layer.name, type(layer).__name__, shape, int(params), per_sample,
                              str(getattr(layer, "compute_dtype", "") or "")))
    return rows


