"""Measured what-ifs: each variant of the model (preflight.whatif) is dry-run in its own child at the
planned batch, under the same memory limit as the baseline, and ranked (preflight.whatif.rank).

Each variant gets a fresh child, as the baseline's planned batch did, so the two peaks are taken from
the same allocator state. A variant that runs out of memory under the limit is reported as "does not fit
either"; one that cannot be built for this model says why.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from preflight.errors import PreflightError
from preflight.runner import ProbeJob, ProbeOutcome, run_probes
from preflight.whatif.rank import batch_size_entry, rank_recommendations, unmeasured_entry

# Beyond this factor over the budget no single what-if is likely to make the run fit (measured savings
# were 7-43 % for mixed precision, remat and shrinking): only the batch-size recommendation is given.
WHATIF_REACH = 2.0
VARIANT_STEPS = 2


def should_measure_whatifs(document: dict[str, Any]) -> bool:
    budget, peak = document.get("budget_bytes"), document.get("peak_bytes")
    return (document.get("fits") is False and budget is not None and peak is not None
            and peak <= WHATIF_REACH * budget)


def measure_variants(baseline_job: ProbeJob, specs: list[dict], on_progress=None) -> list[dict[str, Any]]:
    """One measured-list item per spec (see whatif.rank): description + peak/step time, or why not."""
    planned = baseline_job.planned_batch_size
    measured = []
    for spec in specs:
        job = replace(baseline_job, batch_sizes=[planned], adaptive=False, measured_steps=VARIANT_STEPS,
                      variant=spec, list_variants=False, profile_dir=None, prior_probes=[])
        try:
            outcome = run_probes(job, on_progress)
        except PreflightError as exc:
            measured.append(unmeasured_entry(spec, "error", exc.message))
            continue
        measured.append(_measured_item(spec, outcome, planned))
    return measured


def _measured_item(spec: dict, outcome: ProbeOutcome, batch_size: int) -> dict[str, Any]:
    variant = outcome.variant or {}
    description = variant.get("description")
    if description is None:
        return unmeasured_entry(spec, "not_applicable", variant.get("message") or "could not be built")
    probe = next((p for p in outcome.probes if p.batch_size == batch_size), None)
    if probe is None or probe.status != "ok":
        status = probe.status if probe is not None else "error"
        message = probe.message if probe is not None else "no probe result"
        if status == "oom":
            message = f"does not fit either: {message}"
        return {**unmeasured_entry(spec, status, message), **{k: description[k] for k in
                                                               ("kind", "title", "snippet", "tradeoff")}}
    return {**description, "peak_bytes": probe.peak_bytes, "step_seconds": probe.step_seconds}


def recommendations(document: dict[str, Any], measured: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ranked "recommendations" list: the measured what-ifs plus the batch-size change."""
    items = list(measured)
    recommended = document.get("recommended_batch_size")
    if recommended and recommended < document["batch_size"]:
        confirmation = document.get("confirmation") or {}
        measured_peak = confirmation.get("measured_peak_bytes") if confirmation.get("batch_size") == recommended else None
        curve = {row["batch_size"]: row["peak_bytes"] for row in document.get("curve") or []}
        peak = measured_peak or curve.get(recommended)
        if peak:
            items.append(batch_size_entry(document["batch_size"], recommended, peak,
                                          document["model"]["params_total"],
                                          source="measured" if measured_peak else "predicted"))
    if not items or not document.get("peak_bytes"):
        return []
    planned = next((p for p in document["probes"] if p["batch_size"] == document["batch_size"]), None)
    return rank_recommendations(document["peak_bytes"], items, document.get("budget_bytes"),
                                planned.get("step_seconds") if planned else None)
