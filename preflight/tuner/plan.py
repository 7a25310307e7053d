"""`check_search`: the report's `"search"` section, computed before `tuner.search` starts.

Owns the section's shape and its findings. The section (all bytes ints, all times seconds):

    {"hyperparameters": [HyperparameterInfo.to_dict()], "batch_size", "budget_bytes",
     "worst_case": {"values", "batch_size", "peak_bytes",
                    "peak_source": "measured"|"predicted"|"shapes" (no configuration measured: the
                    shapes-only prior, `margin` included, and no fit verdict), "margin",
                    "predicted_peak_bytes", "measured_peak_bytes", "params_total", "fits"},
     "fits_fraction": float|null (share of sampled configurations predicted to fit; null when nothing
                      was measured),
     "samples": [{"values", "batch_size", "predicted_peak_bytes", "peak_bytes" (= predicted),
                  "peak_source": "predicted", "param_bytes", "fits"}],
     "drivers": [{"name", "effect", "correlation", "active_in"}],
     "bounds": {hp: {"max_fitting_with_others_at_worst", "max_fitting_with_others_smallest", "max_value"},
                "_together": {"values": {hp: value}, "others", "grid_fraction"}},
     "bounds_summary": str|null (the bounds as one sentence), "memory_driver": str|null (top numeric driver),
     "predictor": PeakPredictor.to_dict(),
     "measurements": [{"values", "batch_size", "status": "ok"|"error"|"oom"|"timeout"|"crashed",
                       "peak_bytes", "step_seconds", "message", "fix", ...}] ("error": the user's model,
                       data or loss failed, so the trial would fail),
     "validation": [...],
     "schedule": SearchSchedule.to_dict(), "step_seconds", "time_estimate_seconds",
     "time_estimate_missing": str|null (why there is no time estimate, in plain words),
     "time_limit_seconds", "disk_estimate_bytes", "disk_free_bytes", "directory",
     "timings": {...}, "custom_training": ["BatchSizeTuner.run_trial", ...] (the user's own training code),
     "spread": null | {"tuner_id", "folder", "measured_here", "measured"} (keras-tuner's distributed mode: the
               dry runs shared out over its processes, preflight.tuner.spread; each measurement row then
               has "measured_by"),
     "findings": [{"id", "severity", "message"}]}

`guard(tuner, predictor=<this section>)` reuses the fitted predictor during the search, and
`SearchGuard.to_dict()` is meant to go under `"guard"` in the same section after the search.
"""
from __future__ import annotations

from typing import Any, Callable

from preflight.analysis.search_checks import bounds_sentence, run_search_checks
from preflight.common.units import parse_duration, parse_size
from preflight.tuner.spread import search_fingerprint, shared_folder, spread_measure, tuner_id


def _num_samples(data: Any) -> int | None:
    """Rows in (x, y) array data; None for anything else (give `num_samples`)."""
    if isinstance(data, (tuple, list)) and data:
        try:
            return len(data[0])
        except TypeError:
            return None
    return None


def custom_training(hypermodel_or_tuner: Any) -> list[str]:
    """'BatchSizeTuner.run_trial', 'MyHyperModel.fit': training code of the user's that preflight does not
    run (it builds each model and runs plain training steps)."""
    from preflight.tuner.space import as_hypermodel

    found = []
    for obj, method in ((hypermodel_or_tuner, "run_trial"), (as_hypermodel(hypermodel_or_tuner), "fit")):
        function = getattr(type(obj), method, None)
        module = getattr(function, "__module__", None) or "keras_tuner"
        if function is not None and module.split(".")[0] not in ("keras_tuner", "preflight"):
            found.append(f"{type(obj).__name__}.{method}")
    return found


def check_search(hypermodel_or_tuner: Any, data: Any = None, *, batch_size: int = 32,
                 budget_bytes: int | str | None = None, time_limit_seconds: float | str | None = None,
                 epochs: int | None = None, max_trials: int | None = None, validation_split: float = 0.0,
                 num_samples: int | None = None, directory: str | None = None, n_samples: int = 200,
                 sample_seconds: float = 60.0, n_measure: int = 5, n_validate: int = 0,
                 measure: Callable[..., list[Any]] | None = None, seed: int = 0,
                 target: str | None = None, time_limit: float | str | None = None) -> dict[str, Any]:
    """Check a whole search space before searching. Returns the report's `"search"` section (see module doc).

    `hypermodel_or_tuner`: a `build_model(hp)` function, a `kt.HyperModel` or a tuner (its schedule and
    directory are used; it is not searched). `measure`: how to dry-run a few configurations (default: a
    fresh BFC child per configuration; `measure.engine_measure(path)` for a tune.py). `target` (a device
    name) stands for its usable memory when no budget is given; `time_limit` is `time_limit_seconds`
    written as '12h'.
    """
    from preflight.tuner.budget import (
        disk_estimate,
        free_disk_bytes,
        search_schedule,
        steps_per_epoch,
        time_estimate,
        tuner_directory,
    )
    from preflight.tuner.predict import analyse_space
    from preflight.tuner.space import as_hypermodel

    if budget_bytes is None and target is not None:
        from preflight.analysis.devices import get_target

        budget_bytes = get_target(target).usable_bytes
    time_limit_seconds = time_limit if time_limit_seconds is None else time_limit_seconds
    budget = None if budget_bytes is None else parse_size(budget_bytes)
    limit = None if time_limit_seconds is None else parse_duration(time_limit_seconds)
    is_tuner = hasattr(hypermodel_or_tuner, "oracle")
    where = directory or (tuner_directory(hypermodel_or_tuner) if is_tuner else None) or "."
    me = tuner_id()
    if me is not None:  # a process of keras-tuner's distributed mode: the dry runs are shared out
        from preflight.tuner.measure import measure_configs

        measure = spread_measure(measure or measure_configs, where,
                                 search_fingerprint(as_hypermodel(hypermodel_or_tuner), batch_size), me)
    analysis = analyse_space(hypermodel_or_tuner, batch_size=batch_size, budget_bytes=budget, data=data,
                             n_samples=n_samples, sample_seconds=sample_seconds, n_measure=n_measure,
                             n_validate=n_validate, measure=measure, seed=seed)
    schedule = search_schedule(hypermodel_or_tuner if is_tuner else None, epochs=epochs, max_trials=max_trials)

    samples_count = num_samples or _num_samples(data)
    steps = steps_per_epoch(samples_count, batch_size, validation_split)
    warmups = sorted(m.get("warmup_seconds") or 0.0 for m in analysis.measurements if m["status"] == "ok")
    overhead = warmups[len(warmups) // 2] if warmups else 0.0
    estimate = (time_estimate(schedule, analysis.step_seconds, steps, overhead)
                if analysis.step_seconds is not None and steps else None)
    missing = []
    if analysis.step_seconds is None:
        missing.append("no dry-run configuration finished a training step, so there is no step time")
    if not steps:
        missing.append("the number of training samples is unknown (pass the data, or num_samples)")

    mean_param_bytes = (int(sum(s["param_bytes"] for s in analysis.samples) / len(analysis.samples))
                        if analysis.samples else analysis.worst_case["features"]["param_bytes"])
    section: dict[str, Any] = {
        "hyperparameters": [info.to_dict() for info in analysis.space],
        "batch_size": batch_size,
        "budget_bytes": budget,
        "worst_case": {k: v for k, v in analysis.worst_case.items() if k != "features"},
        "fits_fraction": analysis.fits_fraction,
        "samples": analysis.samples,
        "drivers": analysis.drivers,
        "bounds": analysis.bounds,
        "bounds_summary": (bounds_sentence(analysis.bounds, batch_size, budget) if budget else None),
        "memory_driver": next((d["name"] for d in analysis.drivers
                               if any(h.name == d["name"] and h.type in ("Int", "Float") for h in analysis.space)),
                              None),
        "predictor": analysis.predictor.to_dict(),
        "measurements": analysis.measurements,
        "validation": analysis.validation,
        "schedule": schedule.to_dict(),
        "step_seconds": analysis.step_seconds,
        "step_seconds_source": "median of the measured configurations, one thread, this CPU",
        "time_estimate_seconds": estimate,
        "time_estimate_missing": "; ".join(missing) if estimate is None else None,
        "time_limit_seconds": limit,
        "disk_estimate_bytes": disk_estimate(schedule, mean_param_bytes),
        "disk_free_bytes": free_disk_bytes(where),
        "directory": where,
        "timings": analysis.timings,
        "custom_training": custom_training(hypermodel_or_tuner),
        # keras-tuner's distributed mode: this process's id and which configurations it measured itself
        "spread": None if me is None else {
            "tuner_id": me, "folder": shared_folder(where),
            "measured_here": sum(1 for m in analysis.measurements if m.get("measured_by") == me),
            "measured": len(analysis.measurements)},
    }
    section["findings"] = run_search_checks(section)
    return section
