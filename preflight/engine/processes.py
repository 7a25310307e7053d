"""Measuring the planned batch in more than one fresh process.

The same training step's peak differs between fresh processes far more than between steps of one
process (the executor schedules ops differently each start: a text transformer read 815-1001 MiB at
batch 128 in three processes, a U-Net 246-313 MiB at batch 48), so one process cannot see the spread a
real run may meet. The planned batch is measured again in fresh children; its probe then holds the
runs of every process, its peak is the max over them, and the spread between processes widens the
prediction's margin (preflight.analysis.predict takes the probes' spread as its run-to-run margin).

The first of those processes measures the small end of round 1 (1 and B/4) before the planned batch: a
smaller step after a larger one in the same process reads high (EfficientNetB0 at 64x64, batch 8: 128-134
MiB after 32 and 16, 121-127 first in a fresh process, model.fit 123), which put the curve at batches 2-4
8-12 % over fit's. Those readings replace the first child's; B itself stays first in the first child.
"""
from __future__ import annotations

import threading
from dataclasses import replace

from preflight.analysis.per_device import shares_one_allocator
from preflight.errors import PreflightError
from preflight.common.measurements import DeviceInfo, ProbeResult
from preflight.engine.runner import Cancelled, ProbeJob, ProbeOutcome, run_probes

REPEAT_STEPS = 2
FIT_STEPS = 3  # model.fit's steps, as the largest batch's confirming runs take them (whatif.recommend)
REPEAT_MAX_STEP_SECONDS = 30.0  # slower steps are not repeated: the wait would dwarf the rest of the check
PROCESS_BASE_BYTES = 2 * 2**30  # a child with TensorFlow imported and a model built: 1.7 GiB RSS (MobileNetV2)


class PlannedRepeats:
    """The planned batch's other fresh processes, started as soon as the first child has measured it; the
    first of them measures round 1's sizes under B/2 first, smallest first, then B.

    They run beside the first child's smaller probes (on another thread, each in its own process and
    allocator, so neither measurement sees the other), when the host has room for a second process of that
    size; else after the first child, one at a time. Use `watch` as the first child's progress callback,
    then `fold_into(outcome)`; `stop()` in a `finally` kills a repeat still running."""

    def __init__(self, job: ProbeJob, on_progress, processes: int):
        self.job, self.processes = job, processes
        self._show = on_progress or (lambda event: None)
        self._lock = threading.Lock()          # the display hears both threads
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._device: DeviceInfo | None = None
        self._results: list[ProbeResult | None] = []
        self._small_end: dict[int, ProbeResult] = {}  # measured first in a fresh process, by batch size

    def show(self, event: dict) -> None:
        with self._lock:
            self._show(event)

    def watch(self, event: dict) -> None:
        self.show(event)
        if event.get("event") == "model":
            self._device = DeviceInfo.from_dict(event["device"])
        elif event.get("event") == "probe" and self._thread is None and self._wanted(event["probe"]):
            if host_room_for(event["probe"].get("peak_bytes") or 0):
                self._thread = threading.Thread(target=self._run, daemon=True, name="preflight-repeats")
                self._thread.start()

    def _wanted(self, probe: dict) -> bool:
        return (self.processes > 1 and probe["batch_size"] == self.job.planned_batch_size
                and probe["status"] == "ok" and (probe.get("step_seconds") or 0) <= REPEAT_MAX_STEP_SECONDS
                and self._device is not None and not self._device.deterministic)

    def _run(self) -> None:
        # Replicas on logical CPUs of one allocator (a MirroredStrategy): fit's distributed dataset holds its
        # per-replica batches in the allocator the step uses, a visible share of a small model's peak (a 220 KB
        # step read 15-20 % over the probe's): the other processes run model.fit itself (engine.probe.fit_probe).
        under_fit = self._device is not None and shares_one_allocator(self._device, self._device.replicas)
        planned = self.job.planned_batch_size
        repeat = replace(self.job, batch_sizes=[planned], adaptive=False,
                         measured_steps=FIT_STEPS if under_fit else REPEAT_STEPS, as_fit=under_fit,
                         list_variants=False, profile_dir=None, prior_probes=[], readiness=False,
                         length_curve=False)
        # Smallest first: a step after a larger one reads high, one after a quarter its size reads as it does
        # first (MobileNetV2 at 32: 403-425 MiB after 1 and 8, 396-412 first; 445 after 16).
        small_end = sorted(b for b in self.job.batch_sizes if 2 * b < planned)
        for index in range(self.processes - 1):
            outcome = self._repeat(replace(repeat, batch_sizes=small_end + [planned] if index == 0 else [planned]))
            if outcome is None and index == 0 and small_end and not self._cancel.is_set():
                # A small size failed before B ran (a step that cannot train on one sample): B again, alone.
                outcome = self._repeat(replace(repeat, batch_sizes=[planned]))
            if outcome is None:
                return  # the first process measured it; a failing repeat adds nothing to trust
            self._results.append(next((p for p in outcome.probes if p.batch_size == planned), None))
            self._small_end.update({p.batch_size: p for p in outcome.probes
                                    if p.batch_size in small_end and p.status == "ok"})

    def _repeat(self, job: ProbeJob) -> ProbeOutcome | None:
        try:
            return run_probes(job, self.show, cancel=self._cancel)
        except (PreflightError, Cancelled):
            return None

    def fold_into(self, outcome: ProbeOutcome) -> None:
        """Wait for the repeats (or run them now, when none started) and fold them into the planned probe."""
        index = next((i for i, p in enumerate(outcome.probes)
                      if p.batch_size == self.job.planned_batch_size and p.status == "ok"), None)
        if index is None or outcome.device.deterministic:
            self.stop()
            return
        if self._thread is None:
            self._device = self._device or outcome.device
            if not self._wanted(outcome.probes[index].to_dict()):
                return
            self._run()
        else:
            self._thread.join()
        for probe in self._results:
            outcome.probes[index] = merge_processes(outcome.probes[index], probe)
        for i, probe in enumerate(outcome.probes):
            fresh = self._small_end.get(probe.batch_size)
            if fresh is not None and probe.status == "ok":
                note = f"{probe.peak_bytes} bytes after larger steps in the first process"
                outcome.probes[i] = replace(fresh, message=_with_note(fresh.message, note))

    def stop(self) -> None:
        self._cancel.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def host_room_for(peak_bytes: int) -> bool:
    """Whether the host can hold a second process of this size beside the first child: its step's peak twice
    over (the first child keeps its allocator's regions) and an interpreter with TensorFlow loaded."""
    import psutil

    return psutil.virtual_memory().available >= 2 * peak_bytes + PROCESS_BASE_BYTES


def merge_processes(first: ProbeResult, repeat: ProbeResult | None) -> ProbeResult:
    """One probe over several processes: every run kept, the peak the max, the count of processes.

    A repeat that ran out of memory where the first process did not is kept as that probe's message:
    under the same limit, the step does not always fit."""
    if repeat is None:
        return first
    if repeat.status != "ok":
        note = f"another fresh process: {repeat.status} ({repeat.message})"
        return replace(first, message=_with_note(first.message, note),
                       processes=first.processes + 1, status="oom" if repeat.status == "oom" else first.status)
    runs = list(first.peak_bytes_runs) + list(repeat.peak_bytes_runs)
    return replace(first, peak_bytes=max(runs), peak_bytes_runs=runs, processes=first.processes + 1,
                   process_peaks=list(first.process_peaks or [first.peak_bytes]) + [repeat.peak_bytes])


def _with_note(message: str | None, note: str) -> str:
    """A probe's own message with what another process showed appended."""
    return "; ".join(m for m in (message, note) if m)
