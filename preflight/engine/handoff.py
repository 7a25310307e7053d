"""Handing a model that lives in the caller's process (a notebook) to the dry-run child.

The model goes as a `.keras` file; classes it needs that Keras cannot import by name (custom layers,
losses, a subclassed model with its own train_step, defined in the notebook) go with cloudpickle, which
pickles classes defined in `__main__` by value. The data goes as a ready sample pool (NumPy arrays),
made here with the real model, so a shape mismatch is reported before any child starts.

A keras-tuner search space (a HyperModel, a `build_model(hp)` function or a tuner) goes with
cloudpickle too, with one batch of its data; the child builds the configuration it is asked for.
"""
from __future__ import annotations

import inspect
import json
import os
import pickle
import sys
import sysconfig
import zipfile
from pathlib import Path
from typing import Any

from preflight.errors import IsolationError

_BUILTIN_PREFIXES = ("keras", "tensorflow", "tf_keras", "builtins", "keras_tuner")


def _custom_classes(model) -> dict[str, type]:
    """Classes the saved model refers to that are not Keras' or TensorFlow's own."""
    from preflight.engine.data import _all_layers

    candidates = [type(model)] + [type(layer) for layer in _all_layers(model)]
    for attribute in ("loss", "optimizer"):
        value = getattr(model, attribute, None)
        values = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else [value]
        candidates += [type(v) for v in values if v is not None and not isinstance(v, str)]
    classes: dict[str, type] = {}
    for cls in candidates:
        if not cls.__module__.split(".")[0] in _BUILTIN_PREFIXES:
            classes[cls.__name__] = cls
    return classes


def write_handoff(model, pool, directory: str | Path) -> None:
    import cloudpickle
    import keras

    directory = Path(directory)
    classes = _custom_classes(model)
    custom_objects = dict(classes)
    for cls in classes.values():
        custom_objects[keras.saving.get_registered_name(cls)] = cls
    try:
        model.save(directory / "model.keras")
        with open(directory / "custom_objects.pkl", "wb") as handle:
            cloudpickle.dump(custom_objects, handle)
    except Exception as exc:  # noqa: BLE001 - serialization of user classes fails in many ways
        reason = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise IsolationError(
            f"could not hand model {model.name!r} to the isolated dry run: {type(exc).__name__}: {reason[:300]}",
            hint="give custom layers and models a get_config() (see the Keras serialization guide), or move "
                 "the model into a model.py and pass its path: preflight.check('model.py')",
        ) from None
    with open(directory / "pool.pkl", "wb") as handle:
        pickle.dump({"element": pool.element, "kind": pool.kind, "host_bytes": pool.host_bytes,
                     "pipeline": pool.pipeline, "sys_path": [p for p in sys.path if p]}, handle)


def load_handoff(directory: str | Path) -> tuple[Any, Any]:
    """(model with its weights, sample pool)."""
    import keras

    directory = Path(directory)
    pool = read_pool(directory)
    model = keras.saving.load_model(directory / "model.keras", custom_objects=_custom_objects(directory),
                                    compile=True, safe_mode=False)
    return model, pool


def load_handoff_config(directory: str | Path) -> Any:
    """The model built from its config alone, compiled, without reading its weights. Inside
    `static_floor.shapes_only()` this is the shape-only model the static floor is computed from, so a model
    whose weights exceed the budget is sized without loading them. Call read_pool() first."""
    directory = Path(directory)
    return model_from_config(directory / "model.keras", _custom_objects(directory))


def model_from_config(keras_file: str | Path, custom_objects: dict[str, Any]) -> Any:
    """A .keras file's model built from its config.json alone, compiled, its weights not read (see above)."""
    import keras

    with zipfile.ZipFile(keras_file) as archive:
        config = json.loads(archive.read("config.json"))
    # Compiled here rather than by the deserializer, which would also build the optimizer's slots for real.
    compile_config = config.pop("compile_config", None)
    model = keras.saving.deserialize_keras_object(config, custom_objects=custom_objects, safe_mode=False)
    if compile_config:
        model.compile(**keras.saving.deserialize_keras_object(compile_config, custom_objects=custom_objects,
                                                              safe_mode=False))
    return model


def read_pool(directory: str | Path):
    """The sample pool; also puts the caller's sys.path back, for custom classes pickled by reference."""
    from preflight.engine.data import SamplePool

    with open(Path(directory) / "pool.pkl", "rb") as handle:
        saved = pickle.load(handle)
    for entry in saved["sys_path"]:
        if entry not in sys.path:
            sys.path.append(entry)
    return SamplePool(saved["element"], saved["kind"], saved["host_bytes"], saved["pipeline"])


def _custom_objects(directory: Path) -> dict[str, Any]:
    with open(directory / "custom_objects.pkl", "rb") as handle:
        return pickle.load(handle)


def write_hypermodel_handoff(hypermodel: Any, batch: Any, directory: str | Path) -> None:
    """The search space and one batch of its data (None: the child synthesizes one)."""
    import cloudpickle

    directory = Path(directory)
    _pickle_by_value_if_user_code(getattr(hypermodel, "build_fn", hypermodel))
    (directory / "sys_path.json").write_text(json.dumps([p for p in sys.path if p]), encoding="utf-8")
    with open(directory / "hypermodel.pkl", "wb") as handle:
        cloudpickle.dump({"hypermodel": hypermodel, "batch": batch}, handle)


def load_hypermodel_handoff(directory: str | Path) -> tuple[Any, Any]:
    """(hypermodel, batch or None), with the caller's sys.path back for code pickled by reference."""
    directory = Path(directory)
    for entry in json.loads((directory / "sys_path.json").read_text(encoding="utf-8")):
        if entry not in sys.path:
            sys.path.append(entry)
    with open(directory / "hypermodel.pkl", "rb") as handle:
        saved = pickle.load(handle)
    return saved["hypermodel"], saved["batch"]


def _pickle_by_value_if_user_code(obj: Any) -> None:
    """User modules (a tune.py, a test file) travel by value; installed packages by reference."""
    import cloudpickle

    target = obj if inspect.isfunction(obj) or isinstance(obj, type) else type(obj)
    module_name = getattr(target, "__module__", None)
    module = sys.modules.get(module_name or "")
    if module is None or module_name == "__main__":
        return
    path = getattr(module, "__file__", "") or ""
    site = sysconfig.get_paths()["purelib"]
    if path and not os.path.abspath(path).startswith(os.path.abspath(site)):
        try:
            cloudpickle.register_pickle_by_value(module)
        except ValueError:
            pass
