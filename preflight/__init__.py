"""preflight: will your Keras/TensorFlow training run fit? Measured dry runs, before the long run.

`import preflight` is cheap: TensorFlow and keras-tuner load only when a check runs.
"""
from __future__ import annotations

from preflight.common.version import __version__
__all__ = ["check", "check_search", "guard", "Report", "MemoryCallback", "__version__"]


def __getattr__(name: str):
    if name == "check":
        from preflight.api import check

        return check
    if name in ("check_search", "guard"):
        from preflight import api

        return getattr(api, name)
    if name == "MemoryCallback":  # imports Keras: a training script has it already
        from preflight.keras import MemoryCallback

        return MemoryCallback
    if name == "Report":
        from preflight.render.report import Report

        return Report
    raise AttributeError(f"module 'preflight' has no attribute {name!r}")
