"""What to change, from what was measured: the largest and recommended batch sizes as the confirming runs
found them (apply_largest, apply_recommended), and the measured what-ifs ranked into the report's
`"recommendations"` list (recommendations, rank_recommendations). Pure: no TensorFlow.

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


def finetune_title(mode: str, rank: int | None = None) -> str:
    """How a report names a fine-tuning what-if, measured or not."""
    return {"full": "Full fine-tuning (every weight trains)", "freeze_backbone": "Freeze the backbone (train the head only)",
            "lora": f"LoRA rank {rank or 4}"}.get(mode, f"finetune {mode}")


def recommendations(document: dict[str, Any], measured: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ranked "recommendations" list: the measured what-ifs plus the batch-size change (never when
    no batch size fits: a smaller batch is not the way out then)."""
    items = list(measured)
    recommended = document.get("recommended_batch_size")
    if recommended and recommended < document["batch_size"] and not document.get("fits_at_no_batch"):
        confirmation = document.get("confirmation") or {}
        measured_peak = confirmation.get("measured_peak_bytes") if confirmation.get("batch_size") == recommended else None
        curve = {row["batch_size"]: row["peak_bytes"] for row in document.get("curve") or []}
        peak = measured_peak or curve.get(recommended)
        if peak:
            items.append(batch_size_entry(document["batch_size"], recommended, peak,
                                          document["model"]["params_total"],
                                          source="measured" if measured_peak else "predicted"))
    if not items or (not document.get("peak_bytes") and not document.get("fits_at_no_batch")):
        return []
    planned = next((p for p in document["probes"] if p["batch_size"] == document["batch_size"]), None)
    measured_peaks = {p["batch_size"]: p["peak_bytes"] for p in document["probes"] if p["status"] == "ok"}
    return rank_recommendations(document.get("peak_bytes"), items, document.get("budget_bytes"),
                                planned.get("step_seconds") if planned else None,
                                planned_batch_size=document["batch_size"], baseline_peaks_by_batch=measured_peaks)


def apply_largest(document: dict[str, Any], largest: dict[str, Any] | None) -> int | None:
    """The largest batch's confirming runs (whatif.recommend.confirm_under_budget's record) into the document:
    a failure lowers the largest batch to what ran; the recommended batch never exceeds it. Returns the
    recommended batch size."""
    from preflight.analysis.predict import friendly_at_most

    if largest is not None:
        document["max_batch_confirmation"] = largest
        refused = largest["failed_batch_sizes"] + [int(b) for b in largest.get("near_limit") or {}]
        if largest["status"] == "ok":
            document["max_batch_size"] = largest["batch_size"]
        elif refused:
            document["max_batch_size"] = largest_probe_under(document, min(refused))
    top, recommended = document.get("max_batch_size"), document.get("recommended_batch_size")
    if recommended and top is not None and recommended > top:
        document["recommended_batch_size"] = recommended = friendly_at_most(top) if top else None
    if _ran_with_headroom(largest) and (recommended or 0) < largest["batch_size"]:
        # Measured where measured: the largest batch ran under model.fit with the recommendation's headroom
        # left, so it is the recommendation, not a smaller size the curve's extrapolation margin predicted
        # (the MNIST example: 28,456 ran at 541 MiB of 1 GiB; the curve had recommended 10,560).
        document["recommended_batch_size"] = recommended = largest["batch_size"]
    if largest is not None and largest["status"] == "ok" and recommended == largest["batch_size"]:
        document["confirmation"] = largest
    return recommended


def _ran_with_headroom(largest: dict[str, Any] | None) -> bool:
    """The largest batch ran in every confirming process with its peak under the recommended share of the
    limit it ran under (the budget)."""
    from preflight.analysis.predict import RECOMMEND_FRACTION

    if not largest or largest["status"] != "ok" or not largest.get("limit_bytes"):
        return False
    peak = max(largest.get("process_peaks") or [largest.get("measured_peak_bytes") or 0])
    return 0 < peak <= RECOMMEND_FRACTION * largest["limit_bytes"]


def apply_recommended(document: dict[str, Any], confirmation: dict[str, Any] | None) -> None:
    """The recommended batch's confirming runs into the document: the report recommends the size they ran
    (their own runs are measured points of the curve, which may move its recommendation by a few samples: a
    CNN confirmed 888 and its curve then said 880); a failure, or a run too near the limit to count, lowers
    it to what ran."""
    if confirmation is not None:
        document["confirmation"] = confirmation
        if (confirmation["status"] == "ok" or confirmation["failed_batch_sizes"]
                or confirmation.get("near_limit")):
            document["recommended_batch_size"] = confirmation["batch_size"]


def largest_probe_under(document: dict[str, Any], refused: int) -> int:
    """Nothing ran under the budget in the confirmation: the largest probe below the smallest refused batch
    whose measured peak was within the budget (0 when there is none), never a batch size nobody ran."""
    budget = document["budget_bytes"]
    return max((p["batch_size"] for p in document["probes"] if p["status"] == "ok" and p["batch_size"] < refused
                and p["peak_bytes"] is not None and p["peak_bytes"] <= budget), default=0)
