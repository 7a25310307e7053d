"""Byte sizes: parsing user strings, the bytes of a tensor from its shape and dtype, formatting for people.

Inside preflight every memory figure is an int of bytes. `GiB`/`MiB`/`KiB` are powers of 1024;
`GB`/`MB`/`KB` are powers of 1000 (as disk and cloud vendors use them).
"""
from __future__ import annotations

import re
from typing import Any

from preflight.errors import UsageError

_UNITS = {
    "": 1, "b": 1,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4,
}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str | int | float) -> int:
    """'15GiB' -> 16106127360, '16GB' -> 16000000000, 1024 -> 1024. Bare K/M/G mean KiB/MiB/GiB."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if text < 0:
            raise UsageError(f"size must not be negative: {text}")
        return int(text)
    match = _SIZE.match(str(text))
    if not match or match.group(2).lower() not in _UNITS:
        raise UsageError(
            f"cannot read {text!r} as a size",
            hint="write it like 15GiB, 512MiB or 16GB (GiB/MiB are powers of 1024, GB/MB powers of 1000)",
        )
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def format_bytes(num_bytes: int | float | None) -> str:
    """1536 -> '1.5 KiB'. Powers of 1024, always labelled."""
    if num_bytes is None:
        return "n/a"
    value = float(num_bytes)
    sign = "-" if value < 0 else ""
    value = abs(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if unit == "B" and value < 1024:
            return f"{sign}{int(value)} B"
        if round(value, 1) < 1024 or unit == "TiB":  # 1023.96 MiB is '1.0 GiB', not '1024.0 MiB'
            return f"{sign}{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


# Named host RAM sizes for --host-budget: the session VM's RAM, as the providers state it.
HOST_RAM_PRESETS = {
    "colab": (int(12.7e9), "Colab's standard runtime (12.7 GB of RAM)"),
    "kaggle": (30 * 10**9, "a Kaggle notebook (30 GB of RAM)"),
}


def dtype_size(dtype: Any, default: int | None = None) -> int:
    """Bytes per element of a Keras, NumPy, TensorFlow or PyTorch dtype (bfloat16 included); `default` for
    one that is not a plain numeric dtype (a string, a resource), else TypeError."""
    import numpy as np

    name = str(getattr(dtype, "name", dtype)).replace("torch.", "")
    try:
        return int(np.dtype("uint16" if name == "bfloat16" else name).itemsize)  # numpy has no bfloat16
    except TypeError:
        if default is None:
            raise
        return default


def tensor_bytes(shape: Any, dtype: Any, unknown_dim: int = 1) -> int:
    """Bytes of a tensor of `shape` and `dtype`; a None axis counts as `unknown_dim` (4 bytes for an odd dtype)."""
    count = 1
    for dim in tuple(shape):
        count *= int(dim) if dim is not None else unknown_dim
    return count * dtype_size(dtype, default=4)


def parse_host_budget(text: str | int | float) -> tuple[int, str]:
    """(bytes, where from): a size ('12GiB') or a preset of HOST_RAM_PRESETS ('colab', 'kaggle')."""
    preset = HOST_RAM_PRESETS.get(str(text).strip().lower())
    if preset:
        return preset
    return parse_size(text), f"--host-budget {text}"


# Named session limits: a Colab runtime is recycled after at most 12 hours.
DURATION_PRESETS = {"colab": 12 * 3600.0}


def parse_duration(text: str | int | float) -> float:
    """'12h' -> 43200.0, '90m' -> 5400.0, '45s' or 45 -> 45.0, 'colab' -> 43200.0 (DURATION_PRESETS)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    if str(text).strip().lower() in DURATION_PRESETS:
        return DURATION_PRESETS[str(text).strip().lower()]
    match = re.match(r"^\s*([0-9]*\.?[0-9]+)\s*(s|m|min|h|d)?\s*$", str(text))
    if not match:
        raise UsageError(f"cannot read {text!r} as a duration", hint="write it like 45s, 90m or 12h")
    factor = {None: 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}[match.group(2)]
    return float(match.group(1)) * factor


def format_seconds(seconds: float | None) -> str:
    """0.0123 -> '12.3 ms', 4.2 -> '4.20 s', 5400 -> '1 h 30 min'."""
    if seconds is None:
        return "n/a"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes = seconds / 60
    if minutes < 60:
        return f"{minutes:.1f} min"
    hours, rest_minutes = divmod(int(round(minutes)), 60)
    if hours < 48:
        return f"{hours} h {rest_minutes} min" if rest_minutes else f"{hours} h"
    return f"{hours / 24:.1f} days"


def format_count(number: int | float | None) -> str:
    """4224490 -> '4,224,490'."""
    if number is None:
        return "n/a"
    if isinstance(number, float) and not number.is_integer():
        return f"{number:,.3g}"
    return f"{int(number):,}"


def format_quantity(value: float | None, unit: str) -> str:
    """A baseline-diff quantity in its unit ("bytes", "seconds", else a count)."""
    if unit == "bytes":
        return format_bytes(value)
    if unit == "seconds":
        return format_seconds(value)
    return format_count(value)
