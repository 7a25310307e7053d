"""`python -m preflight calibration`: the calibration store as a table, one row per record, oldest first;
each run next to the check that predicted it (preflight.analysis.calibration). Pure: records in, text out."""
from __future__ import annotations

from typing import Any

from preflight.analysis.calibration import change, percent, prediction_for_run
from preflight.common.measurements import BACKEND_DISPLAY_NAMES
from preflight.common.units import format_bytes

COLUMNS = ("when", "kind", "model", "fingerprint", "backend", "device", "batch", "peak", "against the check")


def calibration_table(records: list[dict[str, Any]], path: str) -> str:
    checks = sum(1 for r in records if r.get("kind") == "check")
    runs = len(records) - checks
    head = f"calibration store: {path} ({checks} check{'s' * (checks != 1)}, {runs} run{'s' * (runs != 1)})"
    if not records:
        return head + "\nnothing recorded yet: preflight checks and runs with preflight.keras.MemoryCallback add records"
    rows = [COLUMNS] + [_row(record, records[:index]) for index, record in enumerate(records)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    return "\n".join([head, *lines])


def _row(record: dict[str, Any], earlier: list[dict[str, Any]]) -> tuple[str, ...]:
    backend = record.get("backend") or {}
    device = record.get("device") or {}
    name = BACKEND_DISPLAY_NAMES.get(backend.get("name"), backend.get("name") or "?")
    where = device.get("kind") or "?"
    target = record.get("target")
    if record.get("kind") == "check" and isinstance(target, dict) and target.get("name"):
        where += f" (target {target['name']}: {format_bytes(target.get('peak_bytes'))})"
    peak = format_bytes(record["peak_bytes"]) if record.get("peak_bytes") else "n/a"
    versus = ""
    if record.get("kind") == "run":
        found = prediction_for_run(earlier, record)
        if found and record.get("peak_bytes"):
            figure = found[1]
            versus = (f"{percent(change(figure['bytes'], record['peak_bytes']))} (predicted {format_bytes(figure['bytes'])} "
                      f"on {figure['where']})")
        elif not record.get("peak_bytes"):
            versus = "no device peak on this backend/device"
    return ((record.get("created_at") or "")[:16].replace("T", " "), record.get("kind", "?"),
            str((record.get("model") or {}).get("name") or "?"), str(record.get("fingerprint") or "-"),
            f"{name} {backend.get('version') or ''}".strip(), where, str(record.get("batch_size") or "?"), peak, versus)
