"""The plan: the first `model.fit(...)` the user's code calls while the dry run loads it (a script that
trains at import, a notebook's training cell).

While the code runs (preflight.engine.loader), `keras.Model.fit` raises `PlanReached` instead of training:
the code stops there, so nothing is trained and nothing after the call runs. `fit_plan()` turns the call
into the check's inputs: its model, its training data (arrays cut by `validation_split` as fit cuts them,
a dataset, a generator), and a JSON record of the run it plans (batch size, epochs, steps per epoch,
validation, the ModelCheckpoint and BackupAndRestore callbacks, where the call is). Runs in the dry-run
child; the parent turns the record into the launch plan (preflight.engine.launch.fit_call_facts).
"""
from __future__ import annotations

import contextlib
import inspect
import math
from dataclasses import dataclass
from typing import Any, Iterator

FIT_DEFAULT_BATCH_SIZE = 32  # what model.fit batches arrays by when batch_size is not given
STEPS_GIVEN = "steps_per_epoch in the call"


class PlanReached(BaseException):
    """Raised where the user's code calls the plan's method. A BaseException, so an `except Exception`
    around the call in the user's code does not swallow it."""

    def __init__(self, call: str, arguments: dict[str, Any]):
        super().__init__(call)
        self.call = call            # "fit", or "search" (preflight.tuner.cli_support)
        self.arguments = arguments  # the call's arguments by name, defaults applied (`self` included)


@contextlib.contextmanager
def fits_intercepted() -> Iterator[None]:
    """While the user's code runs, model.fit(...) stops it with PlanReached instead of training."""
    import keras

    original = keras.Model.fit
    signature = inspect.signature(original)

    def plan(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)  # a wrong argument fails as fit itself would fail
        bound.apply_defaults()
        raise PlanReached("fit", dict(bound.arguments))

    keras.Model.fit = plan
    try:
        yield
    finally:
        keras.Model.fit = original


@dataclass
class FitPlan:
    model: Any              # the model fit was called on
    data: Any | None        # its training data, in a form preflight.engine.data reads; None: synthesized
    record: dict[str, Any]  # JSON: the run the call plans (see the module docstring)


def _array_samples(x: Any) -> int | None:
    """Samples in arrays (NumPy, tensors, a list or dict of them); None for a dataset or generator."""
    import keras

    if x is None:
        return None
    leaves = keras.tree.flatten(x)
    if not leaves or not all(len(getattr(leaf, "shape", ()) or ()) >= 1 for leaf in leaves):
        return None
    return int(leaves[0].shape[0])


def _batches(x: Any) -> int | None:
    """Batches per epoch of a finite tf.data.Dataset or a PyDataset; None when unknown or infinite."""
    cardinality = getattr(x, "cardinality", None)
    if callable(cardinality):
        try:
            count = int(cardinality())
        except Exception:  # noqa: BLE001 - not a tf.data.Dataset after all
            return None
        return count if count > 0 else None
    try:
        return len(x) if hasattr(x, "__len__") and hasattr(x, "__getitem__") and not hasattr(x, "shape") else None
    except TypeError:
        return None


def _head(part: Any, count: int) -> Any:
    import keras

    return None if part is None else keras.tree.map_structure(lambda leaf: leaf[:count], part)


def _callbacks(callbacks: Any) -> dict[str, Any]:
    import keras

    found: dict[str, Any] = {"checkpoint": None, "backup_dir": None, "callbacks": []}
    for callback in callbacks or []:
        found["callbacks"].append(type(callback).__name__)
        if isinstance(callback, keras.callbacks.ModelCheckpoint) and found["checkpoint"] is None:
            found["checkpoint"] = {"filepath": str(callback.filepath),
                                   "save_best_only": bool(callback.save_best_only),
                                   "save_weights_only": bool(callback.save_weights_only)}
        elif isinstance(callback, keras.callbacks.BackupAndRestore):
            found["backup_dir"] = str(callback.backup_dir)
    return found


def fit_plan(reached: PlanReached, where: str) -> FitPlan:
    """The intercepted fit(...) call as the check's model, data and plan record."""
    arguments = reached.arguments
    x, y, sample_weight = arguments.get("x"), arguments.get("y"), arguments.get("sample_weight")
    split = float(arguments.get("validation_split") or 0.0)
    samples = _array_samples(x)
    validation = None
    if samples is not None and split > 0:
        # Keras keeps the first (1 - split) of the samples for training, as here.
        train = int(math.floor(samples * (1.0 - split)))
        validation = f"validation_split={split:g} ({samples - train:,} of {samples:,} samples held out)"
        x, y, sample_weight = _head(x, train), _head(y, train), _head(sample_weight, train)
        samples = train
    elif arguments.get("validation_data") is not None:
        validation = "validation_data (evaluated after each epoch; not measured)"
    data = None if x is None else x if y is None and sample_weight is None else \
        (x, y) if sample_weight is None else (x, y, sample_weight)
    batch_size = arguments.get("batch_size")
    if samples is not None:
        batch_size = batch_size or FIT_DEFAULT_BATCH_SIZE
    steps, steps_source = arguments.get("steps_per_epoch"), STEPS_GIVEN
    if not steps and samples is not None:
        steps, steps_source = math.ceil(samples / batch_size), f"{samples:,} training samples / batch {batch_size}"
    elif not steps and x is not None and (batches := _batches(x)) is not None:
        steps, steps_source = batches, f"{batches:,} batches in the {type(x).__name__}"
    epochs = int(arguments.get("epochs") or 1) - int(arguments.get("initial_epoch") or 0)
    record = {"call": "fit", "where": where, "batch_size": int(batch_size) if batch_size else None,
              "epochs": max(1, epochs), "steps_per_epoch": int(steps) if steps else None,
              "steps_source": steps_source if steps else None, "samples": samples,
              "data": "none (synthesized)" if x is None else type(x).__name__, "validation": validation,
              **_callbacks(arguments.get("callbacks"))}
    return FitPlan(arguments["self"], data, record)
