"""Measure the real training-step peak of a few search configurations with the dry-run engine.

Owns `ConfigMeasurement` and the two `measure` functions `analyse_space` takes: `measure_configs` for
a search space that lives in the caller's process (handed to the child by preflight.engine.handoff) and
`engine_measure(path)` for one a tune.py defines. Both run each configuration in its own engine child
(preflight.engine.runner.run_probes), single-threaded (notes §1: deterministic peaks), with its values as
`hp_values`: a warm-up step, then measured steps with the allocator stats reset before each.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Any

# Measured steps after the warm-up: one for a search space held in this process (what its own child
# measured before the engine took it over), two for a tune.py's configurations.
NOTEBOOK_STEPS = 1
FILE_STEPS = 2


@dataclass(frozen=True)
class ConfigMeasurement:
    values: dict[str, Any]
    batch_size: int
    # "ok"; "error": the user's model, data or loss failed (a trial would fail too);
    # "oom" | "timeout" | "crashed": the dry run itself could not finish (no verdict on the trial)
    status: str
    peak_bytes: int | None = None    # BFC peak of one steady training step
    step_seconds: float | None = None
    warmup_seconds: float | None = None  # first step: build, trace, optimizer slots
    message: str = ""
    fix: str = ""                    # for "error": the advice that fits the message (preflight.engine.step_errors)
    source: str = "measured (dry-run engine, BFC CPU)"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _one_batch(data: Any, batch_size: int) -> Any:
    """The first `batch_size` rows of (x, y) numpy data, tiled if there are fewer; None otherwise
    (the child then synthesizes a batch from the model's inputs and loss)."""
    import numpy as np

    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        return None
    rows = []
    for array in data:
        array = np.asarray(array)
        reps = -(-batch_size // len(array))
        rows.append(np.concatenate([array] * reps)[:batch_size] if reps > 1 else array[:batch_size])
    return tuple(rows)


def measure_configs(hypermodel: Any, configs: list[dict[str, Any]], batch_size: int, data: Any = None,
                    *, timeout_seconds: float = 300.0) -> list[ConfigMeasurement]:
    """Dry-run each configuration of a search space held in this process, each in its own fresh child.
    Order is kept.

    One child per configuration: a child that trained one model keeps hundreds of MiB in the
    allocator after `clear_session` + `gc.collect` (measured: 350-400 MiB after a 460 MiB config),
    which would leak into the next configuration's peak.
    """
    from preflight.engine.handoff import write_hypermodel_handoff

    results = []
    for values in configs:
        config_batch = int(values.get("batch_size", batch_size))
        with tempfile.TemporaryDirectory(prefix="preflight-tuner-") as directory:
            write_hypermodel_handoff(hypermodel, _one_batch(data, config_batch), directory)
            source = {"kind": "hypermodel", "dir": directory, "hp_values": values}
            results.append(_measure_one(source, values, config_batch, NOTEBOOK_STEPS, timeout_seconds, True))
    return results


def engine_measure(path: str | os.PathLike, *, timeout_seconds: float = 300.0, measured_steps: int = FILE_STEPS,
                   single_thread: bool = True):
    """A `measure` for `analyse_space` that runs the search space a tune.py defines: one engine child
    per configuration, its values passed as `hp_values`. `measure_configs` covers objects living in
    a notebook."""
    def measure(hypermodel: Any, configs: list[dict[str, Any]], batch_size: int,
                data: Any = None) -> list[ConfigMeasurement]:
        results = []
        for values in configs:
            source = {"kind": "file", "path": str(path), "hp_values": values}
            results.append(_measure_one(source, values, int(values.get("batch_size", batch_size)),
                                        measured_steps, timeout_seconds, single_thread))
        return results

    return measure


def _measure_one(source: dict, values: dict[str, Any], batch_size: int, measured_steps: int,
                 timeout_seconds: float, single_thread: bool) -> ConfigMeasurement:
    """One configuration through the engine: its probe at `batch_size`, or why there is none."""
    from preflight.errors import EXIT_USER_CODE, PreflightError
    from preflight.engine.runner import ProbeJob, run_probes

    job = ProbeJob(source=source, batch_sizes=[batch_size], measured_steps=measured_steps,
                   timeout_seconds=timeout_seconds, single_thread=single_thread)
    try:
        outcome = run_probes(job)
    except PreflightError as exc:
        if exc.exit_code != EXIT_USER_CODE:
            raise
        # the engine raises for a build or a step that fails on its first batch: the user's error
        return ConfigMeasurement(values=values, batch_size=batch_size, status="error",
                                 message=exc.message[:800], fix=exc.hint or "")
    probe = outcome.probes[0] if outcome.probes else None
    if probe is None and outcome.load_oom:
        return ConfigMeasurement(values=values, batch_size=batch_size, status="oom", message=outcome.load_oom[:800])
    if probe is None or probe.status != "ok":
        return ConfigMeasurement(values=values, batch_size=batch_size, status=probe.status if probe else "crashed",
                                 message=(probe.message if probe else "no probe result")[:800])
    return ConfigMeasurement(values=values, batch_size=batch_size, status="ok", peak_bytes=probe.peak_bytes,
                             step_seconds=probe.step_seconds, warmup_seconds=probe.warmup_seconds,
                             source=measured_by(outcome.device))


def measured_by(device) -> str:
    """Which backend, device and method measured a configuration, for the report's source column."""
    if device is None:
        return ConfigMeasurement.source
    return f"measured (dry-run engine, {device.backend} on {device.kind}: {device.method or device.allocator})"
