"""Measuring the planned batch in more than one fresh process.

The same training step's peak differs between fresh processes far more than between steps of one
process (the executor schedules ops differently each start: a text transformer read 815-1001 MiB at
batch 128 in three processes, a U-Net 246-313 MiB at batch 48), so one process cannot see the spread a
real run may meet. The planned batch is measured again in fresh children; its probe then holds the
runs of every process, its peak is the max over them, and the spread between processes widens the
prediction's margin (preflight.analysis.predict takes the probes' spread as its run-to-run margin).
"""
from __future__ import annotations

from dataclasses import replace

from preflight.analysis.per_device import shares_one_allocator
from preflight.errors import PreflightError
from preflight.common.measurements import ProbeResult
from preflight.engine.runner import ProbeJob, ProbeOutcome, run_probes

REPEAT_STEPS = 2
FIT_STEPS = 3  # model.fit's steps, as the largest batch's confirming runs take them (whatif.recommend)
REPEAT_MAX_STEP_SECONDS = 30.0  # slower steps are not repeated: the wait would dwarf the rest of the check


def repeat_planned_batch(job: ProbeJob, outcome: ProbeOutcome, on_progress, processes: int) -> None:
    """Measure the planned batch in `processes - 1` more fresh children (the first is the probe child) and fold
    them into its probe. How many is the `processes` setting (preflight.settings.config, default 2)."""
    planned = job.planned_batch_size
    index = next((i for i, p in enumerate(outcome.probes) if p.batch_size == planned and p.status == "ok"), None)
    if index is None or (outcome.probes[index].step_seconds or 0) > REPEAT_MAX_STEP_SECONDS:
        return
    # Replicas on logical CPUs of one allocator (a MirroredStrategy): fit's distributed dataset holds its
    # per-replica batches in the allocator the step uses, a visible share of a small model's peak (a 220 KB
    # step read 15-20 % over the probe's): the other processes run model.fit itself (engine.probe.fit_probe).
    under_fit = outcome.device is not None and shares_one_allocator(outcome.device, outcome.device.replicas)
    for _ in range(processes - 1):
        repeat = replace(job, batch_sizes=[planned], adaptive=False,
                         measured_steps=FIT_STEPS if under_fit else REPEAT_STEPS, as_fit=under_fit,
                         list_variants=False, profile_dir=None, prior_probes=[], readiness=False,
                         length_curve=False)
        try:
            probe = next((p for p in run_probes(repeat, on_progress).probes if p.batch_size == planned), None)
        except PreflightError:
            return  # the first process measured it; a failing repeat adds nothing to trust
        outcome.probes[index] = merge_processes(outcome.probes[index], probe)


def merge_processes(first: ProbeResult, repeat: ProbeResult | None) -> ProbeResult:
    """One probe over several processes: every run kept, the peak the max, the count of processes.

    A repeat that ran out of memory where the first process did not is kept as that probe's message:
    under the same limit, the step does not always fit."""
    if repeat is None:
        return first
    if repeat.status != "ok":
        note = f"another fresh process: {repeat.status} ({repeat.message})"
        return replace(first, message="; ".join(m for m in (first.message, note) if m),
                       processes=first.processes + 1, status="oom" if repeat.status == "oom" else first.status)
    runs = list(first.peak_bytes_runs) + list(repeat.peak_bytes_runs)
    return replace(first, peak_bytes=max(runs), peak_bytes_runs=runs, processes=first.processes + 1,
                   process_peaks=list(first.process_peaks or [first.peak_bytes]) + [repeat.peak_bytes])
