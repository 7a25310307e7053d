"""The baseline diff: what grew between a baseline report and this one, and where.

Pure: two report documents in, one plain dict out (the document's "baseline_diff" section). Whole-run
quantities (peak, parameters, optimizer state, step time at the planned batch) and the per-layer table,
matched by layer name: layers added, removed, or changed in parameters or activation bytes per sample.
Give layers explicit names for a stable diff: Keras numbers unnamed ones (dense_1, dense_2) in build order.
"""
from __future__ import annotations

from typing import Any

# (key in the diff, label, unit) in the order they are shown.
QUANTITIES: tuple[tuple[str, str, str], ...] = (
    ("peak_bytes", "Peak", "bytes"),
    ("params_total", "Parameters", "count"),
    ("optimizer_bytes", "Optimizer state", "bytes"),
    ("step_seconds", "Step time", "seconds"),
)


def _quantities(document: dict[str, Any]) -> dict[str, Any]:
    model = document.get("model") or {}
    planned = next((p for p in document.get("probes") or []
                    if p.get("batch_size") == document.get("batch_size") and p.get("status") == "ok"), None)
    return {"peak_bytes": document.get("peak_bytes"), "params_total": model.get("params_total"),
            "optimizer_bytes": model.get("optimizer_bytes"),
            "step_seconds": planned.get("step_seconds") if planned else None}


def relative_change(old: float | None, new: float | None) -> float | None:
    """(new - old) / old; None when either is missing or the baseline is 0."""
    if old is None or new is None or old == 0:
        return None
    return (new - old) / old


def _layer_changes(old_layers: list[dict], new_layers: list[dict]) -> list[dict[str, Any]]:
    old_by_name = {layer.get("name"): layer for layer in old_layers}
    new_by_name = {layer.get("name"): layer for layer in new_layers}
    changes = []
    for name, new in new_by_name.items():
        old = old_by_name.get(name)
        if old is None:
            changes.append(_layer_row(name, "added", None, new))
        elif (old.get("params"), old.get("activation_bytes_per_sample")) != \
                (new.get("params"), new.get("activation_bytes_per_sample")):
            changes.append(_layer_row(name, "changed", old, new))
    changes += [_layer_row(name, "removed", old, None) for name, old in old_by_name.items() if name not in new_by_name]
    return changes


def _layer_row(name: str, change: str, old: dict | None, new: dict | None) -> dict[str, Any]:
    return {"name": name, "type": (new or old or {}).get("type"), "change": change,
            "params": [(old or {}).get("params"), (new or {}).get("params")],
            "activation_bytes_per_sample": [(old or {}).get("activation_bytes_per_sample"),
                                            (new or {}).get("activation_bytes_per_sample")]}


def compare_reports(baseline: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    """The "baseline_diff" section. Not comparable (and no quantities) when the batch sizes differ."""
    diff: dict[str, Any] = {"baseline_created_at": baseline.get("created_at"), "comparable": True,
                            "reason": None, "quantities": [], "layers": []}
    if baseline.get("batch_size") != document.get("batch_size"):
        diff.update(comparable=False, reason=f"the baseline was measured at batch {baseline.get('batch_size')}, "
                                             f"this run at {document.get('batch_size')}")
        return diff
    old, new = _quantities(baseline), _quantities(document)
    diff["quantities"] = [{"key": key, "label": label, "unit": unit, "baseline": old[key], "current": new[key],
                           "change": relative_change(old[key], new[key])} for key, label, unit in QUANTITIES]
    diff["layers"] = _layer_changes(baseline.get("layers") or [], document.get("layers") or [])
    return diff
