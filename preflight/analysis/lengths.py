"""The inputs' dynamic axis (a sequence length, an image size) measured like the batch size: the report's
"length_curve" section.

The child steps the planned batch at a few lengths (preflight.child.measure_lengths); here those probes
become a curve and the longest length that fits, with the batch curve's own machinery
(preflight.analysis.predict.PeakModel, lengths in place of batch sizes): the same upper envelope, margin
and extrapolation, except that growth past the longest probe may be quadratic (`convex`): attention
scores grow with the square of the length. Pure Python, no TensorFlow.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from preflight.analysis.predict import PeakModel
from preflight.common.measurements import ProbeOutcome


def length_section(outcome: ProbeOutcome, batch_size: int, budget: int | None,
                   min_run_margin: float) -> dict[str, Any] | None:
    """{"axes", "batch_size", "planned_length", "length_source", "max_model_length", "probes", "curve",
    "max_length", "max_length_source"}; None when the model's inputs have no dynamic axis."""
    info = outcome.dynamic_axes
    if not info or not info.get("axes"):
        return None
    planned = info.get("planned_length")
    longest = info.get("max_length")
    section: dict[str, Any] = {
        "axes": info["axes"], "batch_size": batch_size, "planned_length": planned,
        "length_source": info.get("length_source"), "max_model_length": longest,
        "probes": [], "curve": [], "max_length": None, "max_length_source": None,
    }
    at_planned = next((p for p in outcome.probes if p.batch_size == batch_size and p.status == "ok"), None) or \
        next((p for p in outcome.probes if p.batch_size == batch_size and p.status == "oom"), None)
    probes = ([replace(at_planned, batch_size=planned)] if at_planned is not None and planned else []) + \
        [replace(item["probe"], batch_size=item["length"]) for item in outcome.length_probes]
    section["probes"] = [{"length": p.batch_size, "status": p.status, "peak_bytes": p.peak_bytes,
                          "step_seconds": p.step_seconds, "message": p.message}
                         for p in sorted(probes, key=lambda p: p.batch_size)]
    if len(probes) < 2 or not any(p.status == "ok" for p in probes):
        return section  # a curve needs two lengths, one of them measured
    model = PeakModel(probes, memory_limit_bytes=(outcome.device.memory_limit_bytes if outcome.device else None),
                      min_run_margin=min_run_margin, convex=True)
    measured = {p.batch_size for p in probes if p.status == "ok"}
    lengths = set(measured)
    top = max(measured)
    if budget is not None:
        best = model.max_batch_size(budget)
        if best is not None and longest is not None:
            best = min(best, longest)
        section["max_length"] = best
        if best:
            section["max_length_source"] = "measured" if best in measured else "predicted"
            lengths.add(best)
            top = max(top, best)
    power = 1
    while power <= 2 * top and (longest is None or power <= longest):
        if power >= min(measured):
            lengths.add(power)
        power *= 2
    section["curve"] = [{"length": row["batch_size"], "peak_bytes": row["peak_bytes"], "source": row["source"]}
                        for row in model.curve(sorted(lengths))]
    return section
