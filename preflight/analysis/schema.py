"""The report document's shape (format 1): the fields the renderers, `compare`, the baseline diff and the CI
gate read, and the types they read them as. `problems(document)` names every field that does not match, by
its path ("probes[2].status"), so `Report.load` refuses a document those readers would trip on (a hand-edited
report, a cut-down copy, another tool's JSON with a "format" key) instead of failing deep in a renderer.

The fields listed are the ones every run and search document has, and the optional sections' fields that are
read by position or arithmetic; a field not listed here is free (the renderers skip what is absent).
`tests/test_schema.py` checks the documents the checks produce and the saved samples against it.

May import: preflight.common.measurements (pure; no TensorFlow).
"""
from __future__ import annotations

from typing import Any, Callable

from preflight.common.measurements import PROBE_STATUSES

Check = Callable[[Any, str], list[str]]
SEVERITIES = ("info", "warning", "error")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _kind(name: str, test: Callable[[Any], bool]) -> Check:
    return lambda value, path: [] if test(value) else [f"{path}: {name} expected, found {_shown(value)}"]


INT = _kind("a whole number", lambda v: isinstance(v, int) and not isinstance(v, bool))
NUMBER = _kind("a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool))
TEXT = _kind("a string", lambda v: isinstance(v, str))
BOOL = _kind("true or false", lambda v: isinstance(v, bool))


def optional(check: Check) -> Check:
    return lambda value, path: [] if value is None else check(value, path)


def one_of(*allowed: str) -> Check:
    return lambda value, path: [] if value in allowed else [
        f"{path}: one of {', '.join(allowed)} expected, found {_shown(value)}"]


def list_of(item: Check) -> Check:
    def check(value: Any, path: str) -> list[str]:
        if not isinstance(value, list):
            return [f"{path}: a list expected, found {_shown(value)}"]
        return [problem for i, element in enumerate(value) for problem in item(element, f"{path}[{i}]")]
    return check


def mapping_of(item: Check) -> Check:
    """An object whose every value passes `item` (the footprint's parts, say)."""
    def check(value: Any, path: str) -> list[str]:
        if not isinstance(value, dict):
            return [f"{path}: an object expected, found {_shown(value)}"]
        return [problem for key, element in value.items() for problem in item(element, f"{path}.{key}")]
    return check


def record(required: dict[str, Check], present: dict[str, Check] | None = None) -> Check:
    """An object with `required` fields, and `present` ones checked where they are there."""
    def check(value: Any, path: str) -> list[str]:
        if not isinstance(value, dict):
            return [f"{path}: an object expected, found {_shown(value)}"]
        found = [f"{path}.{name}: missing" for name in required if name not in value]
        for name, field_check in {**required, **(present or {})}.items():
            if name in value:
                found += field_check(value[name], f"{path}.{name}")
        return found
    return check


PROBE = record({"batch_size": INT, "status": one_of(*PROBE_STATUSES)},
               {"peak_bytes": optional(INT), "peak_bytes_runs": list_of(INT), "resident_bytes": optional(INT),
                "step_seconds": optional(NUMBER), "warmup_seconds": optional(NUMBER), "message": optional(TEXT),
                "spread": optional(NUMBER), "processes": INT, "process_peaks": optional(list_of(INT))})
FINDING = record({"id": TEXT, "severity": one_of(*SEVERITIES), "message": TEXT})
CURVE_POINT = record({"batch_size": INT, "peak_bytes": INT, "source": TEXT})
RECOMMENDATION = record({}, {"kind": TEXT, "peak_bytes": optional(INT), "fits": optional(BOOL),
                             "status": TEXT, "snippet": optional(TEXT)})

DOCUMENT = record(
    {"format": INT, "model": record({"name": TEXT}, {"params_total": optional(INT)}),
     "probes": list_of(PROBE), "findings": list_of(FINDING)},
    {"preflight_version": TEXT, "created_at": TEXT,
     "device": optional(record({"kind": TEXT}, {"name": TEXT, "allocator": TEXT})),
     "batch_size": optional(INT), "peak_bytes": optional(INT), "peak_source": optional(TEXT),
     "budget_bytes": optional(INT), "fits": optional(BOOL),
     "footprint": mapping_of(INT), "footprint_sources": mapping_of(TEXT),
     "layers": list_of(record({"name": TEXT})),
     "curve": list_of(CURVE_POINT), "max_batch_size": optional(INT), "recommended_batch_size": optional(INT),
     "recommendations": list_of(RECOMMENDATION),
     "gate": optional(record({"passed": BOOL}, {"reasons": list_of(TEXT)})),
     "search": optional(record({}))})


def problems(document: Any) -> list[str]:
    """Every field of `document` that does not have the shape readers rely on; [] when it is a report's."""
    return DOCUMENT(document, "report")
