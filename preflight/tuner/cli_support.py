"""Checking a search defined in a file (`python -m preflight tune.py`): load it without searching.

Owns `searches_recorded()` (while a tune.py runs, `tuner.search(...)` only records its arguments and
stops the file there, as fit(...) does in preflight.engine.fit_plan, so a file that calls it at top level
does not start a search) and `check_search_file(path, ...)`, which
finds the hypermodel, the data and the search settings in the file and returns the `"search"` section.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

from preflight.engine.fit_plan import PlanReached
from preflight.errors import TargetLoadError
from preflight.common.units import parse_size


def looks_like_search_file(path: str | os.PathLike) -> bool:
    """True when a file, read without running it, imports keras_tuner or defines a function whose only
    required argument is `hp`: the CLI then checks a search instead of one model."""
    import ast

    from preflight.engine.program import program_text

    try:
        tree = ast.parse(program_text(path) or "")
    except (SyntaxError, ValueError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "keras_tuner" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "keras_tuner":
            return True
        if isinstance(node, ast.FunctionDef) and node.args.args:
            required = node.args.args[: len(node.args.args) - len(node.args.defaults)]
            names = [a.arg for a in required if a.arg != "self"]
            if names == ["hp"]:
                return True
    return False


@contextlib.contextmanager
def searches_recorded() -> Iterator[list[dict[str, Any]]]:
    """Replace `BaseTuner.search` with a recorder for the duration: [{"tuner", "args", "kwargs"}]."""
    from keras_tuner.src.engine import base_tuner

    calls: list[dict[str, Any]] = []
    original = base_tuner.BaseTuner.search

    def record(self: Any, *args: Any, **kwargs: Any) -> None:
        calls.append({"tuner": self, "args": args, "kwargs": kwargs})
        raise PlanReached("search", {"self": self, **kwargs})  # the plan: nothing after it runs

    base_tuner.BaseTuner.search = record
    try:
        yield calls
    finally:
        base_tuner.BaseTuner.search = original


def _data_from_call(call: dict[str, Any]) -> Any:
    args, kwargs = call["args"], call["kwargs"]
    x = args[0] if args else kwargs.get("x")
    y = args[1] if len(args) > 1 else kwargs.get("y")
    if x is None:
        return None
    return (x, y) if y is not None else x


def check_search_file(path: str | os.PathLike, *, budget: str | int | None = None, target: str | None = None,
                      batch_size: int | None = None, time_limit: str | float | None = None,
                      epochs: int | None = None, **options: Any) -> dict[str, Any]:
    """The `"search"` section for the tuner, HyperModel or `build_model(hp)` a file defines.

    Settings come from, in order: the arguments here, the file's own `tuner.search(...)` call
    (recorded, not run), module-level `batch_size`/`epochs`, then defaults.
    """
    from preflight.engine.loader import find_data, run_model_file
    from preflight.tuner.measure import engine_measure, measure_configs
    from preflight.tuner.plan import check_search
    from preflight.tuner.space import find_hypermodel

    name = os.path.basename(str(path))
    with searches_recorded() as calls:
        namespace = run_model_file(path)
    found = find_hypermodel(namespace)
    if found is None and calls:
        found = ("tuner", calls[-1]["tuner"])
    if found is None:
        raise TargetLoadError(
            f"{name} defines no search space",
            hint="define build_model(hp), a keras_tuner.HyperModel instance, or a tuner",
        )
    _, hypermodel = found
    search_kwargs = calls[-1]["kwargs"] if calls else {}
    data = _data_from_call(calls[-1]) if calls else None
    if data is None:
        data = find_data(namespace, name)
    if batch_size is None:
        batch_size = search_kwargs.get("batch_size") or namespace.get("batch_size") or 32
    if epochs is None:
        epochs = search_kwargs.get("epochs") or namespace.get("epochs")
    budget_bytes = parse_size(budget) if budget is not None else None
    if budget_bytes is None and target is not None:
        from preflight.analysis.devices import get_target

        budget_bytes = get_target(target).usable_bytes
    # The engine child re-runs the file; a file that searches at top level is measured from here instead.
    measure = options.pop("measure", None) or (measure_configs if calls else engine_measure(path))
    section = check_search(hypermodel, data, batch_size=int(batch_size), budget_bytes=budget_bytes,
                           time_limit_seconds=time_limit, epochs=epochs,
                           validation_split=float(search_kwargs.get("validation_split", 0.0) or 0.0),
                           measure=measure, **options)
    section["source"] = {"file": str(path), "found": found[0], "search_call_recorded": bool(calls),
                         "target": target}
    section["distribution"] = tuner_distribution(hypermodel if found[0] == "tuner" else None)
    return section


def tuner_distribution(tuner: Any) -> dict[str, Any]:
    """The tuner's `distribution_strategy` (keras-tuner builds every trial's model under it) and the
    accelerators present, in the shape of preflight.engine.readiness's distribution record (no TPU or GPU
    counted where TensorFlow is not installed: a JAX or PyTorch search)."""
    from preflight.engine.readiness import tpu_address

    try:
        import tensorflow as tf
    except ImportError:
        tf = None
    strategy = getattr(tuner, "distribution_strategy", None)
    return {"strategy": type(strategy).__name__ if strategy is not None else None,
            "replicas": int(strategy.num_replicas_in_sync) if strategy is not None else 1,
            "tpu_address": tpu_address(), "tpu_devices": len(tf.config.list_logical_devices("TPU")) if tf else 0,
            "gpus": len(tf.config.list_physical_devices("GPU")) if tf else 0}
