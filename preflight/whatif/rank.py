"""Ranking measured what-ifs into the report's `"recommendations"` list. Pure: no TensorFlow.

Input: the baseline's measured peak and step time, and one dict per what-if as the dry-run measured it
(its description from `variants.apply_variant` plus `peak_bytes` / `step_seconds`; `peak_bytes` None
when the variant failed or was not applicable, with `status` / `message` saying why).

Output entries (JSON-able, in display order):

    {"kind", "title", "peak_bytes", "saving_bytes", "saving_fraction", "step_seconds", "step_ratio",
     "params", "snippet", "tradeoff", "fits", "recommended", "lead", "status", "message", "details"}

Order: if the baseline does not fit the budget and some recommended variant does, the least intrusive
of those leads (batch_size < mixed_precision < optimizer < remat < shrink, and within shrink
flatten_to_gap < halve_units < halve_filters < half_resolution; larger saving breaks ties), because
the smallest change that makes the run fit is the one to try first. Then the other recommended
variants by saving, then the ones that save less than MIN_SAVING_FRACTION (kept, so the report can say
they were measured and did not help), then the ones without a measurement.
"""
from __future__ import annotations

from typing import Any

MIN_SAVING_FRACTION = 0.02  # below this the difference is within run-to-run spread: not a recommendation
INTRUSIVENESS = ("batch_size", "mixed_precision", "optimizer", "remat", "finetune", "shrink")


# Within "shrink": swapping Flatten for pooling keeps the data and usually the accuracy; narrower layers
# cost capacity; a lower input resolution throws information away.
SHRINK_INTRUSIVENESS = ("flatten_to_gap", "halve_units", "halve_filters", "half_resolution")


def _intrusiveness(entry: dict[str, Any]) -> tuple[int, int]:
    kind = entry["kind"]
    change = (entry.get("details") or {}).get("change")
    return (INTRUSIVENESS.index(kind) if kind in INTRUSIVENESS else len(INTRUSIVENESS),
            SHRINK_INTRUSIVENESS.index(change) if change in SHRINK_INTRUSIVENESS else len(SHRINK_INTRUSIVENESS))


def rank_recommendations(
    baseline_peak_bytes: int | None,
    measured: list[dict[str, Any]],
    budget_bytes: int | None,
    baseline_step_seconds: float | None,
    planned_batch_size: int | None = None,
    baseline_peaks_by_batch: dict[int, int] | None = None,
) -> list[dict[str, Any]]:
    """Recommendation entries for the report, ranked as the module docstring says.

    `baseline_peak_bytes` None: the baseline fits at no batch size, so it has no peak; then a what-if is
    recommended when it fits, those that fit at the planned batch first, then those that fit at batch 1
    (an item's "batch_size" says where its peak was measured). An item measured at another batch than
    the planned one is compared with the baseline's measured peak at that batch, when there is one.
    """
    if baseline_peak_bytes is not None and baseline_peak_bytes <= 0:
        raise ValueError(f"baseline_peak_bytes must be a positive byte count, not {baseline_peak_bytes!r}")
    entries = []
    for item in measured:
        peak = item.get("peak_bytes")
        step = item.get("step_seconds")
        batch_size = item.get("batch_size", planned_batch_size)
        baseline = baseline_peak_bytes if batch_size == planned_batch_size \
            else (baseline_peaks_by_batch or {}).get(batch_size)
        saving = baseline - int(peak) if peak is not None and baseline else None
        fraction = saving / baseline if saving is not None else None
        fits = (int(peak) <= budget_bytes) if peak is not None and budget_bytes is not None else None
        entries.append({
            "kind": item.get("kind"),
            "title": item.get("title", item.get("kind")),
            "peak_bytes": int(peak) if peak is not None else None,
            "saving_bytes": saving,
            "saving_fraction": round(fraction, 4) if fraction is not None else None,
            "step_seconds": step,
            "step_ratio": round(step / baseline_step_seconds, 3)
            if step is not None and baseline_step_seconds else None,
            "params": item.get("params"),
            "snippet": item.get("snippet", ""),
            "tradeoff": item.get("tradeoff", ""),
            "fits": fits,
            "batch_size": batch_size,
            "recommended": (fraction is not None and fraction >= MIN_SAVING_FRACTION)
            or (baseline is None and bool(fits)),
            "lead": False,
            "status": item.get("status", "ok" if peak is not None else "error"),
            "message": item.get("message", ""),
            "details": item.get("details", {}),
        })

    # Only a run that does not fit needs "the smallest change that makes it fit".
    baseline_fits = budget_bytes is not None and baseline_peak_bytes is not None and baseline_peak_bytes <= budget_bytes
    fitting = [e for e in entries if e["recommended"] and e["fits"]] if not baseline_fits else []
    at_planned = [e for e in fitting if e["batch_size"] == planned_batch_size] or fitting

    def smallest_peak_first(entry: dict[str, Any]) -> int:
        return entry["peak_bytes"] if entry["peak_bytes"] is not None else 2**62

    lead = min(at_planned, key=lambda e: (_intrusiveness(e), smallest_peak_first(e))) if at_planned else None
    if lead is not None:
        lead["lead"] = True

    def order(entry: dict[str, Any]) -> tuple:
        if entry is lead:
            return (0, 0, 0)
        if entry["recommended"]:
            return (1, entry["batch_size"] != planned_batch_size, smallest_peak_first(entry))
        if entry["peak_bytes"] is not None:
            return (2, 0, smallest_peak_first(entry))
        return (3, 0, 0)

    return sorted(entries, key=order)


def unmeasured_entry(spec: dict[str, Any], status: str, message: str) -> dict[str, Any]:
    """A measured-list item for a what-if that has no peak: "not_applicable", "oom", "error" or "timeout"."""
    args = spec.get("args") or {}
    detail = args.get("policy") or args.get("name") or args.get("change") or ""
    title = f"{spec.get('kind')} {detail}".strip()
    if spec.get("kind") == "finetune":
        from preflight.whatif.variants import finetune_title

        title = finetune_title(args.get("mode", ""), args.get("rank"))
    return {"kind": spec.get("kind"), "title": title, "peak_bytes": None,
            "step_seconds": None, "params": None, "snippet": "", "tradeoff": "", "status": status,
            "message": message}


def batch_size_entry(current_batch_size: int, new_batch_size: int, peak_bytes: int, params: int,
                     step_seconds: float | None = None, source: str = "measured") -> dict[str, Any]:
    """The measured-list item for the batch-size what-if, from the batch-size prediction or a probe."""
    return {
        "kind": "batch_size",
        "title": f"Batch size {current_batch_size} -> {new_batch_size}",
        "peak_bytes": int(peak_bytes),
        "step_seconds": step_seconds,
        "params": params,
        "snippet": f"batch_size = {int(new_batch_size)}\n",
        "tradeoff": (f"Peak {source} at batch {new_batch_size}. Fewer samples per step: more steps per epoch, "
                     "noisier gradients; scale the learning rate with the batch (or accumulate gradients with "
                     f"the optimizer's gradient_accumulation_steps={max(1, current_batch_size // max(1, new_batch_size))} "
                     "to keep the effective batch)."),
        "details": {"batch_size": int(new_batch_size), "source": source},
    }


__all__ = ["INTRUSIVENESS", "MIN_SAVING_FRACTION", "SHRINK_INTRUSIVENESS", "batch_size_entry", "rank_recommendations", "unmeasured_entry"]
