"""Host memory: what the input pipeline holds beside the training step, and the host budget it is checked against.

The dry-run child measures the step without the tf.data pipeline's buffers in the allocator's window and
records the pipeline apart (preflight.child `_pool_apart_from_pipeline`, preflight.engine.data
`describe_pipeline`): its buffers estimated from the element spec, and what the allocator saw while the
first batch was read; NumPy arrays under TensorFlow are a pipeline too, the copy model.fit makes of them
(`array_copy_pipeline`). Here those become the report's "host" section. On a CPU run the step and the
pipeline share one memory, so both count against the budget; with a GPU or TPU target the step is device
memory and the pipeline host RAM, checked against `--host-budget` (bytes, or a preset: colab, kaggle),
(preflight.common.units.HOST_RAM_PRESETS), else the memory available on this host (psutil, read by the caller). Pure; no TensorFlow.
"""
from __future__ import annotations

from typing import Any

MIB = 2**20
LARGE_BUFFER_SHARE = 0.10        # a buffer over this share of the host budget gets its own finding,
LARGE_BUFFER_BYTES = 512 * MIB   # ... or over this, when no host budget is known
DATASET_SHARE = 0.5             # ... or holds this share of the dataset (a shuffle, a decoded cache)
PIPELINE_CAUSE_SHARE = 0.5       # the pipeline "holds most of the peak" above this share of the total


def array_copy_pipeline(data: dict | None, backend: str, bytes_per_sample: int | None) -> dict | None:
    """model.fit(x, y) on NumPy arrays under TensorFlow, as a pipeline: Keras's array adapter turns the whole
    arrays into one tensor before the first step and holds it for the whole fit, in the allocator a CPU step
    uses (1,024 floats a sample, 1,024 to 16,384 samples: fit's peak was the step's plus the arrays' bytes plus
    0.3-0.8 MiB, benchmarks/array_copy.py; one batch repeated through tf.data held neither). None for other data
    and backends (JAX and PyTorch slice the arrays batch by batch)."""
    if not data or data.get("kind") != "numpy" or not data.get("host_bytes") or backend != "tensorflow":
        return None
    held = int(data["host_bytes"])
    samples = held // bytes_per_sample if bytes_per_sample else None
    return {"chain": "NumPy arrays -> model.fit's copy of them", "dataset_elements": samples,
            "buffers": [{"kind": "copy", "elements": samples or 0, "element_bytes": bytes_per_sample or held,
                         "bytes": held, "decoded": False, "shares_cache": False}]}


def pipeline_bytes(pipeline: dict | None) -> tuple[int, str]:
    """(bytes the input pipeline holds at most, where the figure comes from).

    The larger of the measured figure (the allocator while the first batch was read, and what the dataset
    held afterwards) and the estimate from the buffers (an in-memory cache holds the whole dataset only
    after the first epoch, which one batch does not show). A shuffle right after a cache holds the cache's
    own tensors, so the two count once.
    """
    if not pipeline:
        return 0, "none"
    buffers = pipeline.get("buffers") or []
    cache = max((b["bytes"] for b in buffers if b["kind"] == "cache"), default=0)
    shuffles = [b for b in buffers if b["kind"] == "shuffle"]
    shuffle = sum(b["bytes"] for b in shuffles if not b.get("shares_cache"))
    shared = max((b["bytes"] for b in shuffles if b.get("shares_cache")), default=0)
    prefetch = sum(b["bytes"] for b in buffers if b["kind"] == "prefetch")
    copy = sum(b["bytes"] for b in buffers if b["kind"] == "copy")
    estimated = max(cache, shared) + shuffle + prefetch + copy
    if copy and copy == estimated and "measured_peak_bytes" not in pipeline:
        return copy, "the NumPy arrays' size: model.fit copies them into one tensor"
    measured = max(pipeline.get("measured_peak_bytes") or 0, pipeline.get("held_bytes") or 0)
    if "measured_peak_bytes" in pipeline and measured >= estimated:
        return measured, "measured by the allocator while the first batch was read"
    if measured:
        return estimated, ("estimated from the element spec and the dataset's size (the cache fills over the "
                           f"first epoch; {measured // MIB} MiB measured while the first batch was read)")
    return estimated, "estimated from the element spec and the dataset's size"


def host_section(pipeline: dict | None, device_kind: str, target_kind: str | None, step_bytes: int | None,
                 budget_bytes: int | None, host_budget: tuple[int, str] | None) -> dict[str, Any] | None:
    """The report's "host" section, or None when the data is no tf.data pipeline.

    `step_bytes`: the step's verdict figure (counted here only when the step runs on the host's memory);
    `host_budget`: (bytes, where from) of the host's RAM for a GPU/TPU target.
    """
    if not pipeline:
        return None
    held, source = pipeline_bytes(pipeline)
    step_on_host = device_kind == "CPU" and target_kind in (None, "CPU")
    if step_on_host:
        budget, budget_source = budget_bytes, "the budget (on a CPU the step and the pipeline share host memory)"
    else:
        budget, budget_source = host_budget if host_budget else (None, "unknown")
    step = step_bytes if step_on_host else None
    total = held + (step or 0)
    fits = None if budget is None else total <= budget
    threshold = budget * LARGE_BUFFER_SHARE if budget else LARGE_BUFFER_BYTES
    dataset = pipeline.get("dataset_elements")
    large = [b for b in pipeline.get("buffers") or [] if b["bytes"] >= threshold
             or ((b["kind"] == "shuffle" or (b["kind"] == "cache" and b["decoded"])) and dataset
                 and b["elements"] >= DATASET_SHARE * dataset)]
    return {
        "pipeline_bytes": held,
        "pipeline_source": source,
        "chain": pipeline.get("chain"),
        "step_on_host": step_on_host,
        "step_bytes": step,
        "total_bytes": total,
        "budget_bytes": budget,
        "budget_source": budget_source,
        "fits": fits,
        "step_fits_alone": None if budget is None or step is None else step <= budget,
        "pipeline_is_cause": bool(fits is False and held >= PIPELINE_CAUSE_SHARE * total),
        "large_buffers": large,
        "lines": pipeline.get("lines") or {},
    }
