"""Per-device figures for a model measured on several devices at once (issue 25).

A model built under a tf.distribute strategy over N logical CPU devices steps the global batch, each
replica its slice; TensorFlow's logical CPU devices share one CPU allocator, so the allocator's peak is the
total over the replicas. One device holds at least total / N at the moment the total peaks (every replica
holds a copy of the weights and optimizer state and a slice of the activations) and at most the total; the
per-device figure is total / N plus `REPLICA_MARGIN` for replicas whose peaks do not coincide and the
all-reduce buffers, never above the total. A GPU or TPU device has its own allocator: its figure is already
one device's, and no section is made. Under JAX with a keras.distribution (DataParallel, ModelParallel) the
step is one SPMD program and XLA's buffer assignment of it is one device's, exactly: the section states
that figure as it is (`one_device_measured`).

May import: preflight.analysis.predict, preflight.common.measurements, preflight.common.units (pure; no TensorFlow).
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from preflight.analysis.predict import MIN_RUN_MARGIN, Prediction
from preflight.common.measurements import DeviceInfo

# Over total / N: on the logical CPUs of this machine a MirroredStrategy step's replicas peak within a few
# percent of each other (benchmarks/distributed_peak.py); the margin covers that and the all-reduce buffers.
REPLICA_MARGIN = 0.10


def shares_one_allocator(device: DeviceInfo, replicas: int) -> bool:
    """The replicas ran on logical devices whose memory the allocator reports as one total."""
    return device.backend == "tensorflow" and device.kind == "CPU" and device.logical_devices > 1 and replicas > 1


def per_device_prediction(total: Prediction, replicas: int) -> Prediction:
    """One device's share of a prediction measured over `replicas` devices sharing one allocator."""
    share = min(total.peak_bytes, math.ceil(total.peak_bytes / replicas * (1 + REPLICA_MARGIN)))
    measured = None if total.measured_bytes is None else math.ceil(total.measured_bytes / replicas)
    # The margin over the measured share, as applied: the run-to-run margin, then the replicas' on top of it
    # (less where the share is capped at the total).
    margin = (share * replicas / total.peak_bytes * (1 + total.margin_fraction) - 1 if total.peak_bytes
              else total.margin_fraction)
    return replace(total, batch_size=-(-total.batch_size // replicas), peak_bytes=share,
                   measured_bytes=measured, margin_fraction=round(margin, 4),
                   method=f"{total.method}; per device: total / {replicas} + {REPLICA_MARGIN:.0%} "
                          f"(replicas share one allocator)")


def above_real_at_most(applied_margin: float, run_to_run_margin: float) -> float:
    """How far above a real run's per-device peak the figure can be: the margin applied over this measurement,
    times the run-to-run margin once more, because that margin works both ways. It says how far one process's
    peak can lie above another's; the applied margin covers a real run above this measurement, and this
    measurement can equally be the high one (on this machine the same MirroredStrategy fit peaks 71-82 MB
    total in three processes, benchmarks/distributed_peak.py), by at least MIN_RUN_MARGIN, the spread two
    processes may not show (a 220 KB step's fit read 186-234 KB over eight processes, where preflight's two
    agreed within 9 %)."""
    return round((1 + applied_margin) * (1 + max(run_to_run_margin, MIN_RUN_MARGIN)) - 1, 4)


def one_device_measured(device: DeviceInfo) -> bool:
    """The figure is already one device's of several: XLA's analysis of a JAX SPMD step."""
    return device.backend == "jax" and bool(device.strategy) and device.logical_devices > 1


def per_device_section(total: Prediction, device: DeviceInfo, replicas: int, strategy: str,
                       device_budget_bytes: int | None) -> dict[str, Any]:
    """The report's `per_device` section: each device's figure and its verdict against its own budget."""
    if one_device_measured(device):
        devices = device.logical_devices
        return {"devices": devices, "strategy": strategy, "device_kind": device.kind,
                "per_replica_batch_size": -(-total.batch_size // max(1, device.replicas)), "total_peak_bytes": None,
                "peak_bytes": total.peak_bytes, "margin_fraction": total.margin_fraction,
                "above_real_at_most_fraction": total.margin_fraction,  # the same bytes in every process
                "source": f"measured: XLA's buffer assignment of the SPMD train step, one device of {devices}",
                "budget_bytes": device_budget_bytes,
                "fits": None if device_budget_bytes is None else total.peak_bytes <= device_budget_bytes}
    one = per_device_prediction(total, replicas)
    margin = f"{one.margin_fraction:.0%} margin ({total.margin_fraction:.0%} run to run, {REPLICA_MARGIN:.0%} replicas)"
    return {
        "devices": replicas,
        "strategy": strategy,
        "device_kind": device.kind,
        "per_replica_batch_size": one.batch_size,
        "total_peak_bytes": total.peak_bytes,
        "peak_bytes": one.peak_bytes,
        "margin_fraction": one.margin_fraction,
        "replica_margin_fraction": REPLICA_MARGIN,
        "above_real_at_most_fraction": above_real_at_most(one.margin_fraction, total.margin_fraction),
        "source": (f"measured: the allocator's peak over {replicas} logical {device.kind} devices sharing one "
                   f"allocator, divided by {replicas}, plus a {margin}"),
        "budget_bytes": device_budget_bytes,
        "fits": None if device_budget_bytes is None else one.peak_bytes <= device_budget_bytes,
    }
