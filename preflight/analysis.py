"""From measurements to the report document: verdict, footprint, findings.

Pure: takes what the dry run measured (a ProbeOutcome) and the run's settings, returns the format-1
document described in preflight.report. No TensorFlow here.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any

import preflight
from preflight.checks import CheckContext, run_checks
from preflight.footprint import PARTS, footprint
from preflight.report import FORMAT_VERSION
from preflight.runner import ProbeOutcome


@dataclass(frozen=True)
class RunSettings:
    batch_size: int
    budget_bytes: int | None = None
    target: dict | None = None          # {"name", "kind", "usable_bytes", "description"} when a target was named
    host_available_bytes: int | None = None


def build_document(outcome: ProbeOutcome, settings: RunSettings) -> dict[str, Any]:
    model = outcome.model
    planned = next((p for p in outcome.probes if p.batch_size == settings.batch_size), None)
    peak_bytes = planned.peak_bytes if planned is not None and planned.status == "ok" else None
    parts, sources = footprint(model, settings.batch_size, peak_bytes)
    budget = settings.budget_bytes
    if budget is None and settings.target:
        budget = settings.target["usable_bytes"]
    document: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "preflight_version": preflight.__version__,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": {
            "name": model.name,
            "params_total": model.params_total,
            "params_trainable": model.params_trainable,
            "params_non_trainable": model.params_non_trainable,
            "param_bytes_by_dtype": model.param_bytes_by_dtype,
            "optimizer": model.optimizer,
            "jit_compile": model.jit_compile,
            "dtype_policy": model.dtype_policy,
        },
        "device": outcome.device.to_dict(),
        "data": outcome.data,
        "target": settings.target,
        "batch_size": settings.batch_size,
        "peak_bytes": peak_bytes,
        "peak_source": "measured",
        "footprint": {part: int(parts[part]) for part in PARTS},
        "footprint_sources": sources,
        "probes": [p.to_dict() for p in sorted(outcome.probes, key=lambda p: p.batch_size)],
        "layers": [layer.to_dict() for layer in model.layers],
        "budget_bytes": budget,
        "fits": _verdict(peak_bytes, outcome.probes, settings.batch_size, budget,
                         outcome.device.memory_limit_bytes),
        "findings": [],
    }
    document["findings"] = run_checks(CheckContext(document, settings.host_available_bytes))
    return document


def _verdict(peak_bytes: int | None, probes, batch_size: int, budget: int | None,
             probe_limit: int | None) -> bool | None:
    if budget is None:
        return None
    if peak_bytes is not None:
        return peak_bytes <= budget
    # Out of memory at this batch or a smaller one, under a limit at least as large as the budget.
    ran_out = any(p.status == "oom" and p.batch_size <= batch_size for p in probes)
    if ran_out and probe_limit is not None and probe_limit >= budget:
        return False
    return None
