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
def floor_over_budget(ctx: CheckContext) -> Finding | None:
    doc = ctx.document
    floor, budget = doc.get("floor") or {}, doc.get("budget_bytes")
    if not budget or floor.get("total_bytes", 0) <= budget:
        return None
    largest = ", ".join(f"{layer['name']} ({layer['class_name']}, {layer['params']:,} params, "
                        f"{format_bytes(layer['parameter_bytes'])})" for layer in floor.get("largest_layers") or [])
    return Finding("floor-over-budget", "error",
                   f"No batch size fits: parameters {format_bytes(floor['parameter_bytes'])} + gradients "
                   f"{format_bytes(floor['gradient_bytes'])} + optimizer state {format_bytes(floor['optimizer_bytes'])} "
                   f"({floor.get('optimizer')}) = {format_bytes(floor['total_bytes'])} before any activation, "
                   f"over the budget of {format_bytes(budget)}."
                   + (f" Largest layers: {largest}." if largest else "")
                   + " Only a smaller model or lighter optimizer state helps; see the what-ifs.")


@check
def out_of_memory_while_building(ctx: CheckContext) -> Finding | None:
    message = ctx.document.get("load_oom")
    if not message:
        return None
    limit = ctx.document["device"].get("memory_limit_bytes")
    where = f" under the probe's {format_bytes(limit)} limit" if limit else ""
    return Finding("load-oom", "error", f"The model could not even be built{where}: {message}. This is a memory "
                   "verdict, not an error in the model.")


@check
def fits_at_no_batch(ctx: CheckContext) -> Finding | None:
    doc = ctx.document
    floor, budget = doc.get("floor") or {}, doc.get("budget_bytes")
    if not doc.get("fits_at_no_batch") or doc.get("load_oom") or floor.get("total_bytes", 0) > (budget or 0):
        return None  # the two checks above already say why
    batch_one = next((p for p in doc["probes"] if p["batch_size"] == 1), {})
    why = (f"batch 1's measured peak {format_bytes(batch_one['peak_bytes'])} is over the budget of "
           f"{format_bytes(budget)}" if batch_one.get("status") == "ok" else "batch 1 ran out of memory")
    return Finding("no-batch-fits", "error",
                   f"No batch size fits: {why}, so a smaller batch does not help; change the model (see the "
                   "measured what-ifs).")


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
    probe = next(p for p in ctx.document["probes"] if p["batch_size"] == batch and p["status"] == "ok")
    where = f"{probe['processes']} fresh processes" if probe.get("processes", 1) > 1 else "measured steps"
    return Finding("peak-varies", "info" if spread < 0.15 else "warning",
                   f"The same step's peak varied by {spread:.0%} across {where} at batch {batch} "
                   "(the executor orders ops differently each time); verdicts use the largest, and the "
                   "prediction's margin is at least that spread.")


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


@check
def loss_not_finite(ctx: CheckContext) -> Finding | None:
    for probe in ctx.document["probes"]:
        bad = [loss for loss in probe.get("losses") or [] if isinstance(loss, str)]
        if bad:
            return Finding("loss-not-finite", "error",
                           f"The loss was {bad[0]} in {len(bad)} of {len(probe['losses'])} measured steps at batch "
                           f"{probe['batch_size']}: the model fits but cannot train. Check the data for NaN, the "
                           "loss for log(0) or a division by zero, and the learning rate.")
    return None


@check
def weights_unchanged(ctx: CheckContext) -> Finding | None:
    compared = [p for p in ctx.document["probes"] if p.get("weights_changed") is not None]
    if not compared or any(p["weights_changed"] for p in compared):
        return None
    probe = compared[0]
    return Finding("weights-unchanged", "warning",
                   f"No trainable weight changed over the warm-up and {len(probe.get('losses') or [])} measured "
                   f"steps at batch {probe['batch_size']}: every gradient was zero, or the learning rate is 0. "
                   "Check that the loss depends on the trainable layers (no stop_gradient in the path).")
