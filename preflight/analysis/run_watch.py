"""The rules a training run is watched by (preflight.keras.MemoryCallback): pure functions of the figures
the callback read, each returning a message when there is trouble ahead, else None.

- near the limit: the memory used is within NEAR_LIMIT_FRACTION (5 %) of the device's memory or the budget;
- a leak: a reading taken at each epoch's end grew at every one of the last LEAK_INCREASES epochs, by at
  least LEAK_MIN_BYTES and LEAK_MIN_FRACTION each time; the first epoch (tracing, the allocator's pool,
  the input pipeline's buffers filling) is left out;
- over time: the measured step time times the steps left, added to the time spent, is over the time limit.
"""
from __future__ import annotations

from typing import Sequence

from preflight.common.units import format_bytes, format_seconds

NEAR_LIMIT_FRACTION = 0.05
LEAK_INCREASES = 3
LEAK_MIN_BYTES = 1 * 2**20
LEAK_MIN_FRACTION = 0.005


def near_limit(used_bytes: int | None, limit_bytes: int | None, what: str, limit_name: str) -> str | None:
    """`what` used `used_bytes` of `limit_bytes` (`limit_name`: 'the 1.0 GiB budget', 'the GPU's memory')."""
    if not used_bytes or not limit_bytes or used_bytes < (1 - NEAR_LIMIT_FRACTION) * limit_bytes:
        return None
    share = used_bytes / limit_bytes
    where = "over the limit" if used_bytes > limit_bytes else f"within {NEAR_LIMIT_FRACTION:.0%} of the limit"
    return (f"{what} reached {format_bytes(used_bytes)}, {share:.0%} of {limit_name} "
            f"({format_bytes(limit_bytes)}): {where}; a longer sequence, a larger last batch or fragmentation can "
            "run it out of memory; a smaller batch or mixed precision gives headroom")


def growing(readings: Sequence[int | None], increases: int = LEAK_INCREASES) -> bool:
    """True when the last `increases` epoch-to-epoch steps of `readings` (one per epoch, the first epoch
    left out) all grew by at least LEAK_MIN_BYTES and LEAK_MIN_FRACTION."""
    series = [r for r in list(readings)[1:] if r is not None]
    if len(series) < increases + 1:
        return False
    tail = series[-(increases + 1):]
    return all(b - a >= max(LEAK_MIN_BYTES, LEAK_MIN_FRACTION * a) for a, b in zip(tail, tail[1:]))


def leak(readings: Sequence[int | None], what: str, increases: int = LEAK_INCREASES) -> str | None:
    """`what`: 'host RSS' or 'the device memory held between epochs'."""
    if not growing(readings, increases):
        return None
    series = [r for r in readings if r is not None]
    per_epoch = (series[-1] - series[-(increases + 1)]) / increases
    values = ", ".join(format_bytes(r) for r in series[-(increases + 1):])
    return (f"{what} grew at each of the last {increases} epochs ({values}; about {format_bytes(per_epoch)} "
            "per epoch): something keeps memory alive from epoch to epoch (a Python list or dict that collects "
            "tensors or arrays, a callback holding the logs, a model or dataset built inside the loop); at this "
            "rate a long run runs out of memory")


def run_seconds(elapsed_seconds: float, step_seconds: float | None, steps_done: int, total_steps: int | None) -> float | None:
    """The whole run's expected time: what it took so far plus the steps left at the measured step time."""
    if step_seconds is None or not total_steps:
        return None
    return elapsed_seconds + max(0, total_steps - steps_done) * step_seconds


def over_time(expected_seconds: float | None, time_limit_seconds: float | None, step_seconds: float | None,
              total_steps: int | None) -> str | None:
    if expected_seconds is None or not time_limit_seconds or expected_seconds <= time_limit_seconds:
        return None
    fraction = time_limit_seconds / expected_seconds
    return (f"the run needs about {format_seconds(expected_seconds)} ({step_seconds:.3g} s per step x "
            f"{total_steps:,} steps), over the {format_seconds(time_limit_seconds)} time limit: about "
            f"{fraction:.0%} of it would finish; save checkpoints (keras.callbacks.BackupAndRestore) to resume, "
            "or train fewer epochs")
