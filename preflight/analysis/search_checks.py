"""A keras-tuner search's findings, one check each, in one registry (issue 22: every finding goes through a
registry): the same shape as preflight.analysis.checks, but a check reads the report's "search" section
(preflight.tuner.plan owns its shape) instead of a run document. Pure: no TensorFlow, no keras-tuner.

A new search check is one function with the @search_check decorator and one test.
"""
from __future__ import annotations

from typing import Any, Callable

from preflight.analysis.checks import CONFIGURATION_FAILED, Finding
from preflight.common.units import format_bytes

KERAS_TUNER_ABORT = "keras-tuner stops the search after 3 failed trials in a row"

SearchCheckResult = Finding | list[Finding] | None
SEARCH_CHECKS: list[Callable[[dict[str, Any]], SearchCheckResult]] = []


def search_check(fn: Callable[[dict[str, Any]], SearchCheckResult]) -> Callable[[dict[str, Any]], SearchCheckResult]:
    SEARCH_CHECKS.append(fn)
    return fn


def run_search_checks(section: dict[str, Any]) -> list[dict[str, str]]:
    findings: list[dict[str, str]] = []
    for fn in SEARCH_CHECKS:
        result = fn(section)
        findings.extend(f.to_dict() for f in (result if isinstance(result, list) else [result] if result else []))
    return findings


def _format_value(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _values_text(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_format_value(v)}" for k, v in values.items())


def bounds_sentence(bounds: dict[str, Any], batch_size: int, budget_bytes: int) -> str | None:
    """'units_i <= 512 and layers <= 2 fit 1.0 GiB together at batch 32 (...)', or None."""
    together = bounds.get("_together")
    if not together:
        return None
    # group a loop's units_0..units_7 into one clause when they share a value
    groups: dict[tuple[str, str], list[str]] = {}
    for name, value in together["values"].items():
        stem = name.rstrip("0123456789").rstrip("_")
        groups.setdefault((stem if stem != name else name, _format_value(value)), []).append(name)
    clauses = []
    for (stem, value), names in groups.items():
        label = f"{stem}_i" if len(names) > 1 else names[0]
        clauses.append(f"{label} <= {value}")
    return (f"{' and '.join(clauses)} fit {format_bytes(budget_bytes)} together at batch {batch_size} "
            f"(other hyperparameters at their worst case)")


def _failing_values(failed: list[dict[str, Any]], ok: list[dict[str, Any]]) -> dict[str, Any]:
    """The hyperparameter values every failing configuration shares and no successful one has."""
    first = failed[0]["values"]
    return {name: value for name, value in first.items()
            if all(m["values"].get(name) == value for m in failed)
            and not any(m["values"].get(name) == value for m in ok)}


@search_check
def configurations_failed(section: dict[str, Any]) -> list[Finding]:
    """Dry-run configurations that failed for the user's reason (an error: the trials will fail the same way),
    one finding per distinct message."""
    measurements = section["measurements"]
    ok = [m for m in measurements if m["status"] == "ok"]
    by_message: dict[str, list[dict[str, Any]]] = {}
    for m in measurements:
        if m["status"] == "error":
            by_message.setdefault(m["message"], []).append(m)
    findings = []
    for message, failed in by_message.items():
        if not ok and len(by_message) == 1:
            scope = (f"every configuration preflight dry-ran failed ({len(failed)} of {len(measurements)}), "
                     f"so the search's trials will fail the same way and {KERAS_TUNER_ABORT}")
            where = f"e.g. {_values_text(failed[0]['values'])}"
        else:
            scope = (f"{len(failed)} of {len(measurements)} dry-run configurations failed; keras-tuner counts "
                     f"each failed trial towards its abort ({KERAS_TUNER_ABORT})")
            shared = _failing_values(failed, ok)
            where = (f"trials with {_values_text(shared)} fail" if shared and ok
                     else f"e.g. {_values_text(failed[0]['values'])}")
        fix = failed[0].get("fix") or ""
        findings.append(Finding(CONFIGURATION_FAILED, "error",
                                f"{scope}: {message} ({where})" + (f". Fix: {fix}" if fix else "")))
    return findings


@search_check
def configurations_unmeasured(section: dict[str, Any]) -> Finding | None:
    """Dry runs that could not finish (a warning: those configurations have no measurement)."""
    measurements = section["measurements"]
    unfinished = [m for m in measurements if m["status"] in ("oom", "timeout", "crashed")]
    if not unfinished:
        return None
    return Finding("search-configuration-unmeasured", "warning",
                   f"{len(unfinished)} of {len(measurements)} dry-run configurations did not finish "
                   f"({', '.join(sorted({m['status'] for m in unfinished}))}: {unfinished[0]['message']}); "
                   f"their peaks are predicted, not measured")


@search_check
def custom_training(section: dict[str, Any]) -> Finding | None:
    if not section["custom_training"]:
        return None
    return Finding("search-custom-training", "warning",
                   f"{' and '.join(section['custom_training'])} is your own training code: preflight "
                   f"builds each configuration and runs plain training steps at batch "
                   f"{section['batch_size']}, so hyperparameters registered there (a batch_size, say) "
                   f"and what it does differently are not checked; pass the largest batch size it "
                   f"can choose (--batch-size, or batch_size=)")


@search_check
def worst_case_does_not_fit(section: dict[str, Any]) -> Finding | None:
    budget, worst = section["budget_bytes"], section["worst_case"]
    if budget is None or worst["fits"] is not False:
        return None
    return Finding("search-worst-case-does-not-fit", "warning",
                   f"the largest configuration needs {format_bytes(worst['peak_bytes'])} "
                   f"({worst['peak_source']}), over the {format_bytes(budget)} budget: "
                   + ", ".join(f"{k}={_format_value(v)}" for k, v in worst["values"].items()))


@search_check
def space_does_not_fit(section: dict[str, Any]) -> Finding | None:
    fraction = section["fits_fraction"]
    if section["budget_bytes"] is None or fraction is None or fraction >= 1.0:
        return None
    return Finding("search-space-does-not-fit", "error" if fraction < 0.5 else "warning",
                   f"{(1 - fraction) * 100:.0f}% of {len(section['samples'])} sampled configurations "
                   f"are predicted not to fit; unguarded, keras-tuner aborts after 3 failed "
                   f"trials in a row: run the search under preflight.guard(tuner, ...)")


@search_check
def bounds_that_fit(section: dict[str, Any]) -> Finding | None:
    budget = section["budget_bytes"]
    if budget is None or section["worst_case"]["fits"] is not False:
        return None
    sentence = bounds_sentence(section["bounds"], section["batch_size"], budget)
    return Finding("search-bounds", "info", sentence) if sentence else None


@search_check
def memory_drivers(section: dict[str, Any]) -> Finding | None:
    drivers = [d for d in section["drivers"] if d["effect"] >= 0.1][:3]
    if not drivers:
        return None
    return Finding("search-drivers", "info",
                   "memory is driven by " + ", ".join(f"{d['name']} (+{d['effect'] * 100:.0f}% across its range)"
                                                     for d in drivers))


@search_check
def search_time(section: dict[str, Any]) -> Finding | None:
    estimate, limit = section["time_estimate_seconds"], section["time_limit_seconds"]
    if estimate is None:
        return Finding("search-time-unknown", "info", f"no search time estimate: {section['time_estimate_missing']}")
    if limit is not None and estimate > limit:
        return Finding("search-time-over-limit", "error",
                       f"the search needs about {estimate / 3600:.1f} h ({section['schedule']['detail']}, "
                       f"{section['step_seconds']:.3g} s per step measured on this CPU), over the "
                       f"{limit / 3600:.1f} h limit")
    return None


@search_check
def checkpoints_over_disk(section: dict[str, Any]) -> Finding | None:
    disk, free = section["disk_estimate_bytes"], section["disk_free_bytes"]
    if disk is None or free is None or disk <= free:
        return None
    return Finding("search-disk-over-free", "error",
                   f"checkpoints need about {format_bytes(disk)}, only {format_bytes(free)} free "
                   f"in {section['directory']}")
