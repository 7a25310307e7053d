"""A search check's dry runs spread over the processes of keras-tuner's distributed mode (issue 25).

keras-tuner starts a chief and its workers with `KERASTUNER_TUNER_ID`, `KERASTUNER_ORACLE_IP` and
`KERASTUNER_ORACLE_PORT`. Where preflight's search check runs in each of them (`python -m preflight tune.py`
with the same variables), the configurations it measures are shared out through a folder they all see
(the tuner's directory, as keras-tuner's workers share it): a process claims a configuration by creating
its claim file (an exclusive create, so one process wins), measures it, and writes the result beside it;
the others read it. Every process then holds every measurement and writes the same section. Nothing needs
the number of workers: a process that chose a configuration nobody claimed measures it itself, so a lone
process, or folders that are not shared, measure everything as before.

A result or claim counts only for this run: the key holds the search's fingerprint (its build source, the
versions measuring it), a result is read only when written after `REUSE_WINDOW_SECONDS` before this
process started, and a claim whose owner left no result within the measurement's time limit is taken over.

May import preflight.tuner.measure (ConfigMeasurement) and preflight.engine.backends. No TensorFlow.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

from preflight.tuner.measure import ConfigMeasurement

# The processes of one distributed launch start within this of each other; older results are another run's.
REUSE_WINDOW_SECONDS = 600.0
# A claim left this long past the measurement's own time limit with no result: its owner is gone.
CLAIM_GRACE_SECONDS = 60.0
POLL_SECONDS = 0.5
FOLDER = "preflight-dry-runs"


def tuner_id() -> str | None:
    """This process's id in a keras-tuner distributed search ("chief", "tuner0", ...), else None."""
    found = os.environ.get("KERASTUNER_TUNER_ID")
    if found and os.environ.get("KERASTUNER_ORACLE_IP") and os.environ.get("KERASTUNER_ORACLE_PORT"):
        return found
    return None


def search_fingerprint(hypermodel: Any, batch_size: int) -> str:
    """What the measurements depend on besides a configuration's values: the build code, the batch size,
    the versions that measure it."""
    import inspect

    from preflight.engine.backends import installed_version

    build = getattr(hypermodel, "build", hypermodel)
    try:
        source = inspect.getsource(build)
    except (OSError, TypeError):
        source = f"{type(hypermodel).__module__}.{type(hypermodel).__qualname__}"
    versions = [installed_version(name) for name in ("preflight", "keras", "tensorflow", "keras-tuner")]
    return _digest([source, batch_size, versions])


def _digest(parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def shared_folder(directory: str | os.PathLike) -> str:
    """Where the claims and results of the processes sharing `directory` live."""
    return os.path.join(directory, FOLDER)


def spread_measure(measure: Callable[..., list[Any]], directory: str | os.PathLike, fingerprint: str, me: str,
                   *, timeout_seconds: float = 300.0) -> Callable[..., list[ConfigMeasurement]]:
    """`measure` (as analyse_space takes it) with its configurations shared out through `directory`."""
    folder = Path(shared_folder(directory))
    started = time.time()

    def measured(hypermodel: Any, configs: list[dict[str, Any]], batch_size: int,
                 data: Any = None) -> list[ConfigMeasurement]:
        folder.mkdir(parents=True, exist_ok=True)
        keys = [_digest([fingerprint, values, batch_size]) for values in configs]
        results: dict[str, ConfigMeasurement] = {}
        pending = list(zip(keys, configs))
        while pending:
            waiting = []
            for key, values in pending:
                found = _read_result(folder / f"{key}.json", started)
                if found is not None:
                    results[key] = found
                elif _claim(folder / f"{key}.claim", me, timeout_seconds + CLAIM_GRACE_SECONDS):
                    result = measure(hypermodel, [values], batch_size, data)[0]
                    result.extra["measured_by"] = me
                    _write_result(folder / f"{key}.json", result)
                    results[key] = result
                else:  # another process is measuring it
                    waiting.append((key, values))
            pending = waiting
            if pending:
                time.sleep(POLL_SECONDS)
        return [results[key] for key in keys]

    return measured


def _read_result(path: Path, started: float) -> ConfigMeasurement | None:
    try:
        if path.stat().st_mtime < started - REUSE_WINDOW_SECONDS:
            return None
        return ConfigMeasurement(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _write_result(path: Path, result: ConfigMeasurement) -> None:
    partial = path.with_suffix(f".{os.getpid()}.partial")
    partial.write_text(json.dumps(result.to_dict(), default=str))
    os.replace(partial, path)  # atomic: a reader sees the whole result or none


def _claim(path: Path, me: str, stale_after_seconds: float) -> bool:
    """True when this process now holds the claim: it created the file, or took over a stale one."""
    try:
        if time.time() - path.stat().st_mtime > stale_after_seconds:
            path.unlink(missing_ok=True)
    except FileNotFoundError:
        pass
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "w") as handle:
        handle.write(me)
    return True
