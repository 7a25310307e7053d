"""From measurements to the report document: peak, verdict, footprint, curve, recommendation, findings.

Pure: takes what the dry run measured (a ProbeOutcome) and the run's settings, returns the format-1
document described in preflight.render.report. No TensorFlow here.

The verdict uses an upper bound: the measured max (or the prediction) plus the margin preflight.analysis.predict
states (run-to-run spread, extrapolation), carried to the target device when one is named.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, replace
from typing import Any, Sequence

from preflight.common.version import __version__
from preflight.analysis.checks import CheckContext, run_checks
from preflight.analysis.devices import get_target
from preflight.analysis.footprint import OPTIONAL_PARTS, PARTS, footprint
from preflight.analysis.host import array_copy_pipeline, host_section
from preflight.analysis.lengths import length_section
from preflight.analysis.per_device import (one_device_measured, per_device_prediction, per_device_section,
                                          shares_one_allocator)
from preflight.analysis.predict import PeakModel, is_recurrent, project_to_target, run_margin_floor
from preflight.common.measurements import ModelInfo, ProbeOutcome, ProbeResult
from preflight.common.units import format_bytes

FORMAT_VERSION = 1  # of the document; a saved report of another format is refused (preflight.render.report)


@dataclass(frozen=True)
class RunSettings:
    batch_size: int
    budget_bytes: int | None = None     # an explicit budget; it wins over the target's memory
    target_name: str | None = None
    host_available_bytes: int | None = None
    host_budget_bytes: int | None = None  # --host-budget: the host RAM a GPU/TPU run's input pipeline may use
    host_budget_source: str | None = None
    replicas: int = 1                   # tf.distribute replicas: the batch is global, per replica is B / replicas
    launch: dict | None = None          # preflight.engine.launch.launch_section: plan, GPU settings, versions


def usable_bytes(settings: RunSettings) -> int | None:
    if settings.budget_bytes is not None:
        return settings.budget_bytes
    if settings.target_name:
        return get_target(settings.target_name).usable_bytes
    return None


def backend_record(device) -> dict[str, Any]:
    """The Keras backend the steps ran under, its version here, and how the peak was read."""
    from importlib import metadata

    try:
        version = metadata.version(device.backend)  # the backend's name is its package's
    except metadata.PackageNotFoundError:
        version = None
    return {"name": device.backend, "version": version, "method": device.method or device.allocator}


def build_document(outcome: ProbeOutcome, settings: RunSettings, model_name: str = "model",
                   search_points: Sequence[ProbeResult] = (),
                   squeezed: Sequence[ProbeResult] = ()) -> dict[str, Any]:
    """`search_points`: sizes the largest-batch search ran in fresh processes (model.fit under the budget,
    whatif.recommend): measured points of the curve beside the probes; `squeezed`: sizes it ran against the
    limit, lower bounds of the curve (`split_search_runs`)."""
    model = outcome.model or _unknown_model(model_name)
    batch_size = settings.batch_size
    budget = usable_bytes(settings)
    readiness = outcome.readiness or {}
    # A model built under a strategy: its replicas share the planned (global) batch.
    replicas = max(settings.replicas, (readiness.get("distribution") or {}).get("replicas", 1),
                   outcome.device.replicas)
    probe_limit = outcome.device.memory_limit_bytes
    planned = next((p for p in outcome.probes if p.batch_size == batch_size and p.status == "ok"), None)
    peak_model = None
    recurrent = is_recurrent(layer.type for layer in model.layers)
    static_buffers = model.jit_compile or outcome.device.deterministic  # XLA: the same peak in every process
    if any(p.status == "ok" for p in outcome.probes):
        peak_model = curve_model(outcome.probes, search_points, squeezed,
                                 input_bytes_per_sample=model.input_bytes_per_sample,
                                 largest_output_bytes_per_sample=max(
                                     (layer.activation_bytes_per_sample for layer in model.layers), default=0),
                                 graph_estimates=outcome.graph_estimates, memory_limit_bytes=probe_limit,
                                 static_buffers=static_buffers, recurrent=recurrent)

    document: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "preflight_version": __version__,
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
        "backend": backend_record(outcome.device),
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
        "floor": floor_record(model, outcome.floor),
        "load_oom": outcome.load_oom,
        "fits_at_no_batch": _fits_at_no_batch(outcome, budget),
        "fits": None,
        "findings": [],
        "replicas": replicas,
        "per_replica_batch_size": -(-batch_size // replicas),
        "readiness": readiness,
        "launch": settings.launch,
    }
    verdict_bytes = None
    target_kind = get_target(settings.target_name).kind if settings.target_name else None
    pipeline = ((outcome.data or {}).get("pipeline")
                or array_copy_pipeline(outcome.data, outcome.device.backend, model.input_bytes_per_sample))
    provisional = host_section(pipeline, outcome.device.kind, target_kind, None, None, None)
    pipeline_on_host = provisional["pipeline_bytes"] if provisional and provisional["step_on_host"] else 0
    if pipeline_on_host and budget is not None and document["fits_at_no_batch"] is False:
        batch_one = next((p for p in outcome.probes if p.batch_size == 1 and p.status == "ok"), None)
        document["fits_at_no_batch"] = batch_one is not None and batch_one.peak_bytes + pipeline_on_host > budget
    if peak_model is not None:
        prediction = peak_model.predict_peak(batch_size)
        if planned is None:
            document["peak_bytes"] = prediction.peak_bytes
        document["peak_upper_bytes"] = prediction.peak_bytes
        document["peak_method"] = prediction.method
        verdict_bytes = prediction.peak_bytes
        shared = shares_one_allocator(outcome.device, replicas)
        if shared or one_device_measured(outcome.device):
            # Several devices stepped at once (preflight.analysis.per_device): on logical devices of one
            # allocator the total is measured and each device's share derived from it (the budget is their
            # total); a JAX SPMD step's figure is one device's (the budget is each device's).
            device_budget = (get_target(settings.target_name).usable_bytes if settings.target_name
                             else None if budget is None else budget // replicas if shared else budget)
            total = prediction
            if shared and pipeline_on_host:  # the pipeline (fit's copy of NumPy arrays) is in the same allocator
                total = replace(prediction, peak_bytes=prediction.peak_bytes + pipeline_on_host,
                                method=f"{prediction.method}; + {format_bytes(pipeline_on_host)} the input "
                                       "pipeline holds in the same memory")
            document["per_device"] = per_device_section(total, outcome.device, replicas, outcome.device.strategy,
                                                        device_budget)
        if settings.target_name:
            target = get_target(settings.target_name)
            one_device = per_device_prediction(prediction, replicas) if shared else prediction
            projection = project_to_target(one_device, target, outcome.device.kind, replicas=replicas)
            document["target"] = {**target.to_dict(), "projection": projection.to_dict()}
            verdict_bytes = projection.peak_bytes
        document.update(_batch_recommendation(peak_model, batch_size, _step_budget(budget, pipeline_on_host),
                                              outcome))
    elif settings.target_name:
        document["target"] = get_target(settings.target_name).to_dict()

    parts, sources = footprint(model, batch_size, document["peak_bytes"], document["peak_source"])
    document["footprint"] = {part: int(parts[part]) for part in PARTS + OPTIONAL_PARTS if part in parts}
    if outcome.floor and outcome.model and not outcome.probes:
        # Nothing was allocated: the model was sized from a shape-only build.
        sources.update(parameters="static (shapes)", optimizer="static (shapes)")
    document["footprint_sources"] = sources
    document["fits"] = _verdict(verdict_bytes, outcome.probes, batch_size, budget, probe_limit)
    host_budget = None
    if settings.host_budget_bytes is not None:
        host_budget = (settings.host_budget_bytes, settings.host_budget_source or "--host-budget")
    elif settings.host_available_bytes is not None:
        host_budget = (settings.host_available_bytes, "this host's available memory (psutil)")
    document["host"] = host_section(pipeline, outcome.device.kind, target_kind, verdict_bytes, budget, host_budget)
    if document["host"] and document["host"]["fits"] is False:
        document["fits"] = False  # the pipeline (with the step, on a CPU) is over the host's memory
    if budget is not None and (document["fits_at_no_batch"] or document["floor"]["total_bytes"] > budget
                               or outcome.load_oom):
        document["fits"] = False
    lengths = length_section(outcome, batch_size, _step_budget(budget, pipeline_on_host),
                             run_margin_floor(static_buffers, outcome.probes, recurrent))
    if lengths is not None:
        document["length_curve"] = lengths
    document["findings"] = run_checks(CheckContext(document, settings.host_available_bytes))
    return document


# A peak near the limit it ran under may have been squeezed against it (the allocator retries a failed request
# once others are freed): the recommender read 985 MiB under 1 GiB at batch 122,645 and 1021 MiB unlimited at
# 116,256. Such a size tells what fits, not what the step needs.
UNSQUEEZED_FILL = 0.90


def split_search_runs(confirmations: dict[str, Any] | None) -> tuple[list[ProbeResult], list[ProbeResult]]:
    """The sizes the largest-batch search ran in fresh processes (each a probe of several processes; a size
    refused as too near the limit keeps the peak it reached), split by the limit they ran under:

    - fresh: well under it (at most UNSQUEEZED_FILL): the curve is measured there, by model.fit, not predicted;
    - squeezed: over it: what the step needs unlimited is at least what they reached, and their processes
      differed by at least as much as they showed (squeezing only narrows it). The timeseries Transformer's
      three `fit` processes at 12 read 932 to 981 MiB under 1 GiB where its curve, between the points at 8 and
      16, said 944; unlimited, three others read up to 986."""
    fresh: dict[int, list[int]] = {}
    squeezed: dict[int, list[int]] = {}
    for record in (confirmations or {}).values():
        limit = (record or {}).get("limit_bytes") or 0
        runs = [(int(size), [int(p) for p in peaks]) for size, peaks in ((record or {}).get("runs") or {}).items()]
        runs += [(int(size), [int(peak)]) for size, peak in ((record or {}).get("near_limit") or {}).items()]
        for size, peaks in runs:
            if peaks:
                (fresh if max(peaks) <= UNSQUEEZED_FILL * limit else squeezed).setdefault(size, []).extend(peaks)
    return (_as_probes(fresh, "model.fit in fresh processes under the budget"),
            _as_probes(squeezed, "model.fit in fresh processes against the budget's limit"))


def _as_probes(runs: dict[int, list[int]], message: str) -> list[ProbeResult]:
    return [ProbeResult(batch_size=size, status="ok", peak_bytes=max(peaks), peak_bytes_runs=peaks,
                        processes=len(peaks), process_peaks=peaks if len(peaks) > 1 else [], message=message)
            for size, peaks in sorted(runs.items())]


def curve_model(probes: Sequence[ProbeResult], search_points: Sequence[ProbeResult] = (),
                squeezed: Sequence[ProbeResult] = (), *, input_bytes_per_sample: float = 0.0,
                largest_output_bytes_per_sample: int = 0,
                graph_estimates: dict[int, int] | None = None, memory_limit_bytes: int | None = None,
                static_buffers: bool = False, recurrent: bool = False) -> PeakModel:
    """The report's peak curve: the probes and the sizes the largest-batch search ran in fresh processes, with
    the margin's floor those measurements allow; the sizes it ran squeezed against the limit are lower bounds.
    One place, so a replayed report (benchmarks.replay_zoo) is rebuilt exactly as it was made.

    Past the largest measured point the curve grows at least by the input's and by the largest layer output's
    bytes per sample: at batch b that one tensor alone takes b times them. It matters where the probes' own
    growth is lost in their noise: the recommender's batches 256, 512 and 1,024 peaked at 307, 289 and 306 MiB,
    a flat envelope that said batch 16,777,216 fits 1 GiB (its largest output is 1 KiB a sample; about
    100,000 fits)."""
    points = [*probes, *search_points]
    return PeakModel(points, min_bytes_per_sample=max(input_bytes_per_sample or 0.0, largest_output_bytes_per_sample),
                     graph_estimates=graph_estimates, memory_limit_bytes=memory_limit_bytes,
                     min_run_margin=run_margin_floor(static_buffers, points, recurrent), lower_bounds=squeezed,
                     recurrent=recurrent)


def curve_model_of_report(document: dict[str, Any]) -> PeakModel:
    """`curve_model` from a saved report's own measurements (its probes and its confirmations' runs)."""
    model, device = document.get("model") or {}, document.get("device") or {}
    layers = document.get("layers") or []
    largest, recommended = document.get("max_batch_confirmation"), document.get("confirmation")
    # The largest batch's record is also the report's confirmation when its runs confirmed the recommendation
    # (analysis.recommendations.apply_largest): counted twice, a size it ran in one process would replay as two
    # processes that agreed to the byte. The report was made with it once (api: no recommended search then).
    confirmations = {"largest": largest, "recommended": None if recommended == largest else recommended}
    return curve_model([ProbeResult.from_dict(p) for p in document.get("probes") or []],
                       *split_search_runs(confirmations),
                       input_bytes_per_sample=model.get("input_bytes_per_sample") or 0.0,
                       largest_output_bytes_per_sample=max(
                           (layer.get("activation_bytes_per_sample") or 0 for layer in layers), default=0),
                       graph_estimates={int(b): int(v) for b, v in (document.get("graph_estimates") or {}).items()},
                       memory_limit_bytes=device.get("memory_limit_bytes"),
                       static_buffers=bool(model.get("jit_compile") or device.get("deterministic")),
                       recurrent=is_recurrent(layer.get("type", "") for layer in layers))


def _step_budget(budget: int | None, pipeline_on_host: int) -> int | None:
    """What the step may use: on a CPU run the input pipeline's host memory comes off the budget first."""
    if budget is None or not pipeline_on_host:
        return budget
    return max(1, budget - pipeline_on_host)


def floor_record(model: ModelInfo, static: dict | None) -> dict[str, Any]:
    """Parameters + gradients + optimizer state: what the step holds before any activation. From the
    child's shape-only build when it made one (with the largest layers), else from the real variables."""
    if static:
        return {**static, "source": "static (shapes and dtypes, nothing allocated)"}
    return {"parameter_bytes": model.param_bytes, "gradient_bytes": model.trainable_param_bytes,
            "optimizer_bytes": model.optimizer_bytes,
            "total_bytes": model.param_bytes + model.trainable_param_bytes + model.optimizer_bytes,
            "optimizer": model.optimizer, "largest_layers": [], "source": "the model's variables"}


def _fits_at_no_batch(outcome: ProbeOutcome, budget: int | None) -> bool:
    """True when no batch size fits: the floor is over the budget, the model ran out of memory while being
    built, batch 1 ran out of memory under a limit at least as large as the budget, or batch 1's measured
    peak is over the budget."""
    if budget is None:
        return False
    if outcome.load_oom or (outcome.floor and outcome.floor["total_bytes"] > budget and not outcome.probes):
        return True
    limit = outcome.device.memory_limit_bytes
    batch_one = next((p for p in outcome.probes if p.batch_size == 1), None)
    if batch_one is not None and batch_one.status == "ok":
        return batch_one.peak_bytes > budget  # measured, without margin: over even at batch 1
    return (batch_one is not None and batch_one.status == "oom" and not any(p.status == "ok" for p in outcome.probes)
            and (limit is None or limit >= budget))


def _unknown_model(name: str) -> ModelInfo:
    """Stands in when the model could not be built even from shapes: every size unknown (0)."""
    return ModelInfo(name=name, params_total=0, params_trainable=0, params_non_trainable=0, param_bytes=0,
                     trainable_param_bytes=0, param_bytes_by_dtype={}, optimizer="unknown", optimizer_bytes=0,
                     optimizer_slots_per_weight=0.0, input_bytes_per_sample=0, jit_compile=False,
                     dtype_policy="unknown")


def confirmation_record(batch_size: int | None, status: str, measured_peak_bytes: int | None,
                        limit_bytes: int | None, failed_batch_sizes: list[int] | None = None,
                        process_peaks: list[int] | None = None,
                        near_limit: dict[int, int] | None = None) -> dict[str, Any]:
    """The document's "confirmation" of a batch size by a real step, whichever way it was run;
    `process_peaks`: the peak in each fresh process that ran it (the measured peak is their max);
    `near_limit`: batch sizes that ran but too close to the limit to count, with their peaks."""
    return {"batch_size": batch_size, "status": status, "measured_peak_bytes": measured_peak_bytes,
            "limit_bytes": limit_bytes, "failed_batch_sizes": list(failed_batch_sizes or []),
            "process_peaks": list(process_peaks or ([measured_peak_bytes] if measured_peak_bytes else [])),
            "near_limit": {str(b): int(p) for b, p in (near_limit or {}).items()}}


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
        "preflight_version": __version__,
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
