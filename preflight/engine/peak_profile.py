"""What holds memory at the peak: a TensorFlow profiler trace of a few steps, and its memory profile read back.

`capture_profile(step_fn, logdir)` writes `logdir/plugins/profile/<run>/<host>.xplane.pb`, the layout
`tensorboard --logdir logdir` lists under its profile plugin (tensorboard-plugin-profile / xprof).
`read_peak_composition(logdir)` converts that trace with xprof's own `memory_profile` tool and returns
plain data for the report's `"peak_composition"` section:

    {"source": "xprof memory_profile", "allocator": str, "peak_bytes": int, "peak_time_ms": float,
     "phase": "forward"|"loss"|"backward"|"optimizer"|"unknown", "peak_op": str,
     "top_allocations": [{"op", "shape", "bytes", "region", "dtype", "count"}],   # live at the peak
     "preallocated_bytes": int,   # "unused preallocated": weights, slots, buffers made before tracing
     "attributed": bool,          # False when xprof could not map the peak to allocations
     "timeline": [{"time_ms", "bytes_in_use"}]}                                      # <= 200 points

The allocator stats are only complete with TF_CPU_ALLOCATOR_USE_BFC=true set before TensorFlow starts
(the engine's dry-run child does that); this module does not set it. TF is imported inside functions.
"""
from __future__ import annotations

import glob
import json
import os
from pathlib import Path
from typing import Any, Callable

MAX_TIMELINE_POINTS = 200
TOP_ALLOCATIONS = 10
# Name scopes Keras optimizers use for their update ops (the optimizer's `name`).
_OPTIMIZER_SCOPES = ("adam", "adamw", "sgd", "rmsprop", "adagrad", "adadelta", "adamax", "nadam", "ftrl",
                     "lion", "adafactor", "lamb", "loss_scale_optimizer", "muon")
_PREALLOCATED = "unused preallocated device memory"


def capture_profile(step_fn: Callable[[], Any], logdir: str | os.PathLike, steps: int = 1) -> Path:
    """Run `step_fn()` `steps` times under the TF profiler; returns the .xplane.pb file written.

    Call it after a warm-up step, so tracing and slot creation are not in the profile. One step by
    default: xprof's memory_profile takes the step id of the *last* snapshot whose heap equals the peak
    but only replays events up to the *first* time the peak is reached, so when two identical steps hit
    exactly the same peak (common single-threaded) it lists no live allocation at all (`attributed`
    False below). With one traced step the peak belongs to that step.
    """
    import tensorflow as tf

    logdir = str(logdir)
    before = set(_xplane_files(logdir))
    tf.profiler.experimental.start(logdir)
    try:
        for step in range(steps):
            with tf.profiler.experimental.Trace("train", step_num=step + 1, _r=1):
                step_fn()
    finally:
        tf.profiler.experimental.stop()
    new_files = sorted(set(_xplane_files(logdir)) - before, key=os.path.getmtime)
    if not new_files:
        raise RuntimeError(f"the TensorFlow profiler wrote no .xplane.pb under {logdir}")
    return Path(new_files[-1])


def profile_training_step(model, x, y=None, sample_weight=None, logdir: str | os.PathLike = "preflight-profile",
                          steps: int = 1) -> dict[str, Any]:
    """Profile `steps` training steps of an already warmed-up model; return its peak composition.

    For the dry-run child, after its measured steps (the profiler's own overhead must not touch those).
    `tensorboard --logdir LOGDIR` shows the trace under the profile plugin.
    """
    capture_profile(lambda: model.train_on_batch(x, y, sample_weight=sample_weight), logdir, steps=steps)
    optimizer = getattr(model, "optimizer", None)
    inner = getattr(optimizer, "inner_optimizer", None)  # a LossScaleOptimizer's updates run in its scope
    names = [n for n in (getattr(optimizer, "name", None), getattr(inner, "name", None)) if n]
    composition = read_peak_composition(logdir, optimizer_name=names[-1] if names else None)
    composition["logdir"] = str(logdir)
    return composition


def _xplane_files(logdir: str) -> list[str]:
    return glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb"))


def memory_profile_json(xplane_path: str | os.PathLike) -> dict[str, Any]:
    """xprof's memory_profile tool output for one trace file, as a dict."""
    from xprof.convert import raw_to_tool_data

    data, _content_type = raw_to_tool_data.xspace_to_tool_data([str(xplane_path)], "memory_profile", {})
    if isinstance(data, bytes):
        data = data.decode("utf-8")
    return json.loads(data)


def phase_of_op(op_name: str, optimizer_scopes: tuple[str, ...] = _OPTIMIZER_SCOPES) -> str:
    """Which part of a training step an op belongs to, from its TF name scope."""
    if op_name.startswith("gradient_tape/"):
        return "backward"
    first = op_name.split("/", 1)[0].lower()
    if first in optimizer_scopes or first.rstrip("_0123456789") in optimizer_scopes:
        return "optimizer"
    if first.startswith("compile_loss"):
        return "loss"
    if "/" in op_name:
        return "forward"  # ops under the model's own scope, e.g. "sequential_1/conv2d_1/Relu"
    return "unknown"


def read_peak_composition(
    logdir: str | os.PathLike, optimizer_name: str | None = None, top: int = TOP_ALLOCATIONS
) -> dict[str, Any]:
    """The composition of the peak in the newest trace under `logdir` (see the module docstring)."""
    files = sorted(_xplane_files(str(logdir)), key=os.path.getmtime)
    if not files:
        raise FileNotFoundError(f"no profiler trace (*.xplane.pb) under {logdir}/plugins/profile")
    return peak_composition_from_profile(memory_profile_json(files[-1]), optimizer_name, top)


def peak_composition_from_profile(
    profile: dict[str, Any], optimizer_name: str | None = None, top: int = TOP_ALLOCATIONS
) -> dict[str, Any]:
    """Pure part of read_peak_composition: from xprof's memory_profile JSON to the report's dict."""
    allocators = profile.get("memoryProfilePerAllocator") or {}
    if not allocators:
        raise ValueError("the memory profile holds no allocator (was the trace empty?)")
    # The host BFC allocator when present, else the allocator with the highest peak.
    allocator = max(allocators, key=lambda name: (
        "bfc" in name, int(allocators[name]["profileSummary"].get("peakBytesUsageLifetime", 0))))
    per_allocator = allocators[allocator]
    summary = per_allocator["profileSummary"]
    peak_stats = summary.get("peakStats", {})
    peak_bytes = int(peak_stats.get("peakBytesInUse") or peak_stats.get("heapAllocatedBytes") or 0)
    peak_time_ps = int(summary.get("peakStatsTimePs", 0))

    snapshots = per_allocator.get("memoryProfileSnapshots", [])
    specials = per_allocator.get("specialAllocations", [])
    live: dict[tuple[str, str, str], dict[str, Any]] = {}
    preallocated = 0
    for active in per_allocator.get("activeAllocations", []):
        snapshot_index, special_index = int(active.get("snapshotIndex", -1)), int(active.get("specialIndex", -1))
        if snapshot_index >= 0:
            meta = snapshots[snapshot_index]["activityMetadata"]
        elif special_index >= 0:
            meta = specials[special_index]
        else:
            continue
        count = int(active.get("numOccurrences", 1))
        size = int(meta.get("allocationBytes", 0)) * count
        op = meta.get("tfOpName") or "(unnamed)"
        if op == _PREALLOCATED:
            preallocated += size
            continue
        key = (op, meta.get("tensorShape", ""), meta.get("regionType", ""))
        entry = live.setdefault(key, {"op": op, "shape": key[1], "bytes": 0, "region": key[2],
                                      "dtype": meta.get("dataType", ""), "count": 0})
        entry["bytes"] += size
        entry["count"] += count
    top_allocations = sorted(live.values(), key=lambda e: e["bytes"], reverse=True)[:top]

    timeline_events = per_allocator.get("sampledTimelineSnapshots", [])
    start_ps = int(timeline_events[0]["timeOffsetPs"]) if timeline_events else 0
    peak_event = _event_at(timeline_events, peak_time_ps)
    peak_op = (peak_event or {}).get("activityMetadata", {}).get("tfOpName", "")
    scopes = _OPTIMIZER_SCOPES + ((optimizer_name.lower(),) if optimizer_name else ())
    # The peak is reached by one allocation; its op's scope says which phase of the step is running.
    phase = phase_of_op(peak_op, scopes) if peak_op else (
        phase_of_op(top_allocations[0]["op"], scopes) if top_allocations else "unknown")
    return {
        "source": "xprof memory_profile",
        "allocator": allocator,
        "peak_bytes": peak_bytes,
        "peak_time_ms": round((peak_time_ps - start_ps) / 1e9, 3),
        "phase": phase,
        "peak_op": peak_op,
        "top_allocations": top_allocations,
        "preallocated_bytes": preallocated,
        "attributed": bool(live),
        "timeline": sample_timeline(timeline_events, start_ps),
    }


def _event_at(events: list[dict[str, Any]], time_ps: int) -> dict[str, Any] | None:
    """The allocation that set the peak: the event at peakStatsTimePs (or the last one before it)."""
    best = None
    for event in events:
        offset = int(event.get("timeOffsetPs", 0))
        if offset > time_ps:
            break
        best = event
    return best


def sample_timeline(events: list[dict[str, Any]], start_ps: int = 0,
                    max_points: int = MAX_TIMELINE_POINTS) -> list[dict[str, float | int]]:
    """[{"time_ms", "bytes_in_use"}], at most `max_points`, keeping each bucket's maximum so the peak survives."""
    points = [
        ((int(e["timeOffsetPs"]) - start_ps) / 1e9,
         int(e["aggregationStats"].get("heapAllocatedBytes", 0)) + int(e["aggregationStats"].get("stackReservedBytes", 0)))
        for e in events
    ]
    if len(points) > max_points:
        bucket = -(-len(points) // max_points)
        points = [max(points[i:i + bucket], key=lambda p: p[1]) for i in range(0, len(points), bucket)]
    return [{"time_ms": round(t, 3), "bytes_in_use": b} for t, b in points]


__all__ = ["capture_profile", "memory_profile_json", "peak_composition_from_profile", "phase_of_op",
           "profile_training_step", "read_peak_composition", "sample_timeline"]
