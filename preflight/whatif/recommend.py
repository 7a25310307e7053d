"""Measured what-ifs: each variant of the model (preflight.whatif) is dry-run in its own child at the
planned batch, under the same memory limit as the baseline, and ranked (preflight.whatif.rank).

Each variant gets a fresh child, as the baseline's planned batch did, so the two peaks are taken from
the same allocator state. A variant that runs out of memory under the limit is reported as "does not fit
either"; one that cannot be built for this model says why.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

from preflight.analysis.document import confirmation_record
from preflight.errors import PreflightError
from preflight.engine.runner import ProbeJob, ProbeOutcome, run_probes
from preflight.whatif.rank import batch_size_entry, rank_recommendations, unmeasured_entry

# Beyond this factor over the budget no single what-if is likely to make the run fit (measured savings
# were 7-43 % for mixed precision, remat and shrinking): only the batch-size recommendation is given.
WHATIF_REACH = 2.0
VARIANT_STEPS = 2


def should_measure_whatifs(document: dict[str, Any]) -> bool:
    """When it does not fit and a what-if could make it fit: the peak is within reach of one change, or
    no batch fits at all (then only a change to the model can help, however far over the budget)."""
    budget, peak = document.get("budget_bytes"), document.get("peak_bytes")
    if document.get("fits") is not False or budget is None:
        return False
    if (document.get("host") or {}).get("pipeline_is_cause"):
        return False  # the input pipeline holds most of it: no change to the model is the remedy
    return bool(document.get("fits_at_no_batch")) or (peak is not None and peak <= WHATIF_REACH * budget)


def measure_variants(baseline_job: ProbeJob, specs: list[dict], on_progress=None,
                     document: dict[str, Any] | None = None,
                     variant_floors: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One measured-list item per spec (see whatif.rank): description + peak/step time, or why not.

    When no batch fits the baseline, each variant is tried at the planned batch and at batch 1 (a change
    that makes batch 1 fit is still the way forward). A variant whose static floor alone is over the
    budget is not run: its floor says why it cannot fit.
    """
    from preflight.whatif.variants import spec_label

    document = document or {}
    planned = baseline_job.planned_batch_size
    no_batch_fits = bool(document.get("fits_at_no_batch"))
    sizes = [planned, 1] if no_batch_fits and planned > 1 else [planned]
    budget = document.get("budget_bytes")
    from_shapes = bool(budget and (document.get("load_oom") or document["floor"]["total_bytes"] > budget))
    measured = []
    for spec in specs:
        floor = (variant_floors or {}).get(spec_label(spec)) or {}
        if budget and floor.get("total_bytes", 0) > budget:
            measured.append({**unmeasured_entry(spec, "floor_over_budget", _floor_message(floor, budget)),
                             "details": {"floor": floor}})
            continue
        job = replace(baseline_job, batch_sizes=sizes, adaptive=False, measured_steps=VARIANT_STEPS,
                      variant=spec, list_variants=False, profile_dir=None, prior_probes=[], readiness=False,
                      variant_from_shapes=from_shapes)
        try:
            outcome = run_probes(job, on_progress)
        except PreflightError as exc:
            measured.append(unmeasured_entry(spec, "error", exc.message))
            continue
        measured.append(_measured_item(spec, outcome, sizes))
    return measured


def _floor_message(floor: dict[str, Any], budget: int) -> str:
    from preflight.units import format_bytes

    return (f"does not fit either: its static floor (parameters {format_bytes(floor['parameter_bytes'])} + "
            f"gradients {format_bytes(floor['gradient_bytes'])} + optimizer state "
            f"{format_bytes(floor['optimizer_bytes'])} = {format_bytes(floor['total_bytes'])}) is over the "
            f"budget of {format_bytes(budget)} before any activation")


def _measured_item(spec: dict, outcome: ProbeOutcome, batch_sizes: list[int]) -> dict[str, Any]:
    """The variant's peak at the first of `batch_sizes` that ran (the planned batch, else batch 1)."""
    variant = outcome.variant or {}
    description = variant.get("description")
    if description is None:
        if outcome.load_oom:
            return unmeasured_entry(spec, "oom", f"does not fit either: {outcome.load_oom}")
        return unmeasured_entry(spec, "not_applicable", variant.get("message") or "could not be built")
    probes = {p.batch_size: p for p in outcome.probes}
    probe = next((probes[b] for b in batch_sizes if b in probes and probes[b].status == "ok"), None)
    if probe is None:
        failed = probes.get(batch_sizes[0])
        status = failed.status if failed is not None else ("oom" if outcome.load_oom else "error")
        message = failed.message if failed is not None else (outcome.load_oom or "no probe result")
        if status == "oom":
            message = f"does not fit either{' at batch 1' if len(batch_sizes) > 1 else ''}: {message}"
        return {**unmeasured_entry(spec, status, message), **{k: description[k] for k in
                                                               ("kind", "title", "snippet", "tradeoff")}}
    return {**description, "peak_bytes": probe.peak_bytes, "step_seconds": probe.step_seconds,
            "batch_size": probe.batch_size}


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


CONFIRM_ATTEMPTS = 3
CONFIRM_PROCESSES = 2        # fresh processes that must each run the batch under the budget
NEAR_LIMIT_FILL = 0.96       # a peak above this share of the budget needs a third fresh process
NEAR_LIMIT_PROCESSES = 3
PREFETCHED_BATCHES = 2       # batches model.fit's tf.data pipeline holds beside the step (left out of the limit)
MAX_BATCH_STEP_DOWN = 0.9    # the largest batch is stepped down finely: it is the number reported
RECOMMENDED_STEP_DOWN = 0.85
CONFIRM_MAX_STEP_SECONDS = 20.0


def confirm_under_budget(document: dict[str, Any], baseline_job: ProbeJob, host_limit_bytes: int,
                        batch: int | None, step_down: Callable[[int], int],
                        on_progress=None) -> dict[str, Any] | None:
    """Run `batch` in fresh children whose allocator is limited to the budget itself, stepping down on OOM.

    Under a hard limit BFC fails before its unlimited in-use peak reaches the limit (a CNN's predicted
    max of 88 ran out of memory under 512 MiB; the true max was 68), so a batch size preflight reports is
    proven the way the real device would test it. It must run in CONFIRM_PROCESSES fresh processes, and
    in a third when a peak passed NEAR_LIMIT_FILL of the budget (an MLP batch that peaked at 99.4 % of
    256 MiB in two processes ran out of memory in a third); one that fits only sometimes is "near_limit"
    and counts as not fitting. None when it cannot be tried here (no budget, a budget larger than this
    machine can hold, or steps too slow).
    """
    from preflight.measurements import ProbeResult
    from preflight.engine.plan import estimated_step_seconds

    budget = document.get("budget_bytes")
    if not budget or not batch or budget > host_limit_bytes:
        return None
    probes = [ProbeResult.from_dict(p) for p in document["probes"]]
    if estimated_step_seconds(probes, batch) > CONFIRM_MAX_STEP_SECONDS:
        return None
    failed: list[int] = []
    near_limit: dict[int, int] = {}
    for _ in range(CONFIRM_ATTEMPTS):
        status, peaks = _run_in_fresh_processes(baseline_job, batch, budget, on_progress,
                                                (document.get("model") or {}).get("input_bytes_per_sample"),
                                                bool((document.get("device") or {}).get("deterministic")))
        if status is None:
            return None
        if status == "ok":
            return confirmation_record(batch, "ok", max(peaks), budget, failed, process_peaks=peaks,
                                       near_limit=near_limit)
        if status == "near_limit":
            near_limit[batch] = max(peaks)
        else:
            failed.append(batch)
        smaller = step_down(batch)
        if smaller < 1 or smaller >= batch:
            break
        batch = smaller
    return confirmation_record(None, "oom", None, budget, failed, near_limit=near_limit)


def _run_in_fresh_processes(baseline_job: ProbeJob, batch: int, budget: int, on_progress=None,
                            document_input_bytes_per_sample: int | None = None,
                            deterministic: bool = False) -> tuple[str | None, list[int]]:
    """("ok" | "oom" | "near_limit" | None, peaks): `batch` in CONFIRM_PROCESSES fresh children under the
    budget, and one more when a peak passed NEAR_LIMIT_FILL of it (a step squeezed against the limit may
    fit twice and fail a third time: it counts only when all three fit). None: it could not be run.
    A deterministic figure (XLA's buffer assignment on a JAX CPU run) is the same in every process: one."""
    processes, near_limit_processes = (1, 1) if deterministic else (CONFIRM_PROCESSES, NEAR_LIMIT_PROCESSES)
    peaks: list[int] = []
    # model.fit feeds steps through tf.data, which holds the next batches in the same allocator; the probe
    # hands over one batch. Those batches are left out of the limit (an MLP batch of 2,134 ran in the probe
    # under 256 MiB and failed twice under model.fit).
    input_bytes = (document_input_bytes_per_sample or 0) * batch * PREFETCHED_BATCHES
    limit = max(1, budget - input_bytes)
    while len(peaks) < processes or (len(peaks) < near_limit_processes and max(peaks) > NEAR_LIMIT_FILL * limit):
        job = replace(baseline_job, batch_sizes=[batch], adaptive=False, measured_steps=VARIANT_STEPS,
                      memory_limit_bytes=limit, list_variants=False, profile_dir=None, prior_probes=[],
                      readiness=False)
        try:
            probe = next(p for p in run_probes(job, on_progress).probes if p.batch_size == batch)
        except (PreflightError, StopIteration):
            return None, peaks
        if probe.status == "oom":
            return ("near_limit" if peaks else "oom"), peaks
        if probe.status != "ok":
            return None, peaks
        peaks.append(probe.peak_bytes)
    return "ok", peaks


def confirm_batch_sizes(document: dict[str, Any], baseline_job: ProbeJob, host_limit_bytes: int,
                        on_progress=None) -> None:
    """The largest batch, then the recommended one, each run under the budget; failures lower them."""
    from preflight.analysis.predict import friendly_at_most

    largest = confirm_under_budget(document, baseline_job, host_limit_bytes, document.get("max_batch_size"),
                                   lambda b: int(b * MAX_BATCH_STEP_DOWN), on_progress)
    if largest is not None:
        document["max_batch_confirmation"] = largest
        refused = largest["failed_batch_sizes"] + [int(b) for b in largest.get("near_limit") or {}]
        if refused or largest["status"] == "ok":
            document["max_batch_size"] = largest["batch_size"] or max(0, min(refused) - 1)
    top, recommended = document.get("max_batch_size"), document.get("recommended_batch_size")
    if recommended and top is not None and recommended > top:
        document["recommended_batch_size"] = recommended = friendly_at_most(top) if top else None
    if largest is not None and largest["status"] == "ok" and recommended == largest["batch_size"]:
        document["confirmation"] = largest
        return
    confirmation = confirm_under_budget(document, baseline_job, host_limit_bytes, recommended,
                                        lambda b: friendly_at_most(int(b * RECOMMENDED_STEP_DOWN)), on_progress)
    if confirmation is not None:
        document["confirmation"] = confirmation
        if confirmation["failed_batch_sizes"]:
            document["recommended_batch_size"] = confirmation["batch_size"]
