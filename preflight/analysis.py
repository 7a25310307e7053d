"""From measurements to the report document: peak, verdict, footprint, curve, recommendation, findings.

Pure: takes what the dry run measured (a ProbeOutcome) and the run's settings, returns the format-1
document described in preflight.report. No TensorFlow here.

The verdict uses an upper bound: the measured max (or the prediction) plus the margin preflight.predict
states (run-to-run spread, extrapolation), carried to the target device when one is named.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any

import preflight
from preflight.checks import CheckContext, run_checks
from preflight.devices import get_target
from preflight.footprint import PARTS, footprint
from preflight.predict import PeakModel, project_to_target
from preflight.report import FORMAT_VERSION
from preflight.runner import ProbeOutcome


@dataclass(frozen=True)
class RunSettings:
    batch_size: int
    budget_bytes: int | None = None     # an explicit budget; it wins over the target's memory
    target_name: str | None = None
    host_available_bytes: int | None = None
    replicas: int = 1                   # tf.distribute replicas: the batch is global, per replica is B / replicas


def usable_bytes(settings: RunSettings) -> int | None:
    if settings.budget_bytes is not None:
        return settings.budget_bytes
    if settings.target_name:
        return get_target(settings.target_name).usable_bytes
    return None


def build_document(outcome: ProbeOutcome, settings: RunSettings) -> dict[str, Any]:
    model = outcome.model
    batch_size = settings.batch_size
    budget = usable_bytes(settings)
    probe_limit = outcome.device.memory_limit_bytes
    planned = next((p for p in outcome.probes if p.batch_size == batch_size and p.status == "ok"), None)
    peak_model = None
    if any(p.status == "ok" for p in outcome.probes):
        peak_model = PeakModel(outcome.probes, min_bytes_per_sample=model.input_bytes_per_sample,
                               graph_estimates=outcome.graph_estimates, memory_limit_bytes=probe_limit)

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
            "param_bytes": model.param_bytes,
            "optimizer_bytes": model.optimizer_bytes,
            "input_bytes_per_sample": model.input_bytes_per_sample,
        },
        "device": outcome.device.to_dict(),
        "data": outcome.data,
        "target": None,
        "batch_size": batch_size,
        "peak_bytes": planned.peak_bytes if planned else None,
        "peak_source": "measured" if planned else "predicted",
        "peak_upper_bytes": None,
        "peak_method": None,
        "probes": [p.to_dict() for p in sorted(outcome.probes, key=lambda p: p.batch_size)],
        "graph_estimates": {str(b): v for b, v in sorted(outcome.graph_estimates.items())},
        "layers": [layer.to_dict() for layer in model.layers],
        "budget_bytes": budget,
        "fits": None,
        "findings": [],
    }
    verdict_bytes = None
    if peak_model is not None:
        prediction = peak_model.predict_peak(batch_size)
        if planned is None:
            document["peak_bytes"] = prediction.peak_bytes
        document["peak_upper_bytes"] = prediction.peak_bytes
        document["peak_method"] = prediction.method
        verdict_bytes = prediction.peak_bytes
        if settings.target_name:
            target = get_target(settings.target_name)
            projection = project_to_target(prediction, target, outcome.device.kind, replicas=settings.replicas)
            document["target"] = {**target.to_dict(), "projection": projection.to_dict()}
            verdict_bytes = projection.peak_bytes
        document.update(_batch_recommendation(peak_model, batch_size, budget, outcome))
    elif settings.target_name:
        document["target"] = get_target(settings.target_name).to_dict()

    parts, sources = footprint(model, batch_size, document["peak_bytes"], document["peak_source"])
    document["footprint"] = {part: int(parts[part]) for part in PARTS}
    document["footprint_sources"] = sources
    document["fits"] = _verdict(verdict_bytes, outcome.probes, batch_size, budget, probe_limit)
    document["findings"] = run_checks(CheckContext(document, settings.host_available_bytes))
    return document


def confirmation_record(batch_size: int | None, status: str, measured_peak_bytes: int | None,
                        limit_bytes: int | None, failed_batch_sizes: list[int] | None = None) -> dict[str, Any]:
    """The document's "confirmation" of a batch size by a real step, whichever way it was run."""
    return {"batch_size": batch_size, "status": status, "measured_peak_bytes": measured_peak_bytes,
            "limit_bytes": limit_bytes, "failed_batch_sizes": list(failed_batch_sizes or [])}


def _batch_recommendation(peak_model: PeakModel, batch_size: int, budget: int | None,
                          outcome: ProbeOutcome) -> dict[str, Any]:
    """The curve, and (with a budget) the largest and a recommended batch, confirmed where probed."""
    sizes = {batch_size}
    top = 2 * batch_size
    result: dict[str, Any] = {"max_batch_size": None, "recommended_batch_size": None, "confirmation": None}
    if budget is not None:
        max_batch = peak_model.max_batch_size(budget)
        recommended = peak_model.recommended_batch_size(max_batch, budget)
        result.update(max_batch_size=max_batch, recommended_batch_size=recommended)
        sizes |= {b for b in (max_batch, recommended) if b}
        top = max(top, int((max_batch or 1) * 1.25))
        confirming = next((p for p in outcome.probes if p.batch_size == recommended), None)
        if confirming is not None:
            result["confirmation"] = confirmation_record(recommended, confirming.status, confirming.peak_bytes,
                                                         outcome.device.memory_limit_bytes)
    power = 1
    while power <= top:
        sizes.add(power)
        power *= 2
    result["curve"] = peak_model.curve(sorted(sizes))
    return result


def _verdict(verdict_bytes: int | None, probes, batch_size: int, budget: int | None,
             probe_limit: int | None) -> bool | None:
    if budget is None:
        return None
    # Out of memory at this batch or a smaller one, under a limit at least as large as the budget.
    ran_out = any(p.status == "oom" and p.batch_size <= batch_size for p in probes)
    if ran_out and probe_limit is not None and probe_limit >= budget:
        return False
    if verdict_bytes is not None:
        return verdict_bytes <= budget
    return None


def search_document(section: dict[str, Any], name: str) -> dict[str, Any]:
    """The report document of a keras-tuner search check: the verdict is the worst case's."""
    worst = section.get("worst_case") or {}
    return {
        "format": FORMAT_VERSION,
        "preflight_version": preflight.__version__,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": {"name": name, "params_total": worst.get("params_total")},
        "device": {"kind": "CPU", "name": "dry-run children (BFC allocator)", "allocator": "BFC"},
        "batch_size": section.get("batch_size"),
        "peak_bytes": worst.get("peak_bytes"),
        "peak_source": worst.get("peak_source", "predicted"),
        "footprint": {},
        "probes": [],
        "layers": [],
        "budget_bytes": section.get("budget_bytes"),
        "fits": worst.get("fits"),
        "findings": list(section.get("findings") or []),
        "search": section,
    }
