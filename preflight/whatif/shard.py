"""What-if "shard the weights" (issue 25 item 2): where a model's floor (parameters + gradients + optimizer
state) does not fit one device, a Keras `ModelParallel` whose `LayoutMap` splits the largest Dense /
Embedding kernels over the model axis of N devices, measured on N host devices under JAX.

Keras's ModelParallel runs on JAX only, so the variant is always measured under JAX, whatever the user's
backend: a generated model.py sets `XLA_FLAGS=--xla_force_host_platform_device_count=N` and the distribution,
then runs the user's file, and the engine measures it in a fresh child (`run_probes`, backend jax): XLA's
buffer assignment of the SPMD step is one device's (preflight.analysis.per_device). The entry carries the
LayoutMap lines as the snippet. May import the engine and the shared modules (preflight.whatif's rule).
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

SHARDABLE = {"Dense": "kernel", "EinsumDense": "kernel", "Embedding": "embeddings"}
DEVICE_COUNTS = (2, 4, 8)
SMALLEST_SHARE = 0.1  # of the largest kernel's bytes
HOST_HEADROOM = 2  # the host's available memory must hold the floor this many times over to measure it


def propose_layout(floor: dict[str, Any], device_budget_bytes: int) -> dict[str, Any] | None:
    """The layout to try, from the static floor's largest layers: every Dense/Embedding kernel among them
    split on its last axis over a model axis of the fewest devices (2, 4, 8) whose share of the floor fits
    one device (estimated: the split kernels' share of the floor divided by N, the rest replicated); a kernel
    whose last axis does not divide by N stays replicated at that N.
    None when no such layer is there, or when even 8 devices would not bring the estimate under one device
    (EfficientNetB0's floor is mostly convolutions: splitting its 4.9 MiB head cannot fit 81 MiB in 40 MiB)."""
    rows = [r for r in floor.get("largest_layers", []) if r.get("class_name") in SHARDABLE]
    if not rows:
        return None
    # The big kernels only: a small one (an output head) saves little, and its last axis may not divide by N.
    rows = [r for r in rows if r["parameter_bytes"] >= rows[0]["parameter_bytes"] * SMALLEST_SHARE]
    parameter_bytes = max(1, floor["parameter_bytes"])
    per_parameter_byte = floor["total_bytes"] / parameter_bytes  # weight + gradient + optimizer slots
    for devices in DEVICE_COUNTS:
        # JAX refuses a layout whose split axis does not divide by the devices: such a kernel stays replicated.
        split_rows = [r for r in rows if r.get("split_axis_size", devices) % devices == 0]
        split_bytes = sum(r["parameter_bytes"] for r in split_rows) * per_parameter_byte
        if split_rows and floor["total_bytes"] - split_bytes * (1 - 1 / devices) <= device_budget_bytes:
            break
    else:  # even 8 devices leave the replicated rest over one: nothing worth measuring
        return None
    rows = split_rows
    # Keras matches a LayoutMap key against the variable's whole path ("model/layer/kernel", re.fullmatch).
    keys = {f"(.*/)?{re.escape(r['name'])}/{SHARDABLE[r['class_name']]}": (None, "model") for r in rows}
    return {"devices": devices, "layout": keys, "layers": [r["name"] for r in rows],
            "estimated_floor_bytes": int(floor["total_bytes"] - split_bytes * (1 - 1 / devices))}


def snippet(proposal: dict[str, Any]) -> str:
    """The lines that set the proposed distribution up (JAX backend), before the model is built."""
    devices = proposal["devices"]
    lines = ["# Keras's ModelParallel runs on the JAX backend (KERAS_BACKEND=jax)",
             "import jax",
             "import keras",
             f'mesh = keras.distribution.DeviceMesh((1, {devices}), ["batch", "model"], '
             f"devices=jax.devices()[:{devices}])",
             "layout_map = keras.distribution.LayoutMap(mesh)"]
    lines += [f"layout_map[{key!r}] = {axes!r}" for key, axes in proposal["layout"].items()]
    lines += ['distribution = keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch")',
              "keras.distribution.set_distribution(distribution)"]
    return "\n".join(lines)


def wrapper_source(model_file: str | Path, proposal: dict[str, Any]) -> str:
    """A model.py that sets N host devices and the proposed distribution up, then runs the user's file and
    takes over its names (model, data, batch_size, build_model ...), as the loader reads any model.py."""
    return "\n".join([
        "import os",
        f'os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + '
        f'" --xla_force_host_platform_device_count={proposal["devices"]}").strip()',
        snippet(proposal),
        "import runpy",
        f"globals().update({{k: v for k, v in runpy.run_path({str(Path(model_file).resolve())!r}, "
        f'run_name="preflight_sharded").items() if not k.startswith("__")}})',
        ""])


def measure_sharded(model_file: str | Path, floor: dict[str, Any], device_budget_bytes: int, batch_size: int,
                    user_backend: str = "tensorflow", timeout_s: float = 600) -> dict[str, Any] | None:
    """The what-if entry, measured: {"kind": "shard_weights", "title", "devices", "layout", "snippet",
    "peak_bytes" (one device's, measured), "fits", "measured_under", "note"}, or a "status" other than "ok" with
    the message when the sharded step failed; None when the model has no Dense/Embedding kernel to split."""
    from preflight.engine.runner import ProbeJob, run_probes
    from preflight.errors import PreflightError

    proposal = propose_layout(floor, device_budget_bytes)
    if proposal is None:
        return None
    entry = {"kind": "shard_weights", "devices": proposal["devices"], "layout": proposal["layout"],
             "layers": proposal["layers"], "snippet": snippet(proposal), "measured_under": "jax",
             "title": (f"Shard the weights: ModelParallel over {proposal['devices']} devices, "
                       f"{', '.join(proposal['layers'])} split over the model axis"),
             "note": ("measured under JAX on host devices (Keras's ModelParallel is JAX-only)"
                      + ("; your backend is TensorFlow: this needs KERAS_BACKEND=jax" if user_backend == "tensorflow"
                         else ""))}
    with tempfile.TemporaryDirectory(prefix="preflight-shard-") as tmp:
        wrapper = Path(tmp) / "sharded_model.py"
        wrapper.write_text(wrapper_source(model_file, proposal))
        job = ProbeJob(source={"kind": "file", "path": str(wrapper)}, batch_sizes=[batch_size], measured_steps=1,
                       timeout_seconds=timeout_s, single_thread=True, backend="jax")
        try:
            outcome = run_probes(job)
        except PreflightError as exc:
            return {**entry, "status": "error", "message": exc.message}
    probe = outcome.probes[0] if outcome.probes else None
    if probe is None or probe.status != "ok":
        return {**entry, "status": probe.status if probe else "error",
                "message": probe.message if probe else outcome.load_oom or "no probe result"}
    return {**entry, "status": "ok", "peak_bytes": probe.peak_bytes,
            "fits": probe.peak_bytes <= device_budget_bytes,
            "source": f"measured: XLA's buffer assignment of the SPMD train step, one device of {proposal['devices']}"}


def shard_whatif(document: dict[str, Any], job: Any) -> dict[str, Any] | None:
    """The what-if's item for a run's measured list (whatif.recommend's shape: the ranking and the renderers
    take it as they take the others), when the model's floor is over one device (the budget) and the model
    is a model.py; None otherwise. The per-device peak is measured at the planned batch."""
    budget = document.get("budget_bytes")
    floor = document.get("floor") or {}
    if not budget or floor.get("total_bytes", 0) <= budget or (job.source or {}).get("kind") != "file":
        return None
    import importlib.util

    import psutil

    if importlib.util.find_spec("jax") is None:  # Keras's ModelParallel needs JAX; nothing to measure it with
        return None

    # The host devices share this machine's memory: together they hold the whole floor and more.
    if floor["total_bytes"] * HOST_HEADROOM > psutil.virtual_memory().available:
        return None
    backend = (document.get("backend") or {}).get("name") or job.backend
    if not floor.get("largest_layers"):  # a floor read from the built model's variables: the layers from the run
        per_parameter = floor["parameter_bytes"] / max(1, document["model"]["params_total"])
        rows = [{"name": row["name"], "class_name": row["type"], "parameter_bytes": int(row["params"] * per_parameter)}
                for row in document.get("layers") or [] if row.get("params")]
        floor = {**floor, "largest_layers": sorted(rows, key=lambda row: -row["parameter_bytes"])}
    entry = measure_sharded(job.source["path"], floor, budget, document["batch_size"], backend)
    if entry is None:
        return None
    details = {"devices": entry["devices"], "measured_under": "JAX, host devices",
               "layout": {key: list(axes) for key, axes in entry["layout"].items()}}
    item = {"kind": entry["kind"], "title": entry["title"], "snippet": entry["snippet"],
            "tradeoff": (f"needs {entry['devices']} devices; {entry['note']}; the per-device peak is one device's "
                         f"of the SPMD step (XLA's buffer assignment)"),
            "batch_size": document["batch_size"], "details": details}
    if entry["status"] != "ok":
        return {**item, "peak_bytes": None, "status": entry["status"], "message": entry["message"]}
    return {**item, "peak_bytes": entry["peak_bytes"], "step_seconds": None}
