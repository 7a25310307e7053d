"""Checks at the door: every setting's allowed range, and the output paths, before TensorFlow starts.

Flags, `[tool.preflight]` keys, `PREFLIGHT_*` variables and the API's arguments all pass through
`setting(name, value, origin)`, so one value is judged the same way wherever it came from, and the
message names where it came from (`--steps`, `PREFLIGHT_BUDGET`, `pyproject.toml [tool.preflight] steps`)
and the range it must lie in. A bad value is a UsageError (exit 2): a run that measures nothing, or that
would fail after minutes of probing, must not start.
"""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from preflight.errors import UsageError

MAX_STEPS = 100          # more measured steps add time, not information: the spread shows after a few
MAX_BATCH_SIZE = 2**24   # far beyond any real batch; a typo such as 64000000 is caught


def _reject(origin: str, value: Any, allowed: str, example: str) -> UsageError:
    return UsageError(f"{origin} = {value!r} is not allowed: it must be {allowed}",
                      hint=f"give {origin} {example}")


def _integer(value: Any) -> int | None:
    """An int written as an int or as digits; None for floats, bools and words (64.5 must not become 64)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value.strip())
    return None


def _int_in_range(low: int, high: int, example: str) -> Callable[[Any, str], int]:
    def check(value: Any, origin: str) -> int:
        number = _integer(value)
        if number is None or not low <= number <= high:
            raise _reject(origin, value, f"a whole number from {low} to {high}", example)
        return number
    return check


def timeout_seconds(value: Any, origin: str) -> float:
    try:
        seconds = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise _reject(origin, value, "a number of seconds greater than 0", "a value such as 600 (seconds per probe)")
    return seconds


def host_budget(value: Any, origin: str) -> int:
    """Host RAM for the input pipeline: a size, or a preset (colab, kaggle)."""
    from preflight.common.units import HOST_RAM_PRESETS

    if str(value).strip().lower() in HOST_RAM_PRESETS:
        return HOST_RAM_PRESETS[str(value).strip().lower()][0]
    try:
        return budget_bytes(value, origin)
    except UsageError:
        raise _reject(origin, value, "a size such as 12GiB, or colab or kaggle", "colab") from None


def search_seconds(value: Any, origin: str) -> float:
    """Seconds a search may take; 0 skips it."""
    try:
        seconds = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):
        raise _reject(origin, value, "a number of seconds, 0 or more", "a value such as 300 (0 skips the search)")
    return seconds


def budget_bytes(value: Any, origin: str) -> int:
    """The budget in bytes; it must be more than 0 (a zero budget is a typo, not a run that fails)."""
    from preflight.common.units import parse_size

    try:
        size = parse_size(value)
    except UsageError:
        size = -1
    if size <= 0:
        raise _reject(origin, value, "a size greater than 0, such as 15GiB, 512MiB or 16GB "
                                     "(GiB/MiB are powers of 1024, GB/MB powers of 1000)", "a size such as 8GiB")
    return size


def target_name(value: Any, origin: str) -> str:
    from preflight.analysis.devices import get_target

    try:
        get_target(str(value))
    except UsageError as exc:
        raise UsageError(f"{origin}: {exc.message}", hint=exc.hint) from None
    return str(value)


def fraction(value: Any, origin: str) -> float:
    """'10%' or 0.1 -> 0.1; the allowed growth over a baseline, 0 or more."""
    text = str(value).strip()
    try:
        number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        number = math.nan
    if isinstance(value, bool) or not (math.isfinite(number) and number >= 0):
        raise _reject(origin, value, "a share of 0 or more, such as 10% or 0.1", "a value such as 10%")
    return number


def duration_seconds(value: Any, origin: str) -> float:
    from preflight.common.units import parse_duration

    try:
        seconds = parse_duration(value) if not isinstance(value, bool) else math.nan
    except UsageError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise _reject(origin, value, "a duration greater than 0, such as 45s, 90m or 12h", "a value such as 12h")
    return seconds


def flag(value: Any, origin: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise _reject(origin, value, "true or false (also 1/0, yes/no, on/off)", "true or false")


def text(value: Any, origin: str) -> str:
    if not isinstance(value, str):
        raise _reject(origin, value, "a string", "a quoted value")
    return value


def output_file(value: Any, origin: str) -> str | None:
    """A report path: 'none' skips it. Missing folders are created when the report is written, so the
    nearest folder that exists must accept a new file; checked now, not after minutes of probing."""
    path_text = text(value, origin)
    if path_text.strip().lower() in ("none", ""):
        return None
    path = Path(path_text)
    if path.is_dir():
        raise UsageError(f"{origin} {path_text} is a folder, not a file",
                         hint="give the path of a file inside that folder, or 'none' to skip this report")
    if path.exists() and not path.is_file():
        raise UsageError(f"{origin} {path_text} is not a regular file (a device, pipe or socket)",
                         hint="give the path of an ordinary file, or 'none' to skip this report")
    writable_folder(path.parent, origin, path_text)
    return path_text


def writable_folder(folder: Path, origin: str, path_text: str) -> None:
    existing = next(p for p in (folder.absolute(), *folder.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise UsageError(f"{origin} {path_text}: {existing} is a file, not a folder",
                         hint="give a path inside a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass  # permissions alone do not say it (root, read-only mounts): try a real file
    except OSError as exc:
        raise UsageError(f"{origin} {path_text}: cannot write in {existing} ({exc.strerror or exc})",
                         hint="give a path in a folder you can write to, or 'none' to skip this report") from None


def output_folder(value: Any, origin: str) -> str:
    """A folder preflight writes into (the profile); created if missing."""
    path_text = text(value, origin)
    path = Path(path_text)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{origin} {path_text} is a file, not a folder", hint="give a folder path")
    writable_folder(path, origin, path_text)
    return path_text


def existing_file(value: Any, origin: str) -> str:
    path_text = text(value, origin)
    if not Path(path_text).is_file():
        raise UsageError(f"{origin}: no such file: {path_text}", hint="give the path of an existing file")
    return path_text


def baseline_report(value: Any, origin: str) -> str | None:
    """A baseline report file, a folder of <name>.json reports (several models), or 'none'."""
    path_text = text(value, origin)
    if path_text.strip().lower() in ("none", ""):
        return None
    if not Path(path_text).exists():
        raise UsageError(f"{origin}: no such file or folder: {path_text}",
                         hint="give an existing file (a JSON report written by preflight), a folder of them, or 'none'")
    return path_text


def backend_name(value: Any, origin: str) -> str:
    """A Keras backend installed here (preflight.engine.backends); unknown or absent is exit 2."""
    from preflight.engine.backends import checked_backend

    return checked_backend(value, origin)


def _kept_as_written(check: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
    """Checked now, parsed where it is used: Settings holds '8GiB', not its bytes."""
    def keep(value: Any, origin: str) -> Any:
        check(value, origin)
        return value
    return keep


# Each setting's check; the value it returns is the one Settings holds.
RULES: dict[str, Callable[[Any, str], Any]] = {
    "batch_size": _int_in_range(1, MAX_BATCH_SIZE, "a batch size such as 32"),
    "steps": _int_in_range(1, MAX_STEPS, "a value such as 3"),
    "processes": _int_in_range(1, 5, "a value such as 2"),
    "epochs": _int_in_range(1, 10**6, "a value such as 20"),
    "seq_len": _int_in_range(1, 10**7, "a sequence length such as 512"),
    "steps_per_epoch": _int_in_range(1, 10**9, "a value such as 1000"),
    "checkpoints": _int_in_range(1, 10**6, "a value such as 1"),
    "rebuilds": _int_in_range(2, 100, "a value such as 6 (each rebuild calls build_model() twice)"),
    "checkpoint_dir": text,
    "timeout": timeout_seconds,
    "max_batch_time": search_seconds,
    "budget": _kept_as_written(budget_bytes),
    "host_budget": _kept_as_written(host_budget),
    "target": target_name,
    "max_increase": _kept_as_written(fraction),
    "max_params_increase": _kept_as_written(fraction),
    "max_optimizer_increase": _kept_as_written(fraction),
    "max_step_time_increase": _kept_as_written(fraction),
    "markdown": output_file,
    "report_dir": output_folder,
    "time_limit": _kept_as_written(duration_seconds),
    "single_thread": flag,
    "backend": backend_name,
    "json": output_file,
    "html": output_file,
    "baseline": baseline_report,
    "profile": output_folder,
}


def setting(name: str, value: Any, origin: str) -> Any:
    """`value` checked against `name`'s rule; `origin` says where it came from, for the message."""
    return RULES[name](value, origin)


def batch_sizes(values: Any, origin: str) -> list[int]:
    """A list of batch sizes to probe (the API's probe_batch_sizes)."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise _reject(origin, values, "a list of batch sizes", "a list such as [8, 16, 32]")
    sizes = [setting("batch_size", b, f"{origin} item") for b in values]
    if not sizes:
        raise _reject(origin, values, "a list with at least one batch size", "a list such as [8, 16, 32]")
    return sizes


def model_file(value: Any, origin: str = "model file") -> Path:
    """A path to a model.py, notebook or saved model that exists and is a file (what is inside is judged
    later); a TensorFlow SavedModel folder is refused with its own fix."""
    path = Path(os.fspath(value))
    if (path / "saved_model.pb").is_file():
        from preflight.engine.saved_model import check_saved_model

        check_saved_model(path)  # refused, with the fix
    if path.is_dir():
        raise UsageError(f"{value} is a folder, not a model file",
                         hint="pass the path of your model.py, e.g. models/model.py")
    if not path.is_file():
        raise UsageError(f"no such file: {value}", hint="pass the path of your model.py")
    return path
