"""keras-tuner preflight: check a whole search space before `tuner.search`, and guard the search.

- `space`: enumerate hyperparameters (conditional ones included), worst case, sampling, building.
- `features`: cheap static features of a built-but-untrained model (no training step).
- `measure`: dry-run a few configurations, each in its own engine child (preflight.engine.runner).
- `predict`: fit a peak predictor on those and analyse the whole space (worst case, fraction, bounds).
- `budget`: search time (Hyperband's real schedule) and checkpoint disk estimates.
- `guard`: keep a running search alive and on budget; watch host RSS between trials.
- `plan`: `check_search(...)`, the report's `"search"` section.
- `spread`: the dry runs shared out over keras-tuner's distributed processes (claim files in a shared folder).
- `cli_support`: `check_search_file(path)`, a tune.py loaded without starting its search.

May import the engine, analysis and the shared modules (preflight.errors, preflight.common); never the
what-ifs, the renderers or the doors. Nothing here imports TensorFlow or keras-tuner at import time.
"""
from __future__ import annotations

from typing import Any

__all__ = ["SearchGuard", "check_search", "guard"]


def __getattr__(name: str) -> Any:
    if name in ("SearchGuard", "guard"):
        from preflight.tuner import guard as guard_module

        return getattr(guard_module, name)
    if name == "check_search":
        from preflight.tuner.plan import check_search

        return check_search
    raise AttributeError(name)
