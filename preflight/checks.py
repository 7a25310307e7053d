"""Diagnostic checks: each is a small function (context) -> Finding | None, kept in one registry.

A new check is one function with the @check decorator and one test. Checks read the assembled
analysis context only; they never run TensorFlow.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

from preflight.units import format_bytes


@dataclass(frozen=True)
class Finding:
    id: str
    severity: str  # "info" | "warning" | "error"
    message: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class CheckContext:
    document: dict[str, Any]        # the report document assembled so far
    host_available_bytes: int | None


CHECKS: list[Callable[[CheckContext], Finding | None]] = []


def check(fn: Callable[[CheckContext], Finding | None]) -> Callable[[CheckContext], Finding | None]:
    CHECKS.append(fn)
    return fn


def run_checks(context: CheckContext) -> list[dict[str, str]]:
    return [finding.to_dict() for fn in CHECKS if (finding := fn(context)) is not None]


@check
def probe_failed(ctx: CheckContext) -> Finding | None:
    probe = next((p for p in ctx.document["probes"] if p["status"] != "ok"), None)
    if probe is None:
        return None
    what = {"oom": "ran out of memory", "timeout": "timed out", "crashed": "crashed", "error": "failed"}[probe["status"]]
    limit = ctx.document["device"].get("memory_limit_bytes")
    where = f" under a {format_bytes(limit)} limit" if limit else ""
    return Finding("probe-" + probe["status"], "error",
                   f"The training step at batch {probe['batch_size']} {what}{where}: {probe['message']}")


@check
def loss_not_finite(ctx: CheckContext) -> Finding | None:
    # An ok probe carries a message only when its loss was NaN or infinite (preflight.child).
    probe = next((p for p in ctx.document["probes"] if p["status"] == "ok" and p.get("message")), None)
    if probe is None:
        return None
    return Finding("loss-not-finite", "warning",
                   f"In the dry run {probe['message']}: the memory figures stand, but this run would not learn. "
                   "Fix: look for NaN or infinite values in the data, and lower the learning rate.")


@check
def over_budget(ctx: CheckContext) -> Finding | None:
    doc = ctx.document
    if doc.get("fits") is not False or doc.get("peak_bytes") is None:
        return None
    return Finding("over-budget", "error",
                   f"Peak {format_bytes(doc['peak_bytes'])} at batch {doc['batch_size']} exceeds the budget "
                   f"of {format_bytes(doc['budget_bytes'])} by {format_bytes(doc['peak_bytes'] - doc['budget_bytes'])}.")


@check
def near_budget(ctx: CheckContext) -> Finding | None:
    doc = ctx.document
    if not doc.get("fits") or not doc.get("budget_bytes") or doc.get("peak_bytes") is None:
        return None
    used = doc["peak_bytes"] / doc["budget_bytes"]
    if used < 0.9:
        return None
    return Finding("near-budget", "warning",
                   f"The peak uses {used:.0%} of the budget: fragmentation or a longer input could tip it over.")


@check
def peak_varies(ctx: CheckContext) -> Finding | None:
    spreads = [(p["spread"], p["batch_size"]) for p in ctx.document["probes"]
               if p["status"] == "ok" and p.get("spread", 0) > 0.05]
    if not spreads:
        return None
    spread, batch = max(spreads)
    return Finding("peak-varies", "info",
                   f"The same step's peak varied by {spread:.0%} across measured steps at batch {batch} "
                   "(the executor orders ops differently each time); verdicts use the largest.")


@check
def dataset_in_host_memory(ctx: CheckContext) -> Finding | None:
    data = ctx.document.get("data") or {}
    held = data.get("host_bytes")
    if not held or not ctx.host_available_bytes:
        return None
    share = held / ctx.host_available_bytes
    if share < 0.25:
        return None
    return Finding("dataset-in-memory", "warning" if share < 0.6 else "error",
                   f"The training data is held in host memory ({format_bytes(held)}, {share:.0%} of the "
                   f"{format_bytes(ctx.host_available_bytes)} available), and model.fit copies NumPy input "
                   "into a tensor once more. Stream it with tf.data from files instead.")


@check
def measured_on_cpu_for_accelerator(ctx: CheckContext) -> Finding | None:
    target = ctx.document.get("target") or {}
    if ctx.document["device"]["kind"] != "CPU" or target.get("kind") not in ("GPU", "TPU"):
        return None
    return Finding("projected-target", "info",
                   f"Measured on the CPU and projected to {target.get('name')}: on a {target.get('kind')} "
                   "Keras compiles the step with XLA by default, which changes memory; confirm on the device.")


@check
def pipeline_holds_host_memory(ctx: CheckContext) -> Finding | None:
    pipeline = (ctx.document.get("data") or {}).get("pipeline") or {}
    shuffle, cache = pipeline.get("shuffle_buffer_bytes", 0), pipeline.get("in_memory_cache_bytes", 0)
    held = shuffle + cache
    if not held or not ctx.host_available_bytes or held / ctx.host_available_bytes < 0.25:
        return None
    parts = []
    if shuffle:
        parts.append(f"a shuffle buffer of up to {format_bytes(shuffle)}")
    if cache:
        parts.append(f"an in-memory cache of {format_bytes(cache)}")
    return Finding("pipeline-in-memory", "warning",
                   f"The tf.data pipeline holds {' and '.join(parts)} in host RAM "
                   f"({held / ctx.host_available_bytes:.0%} of the {format_bytes(ctx.host_available_bytes)} "
                   "available). Use a smaller shuffle buffer, or cache to a file: dataset.cache('/tmp/cache').")
