"""The local calibration store: one JSON line per check (its prediction) and per real run (its truth).

Where: the `path` argument, else PREFLIGHT_CALIBRATION, else $XDG_CACHE_HOME/preflight/calibration.jsonl
(~/.cache/...). `none` (or `off`) in either turns the store off. A line is appended with one write to a file
opened O_APPEND, so processes writing at once do not interleave their lines; a line that does not parse
(a run cut off mid-write) is skipped on reading. The records' contents and what is said about them are
preflight.analysis.calibration's; writing the store never fails a check or a training run (a warning says why).
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

ENVIRONMENT = "PREFLIGHT_CALIBRATION"
OFF = ("none", "off", "")


def store_path(path: str | os.PathLike | None = None) -> Path | None:
    """The store's file, or None when it is turned off."""
    chosen = path if path is not None else os.environ.get(ENVIRONMENT)
    if chosen is None:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return Path(cache) / "preflight" / "calibration.jsonl"
    if str(chosen).strip().lower() in OFF:
        return None
    return Path(chosen).expanduser()


def append_record(record: dict[str, Any], path: str | os.PathLike | None = None) -> Path | None:
    """Append one record; the file written, or None (store off, or the write failed: warned)."""
    target = store_path(path)
    if target is None:
        return None
    line = (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode("utf-8")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # a line cut short stays alone, and is skipped on reading
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError as exc:
        warnings.warn(f"preflight: could not write the calibration store {target}: {exc.strerror or exc}",
                      RuntimeWarning, stacklevel=2)
        return None
    return target


def read_records(path: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Every record in the store, oldest first; [] when it is off or missing."""
    target = store_path(path)
    if target is None or not target.is_file():
        return []
    records = []
    try:
        text = target.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # cut short by a process that ended mid-write
        if isinstance(record, dict) and record.get("kind") in ("check", "run"):
            records.append(record)
    return records
