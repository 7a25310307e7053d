"""Which batch sizes the dry run measures, round by round.

Round 1: the planned batch B, then B/2, B/4 and 1 (an out-of-memory at B still leaves points).
If everything ran out of memory: smaller batches, a quarter each time, until one fits. Then, unless the
largest-batch search in fresh processes follows (the job's decision_round off), one decision round: the points that decide the answer (predict.next_probe_batch_sizes: 2B, the predicted
max batch) and the recommended batch, so a recommendation that fits this machine is confirmed by a real
step. The decision round is skipped where it would cost more time than half of everything before it
(its steps, and its memory touched for the first time): the prediction is there to save that time. Pure Python; the child calls it between probes, so one
TensorFlow start serves every round.
"""
from __future__ import annotations

from typing import Sequence

from preflight.common.measurements import ProbeResult
from preflight.analysis.predict import PeakModel, next_probe_batch_sizes

MAX_SHRINK_ROUNDS = 5
DECISION_SHARE = 0.5  # the decision round may add at most half the time spent before it
# A probe's memory is fresh to the process: its first touch costs time the step times of small batches do not
# show (0.5-0.8 GiB/s on this 2-core VM for numpy's first write). A tiny MLP planned for a T4's 15 GiB had its
# predicted largest batch, 4.9 million samples, then 16.8 million probed: 43 s for a 10 s verdict.
FRESH_MEMORY_BYTES_PER_SECOND = 2**30


def first_round(planned_batch_size: int) -> list[int]:
    """Largest first: the planned batch is measured on a fresh allocator, as the real run starts. Earlier
    smaller steps leave the allocator and oneDNN's caches in a state that lowered a CNN's peak by 7 %.
    Batch 1 last: below the smallest probe the curve can only repeat that probe's peak (MobileNetV2 measured
    from batch 8 up was predicted 148 MiB at batch 2, which peaks at 59), and batch 1 costs a trace and
    three small steps.

    The smaller steps after B read high in turn (EfficientNetB0 at 64x64: batch 8 132-134 MiB after 32 and 16,
    119-122 first, model.fit 123 in a fresh process), which puts the curve at batches 2-4 8-12 % over fit's.
    1 and B/4 first, then B, then B/2 was measured in the eleventh zoo draw (README, issue 21) and not kept:
    the CNNs' small end came right (MobileNetV2 at 4: +4.3 %, was +17.1 %), but B after the smaller steps read
    low for a bidirectional LSTM (32: 102.7 MiB, 115.0 first in another process; its largest batch fell short)
    and both ends high for a jit-compiled Xception (1: 147 MiB, 103 after 32; batch 8 +13 %, was +4 %). Nor is
    the order all of it: 1 and 8 first in a process of their own read right alone (64.5-68.0 and 123.4-128.5 MiB)
    and high with two other processes beside them on two cores (69.9-76.2 and 128.3-135.9).
    So where the planned batch is measured in a second process (preflight.engine.processes), that process
    measures 1 and B/4 first, beside the first child only, and its readings are the ones kept (EfficientNetB0:
    1 at 66-68 MiB, 8 at 121.5-126.7; the first child's after larger steps 72-74 and 128-132)."""
    return sorted(set(next_probe_batch_sizes(planned_batch_size)) | {1}, reverse=True)


def length_round(planned_length: int, max_length: int | None = None) -> list[int]:
    """The lengths of a dynamic axis (a sequence length) measured at the planned batch, beside the planned
    length the batch probes already ran: a quarter, a half, twice and four times it, shortest first, none
    past the longest the model accepts (a position embedding's size)."""
    planned = max(1, int(planned_length))
    wanted = {max(1, planned // 4), max(1, planned // 2), 2 * planned, 4 * planned}
    return sorted(n for n in wanted if n != planned and (max_length is None or n <= max_length))


def shrink_round(planned_batch_size: int, probes: Sequence[ProbeResult]) -> list[int]:
    """Smaller batches after everything so far ran out of memory; [] once batch 1 was tried."""
    if any(p.status not in ("ok", "oom") for p in probes):
        return []  # a hang or crash: do not spend more time
    return next_probe_batch_sizes(planned_batch_size, probes)


def decision_round(planned_batch_size: int, probes: Sequence[ProbeResult], *, local_limit_bytes: int | None,
                   usable_bytes: int | None, min_bytes_per_sample: float, measured_steps: int,
                   time_allowance_seconds: float) -> list[int]:
    if any(p.status not in ("ok", "oom") for p in probes):
        return []
    tried = {p.batch_size for p in probes}
    wanted = set(next_probe_batch_sizes(planned_batch_size, probes, local_usable_bytes=local_limit_bytes,
                                        target_usable_bytes=usable_bytes))
    model = PeakModel(probes, min_bytes_per_sample=min_bytes_per_sample, memory_limit_bytes=local_limit_bytes)
    if usable_bytes:
        recommended = model.recommended_batch_size(model.max_batch_size(usable_bytes), usable_bytes)
        if recommended and (local_limit_bytes is None
                            or model.predict_peak(recommended).peak_bytes <= local_limit_bytes):
            wanted.add(recommended)
        if not recommended and model.max_batch_size(usable_bytes) is None:
            wanted.add(1)  # predicted that no batch fits: batch 1 measured makes that a verdict
    oom = [p.batch_size for p in probes if p.status == "oom"]
    chosen, cost = [], 0.0
    for size in sorted(b for b in wanted if b not in tried and (not oom or b < min(oom))):
        probe_cost = (estimated_step_seconds(probes, size) * (measured_steps + 1)
                      + model.predict_peak(size).peak_bytes / FRESH_MEMORY_BYTES_PER_SECOND)
        if cost + probe_cost <= time_allowance_seconds:
            chosen.append(size)
            cost += probe_cost
    return chosen


def estimated_step_seconds(probes: Sequence[ProbeResult], batch_size: int) -> float:
    """Step time at `batch_size`, from the largest measured probe: the growth per sample between the two
    largest on top of it when there are two (a step's fixed cost, such as an optimizer updating a 200,000-row
    embedding table, does not grow with the batch), else scaled with the batch."""
    timed = sorted((p for p in probes if p.status == "ok" and p.step_seconds), key=lambda p: p.batch_size)
    if not timed:
        return 0.0
    largest = timed[-1]
    proportional = largest.step_seconds * batch_size / largest.batch_size
    if batch_size <= largest.batch_size or len(timed) < 2 or timed[-2].batch_size == largest.batch_size:
        return proportional
    below = timed[-2]
    per_sample = max(0.0, (largest.step_seconds - below.step_seconds) / (largest.batch_size - below.batch_size))
    return largest.step_seconds + per_sample * (batch_size - largest.batch_size)
