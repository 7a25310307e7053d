"""The backend comparison: one model at one batch size, measured under each Keras backend, side by side.

Pure: takes the report document each backend's check produced (or the error message of a check that
raised) and returns the comparison document written as preflight-compare.json:

    {"format", "kind": "backend-comparison", "preflight_version", "created_at", "model", "batch_size",
     "budget_bytes", "chosen_backend",
     "rows": [{"backend", "chosen", "version", "method", "device", "status", "peak_bytes", "step_seconds",
               "message"}],
     "recommendations": [{"kind": "switch-backend", "backend", "peak_bytes", "chosen_backend",
                          "chosen_peak_bytes", "saving_bytes", "step_seconds", "fits", "measured", ...}]}

A row's status: "fits" / "does-not-fit" (the report's verdict against the budget), "measured" (no
budget: a peak without a verdict), "error" (the check raised, or nothing was measured at the batch).
The peaks come from different allocators (TF's BFC, XLA's buffer assignment, PyTorch's caching
allocator), so each row names the method its peak was read with.
"""
from __future__ import annotations

from typing import Any, Mapping

from preflight.common.version import __version__
from preflight.common.units import format_bytes

COMPARISON_FORMAT = 1
COMPARISON_KIND = "backend-comparison"
COMPARISON_KEYS = {"format", "kind", "model", "batch_size", "budget_bytes", "chosen_backend", "rows",
                   "recommendations"}


def backend_row(backend: str, document: dict[str, Any]) -> dict[str, Any]:
    """One backend's row from its report document (preflight.analysis.document, plus "backend")."""
    facts = document.get("backend") or {}
    device = document.get("device") or {}
    versions = (document.get("launch") or {}).get("versions") or {}
    planned = next((p for p in document.get("probes") or [] if p.get("batch_size") == document.get("batch_size")),
                   None)
    peak = document.get("peak_bytes")
    measured = planned is not None and planned.get("status") == "ok"
    status, message = _status(document.get("fits"), document.get("budget_bytes"), peak,
                              document.get("peak_upper_bytes"), planned)
    return {
        "backend": backend,
        "chosen": False,
        "version": facts.get("version") or versions.get(backend),
        # Before the report named its backend's method, the device's allocator was the method.
        "method": facts.get("method") or device.get("allocator"),
        "device": device.get("name"),
        "status": status,
        "peak_bytes": int(peak) if peak is not None and measured else None,
        "step_seconds": planned.get("step_seconds") if measured else None,
        "message": message,
    }


def _status(fits: bool | None, budget_bytes: int | None, peak_bytes: int | None, upper_bytes: int | None,
            planned: dict[str, Any] | None) -> tuple[str, str]:
    """The row's status and a short message: why it errored, or how the planned batch's probe ended."""
    probe_status = planned.get("status") if planned else None
    probe_message = (planned.get("message") or "") if planned else ""
    if fits is True:
        return "fits", ""
    if fits is False:
        if probe_status not in (None, "ok"):
            return "does-not-fit", probe_message or f"the planned batch ended: {probe_status}"
        if budget_bytes is not None and peak_bytes is not None and peak_bytes <= budget_bytes \
                and upper_bytes is not None and upper_bytes > budget_bytes:
            # The verdict counts the run-to-run margin (preflight.analysis.predict); say so beside the peak.
            return "does-not-fit", f"with its run-to-run margin the peak is {format_bytes(upper_bytes)}"
        return "does-not-fit", ""
    if budget_bytes is None and probe_status == "ok" and peak_bytes is not None:
        return "measured", ""
    if probe_status is None:
        return "error", "the planned batch size was not measured"
    return "error", probe_message or f"the planned batch ended: {probe_status}"


def error_row(backend: str, message: str, version: str | None = None) -> dict[str, Any]:
    """The row of a backend whose check raised (its model or data failed under that backend)."""
    return {"backend": backend, "chosen": False, "version": version, "method": None, "device": None,
            "status": "error", "peak_bytes": None, "step_seconds": None, "message": message}


def switch_backend_recommendations(rows: list[dict[str, Any]], chosen_backend: str) -> list[dict[str, Any]]:
    """A measured "switch backend" entry per backend that fits when the chosen one does not, smallest
    peak first. Empty when the chosen backend fits, has no verdict, or failed."""
    chosen = next((row for row in rows if row["backend"] == chosen_backend), None)
    if chosen is None or chosen["status"] != "does-not-fit":
        return []
    fitting = sorted((row for row in rows if row["backend"] != chosen_backend and row["status"] == "fits"),
                     key=lambda row: row["peak_bytes"] if row["peak_bytes"] is not None else float("inf"))
    recommendations = []
    for row in fitting:
        saving = chosen["peak_bytes"] - row["peak_bytes"] \
            if chosen["peak_bytes"] is not None and row["peak_bytes"] is not None else None
        recommendations.append({
            "kind": "switch-backend",
            "title": f"Switch to the {row['backend']} backend",
            "backend": row["backend"],
            "peak_bytes": row["peak_bytes"],
            "chosen_backend": chosen_backend,
            "chosen_peak_bytes": chosen["peak_bytes"],
            "saving_bytes": saving,
            "step_seconds": row["step_seconds"],
            "chosen_step_seconds": chosen["step_seconds"],
            "method": row["method"],
            "fits": True,
            "measured": True,
            "snippet": f"KERAS_BACKEND={row['backend']} python train.py",
            "tradeoff": "the model must run under that backend: custom layers and ops written for "
                        f"{chosen_backend} need keras.ops equivalents; numerics and step time differ",
        })
    return recommendations


def build_comparison(results: Mapping[str, dict[str, Any] | str], *, chosen_backend: str, model_name: str,
                     batch_size: int, budget_bytes: int | None, created_at: str | None = None,
                     versions: Mapping[str, str | None] | None = None) -> dict[str, Any]:
    """The comparison document. `results`: per backend, in display order, its report document or the
    message of the error its check raised. `versions`: installed versions, for rows whose report has none."""
    rows = []
    for backend, result in results.items():
        row = error_row(backend, result) if isinstance(result, str) else backend_row(backend, result)
        row["chosen"] = backend == chosen_backend
        row["version"] = row["version"] or (versions or {}).get(backend)
        rows.append(row)
    return {
        "format": COMPARISON_FORMAT,
        "kind": COMPARISON_KIND,
        "preflight_version": __version__,
        "created_at": created_at,
        "model": model_name,
        "batch_size": batch_size,
        "budget_bytes": budget_bytes,
        "chosen_backend": chosen_backend,
        "rows": rows,
        "recommendations": switch_backend_recommendations(rows, chosen_backend),
    }


def chosen_row(comparison: dict[str, Any]) -> dict[str, Any] | None:
    return next((row for row in comparison["rows"] if row["backend"] == comparison["chosen_backend"]), None)
