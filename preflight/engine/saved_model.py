"""A saved model as the check's target: `python -m preflight model.keras` (or `.h5`).

In the parent, without TensorFlow: `is_saved_model(path)`, `saved_model_source(...)` checks the file (a
Keras archive, an HDF5 file; a TensorFlow SavedModel folder is refused with the fix), the custom objects
module and the data (`--data file.npz` holding arrays `x` and `y`, or arrays passed to check(), written to
an .npz), and returns the job's source `{"kind": "keras_file", "path", "custom_objects", "data"}`.
In the dry-run child: `load_saved_model(source)` loads it compiled, with the classes and functions the
custom objects module defines, and refuses a model saved without a compiled loss, saying how to compile it;
`saved_model_from_config(source)` builds a .keras file's model from its config alone (the static floor),
`saved_model_data(source)` reads the arrays.
"""
from __future__ import annotations

import inspect
import os
import re
import zipfile
from pathlib import Path
from typing import Any

from preflight.errors import ModelError, TargetLoadError, UsageError

KERAS_SUFFIX = ".keras"
HDF5_SUFFIXES = (".h5", ".hdf5")
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_CUSTOM_OBJECTS_FIX = ("pass the module that defines the model's custom layers, losses and models: "
                       "--custom-objects my_layers.py (custom_objects='my_layers.py' in preflight.check)")


def is_saved_model(path: str | os.PathLike) -> bool:
    path = Path(path)
    return path.suffix.lower() in (KERAS_SUFFIX, *HDF5_SUFFIXES) or (path / "saved_model.pb").is_file()


def check_saved_model(path: Path) -> None:
    """The file is what its name says, or a readable error (a SavedModel folder cannot be trained)."""
    if (path / "saved_model.pb").is_file():
        raise UsageError(f"{path} is a TensorFlow SavedModel folder: Keras 3 loads it for inference only "
                         "(keras.layers.TFSMLayer), not for training",
                         hint="where the model is built, save it as a Keras file (model.save('model.keras')) "
                              "and pass that file, or pass the model.py that builds it")
    if not path.is_file():
        raise UsageError(f"no such file: {path}", hint="pass the path of your saved model (.keras, .h5)")
    if path.suffix.lower() == KERAS_SUFFIX:
        if not zipfile.is_zipfile(path) or "config.json" not in zipfile.ZipFile(path).namelist():
            raise TargetLoadError(f"{path.name} is not a Keras model file (a .keras file is a zip archive "
                                  "holding config.json)", hint="save it with model.save('model.keras')")
    else:
        with open(path, "rb") as handle:
            if handle.read(len(_HDF5_SIGNATURE)) != _HDF5_SIGNATURE:
                raise TargetLoadError(f"{path.name} is not an HDF5 file",
                                      hint="save it with model.save('model.h5'), or as model.keras")


def _data_file(data: Any, directory: str) -> str | None:
    """The data as an .npz path: the one given, or arrays (x, or (x, y)) written into `directory`."""
    import numpy as np

    if data is None:
        return None
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if path.suffix.lower() != ".npz" or not path.is_file():
            raise UsageError(f"{data} is not an .npz file" if path.is_file() else f"no such file: {data}",
                             hint="save the arrays with numpy: np.savez('data.npz', x=x_train, y=y_train)")
        try:
            with np.load(path, allow_pickle=False) as arrays:
                names = list(arrays.files)
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read {path.name}: {exc}",
                             hint="save the arrays with numpy: np.savez('data.npz', x=x_train, y=y_train)") from None
        if "x" not in names:
            raise UsageError(f"{path.name} has no array named 'x' (it has: {', '.join(names) or 'nothing'})",
                             hint="save the arrays by name: np.savez('data.npz', x=x_train, y=y_train)")
        return str(path.resolve())
    x, y = data if isinstance(data, tuple) and len(data) == 2 else (data, None)
    if not hasattr(x, "shape") or (y is not None and not hasattr(y, "shape")):
        raise UsageError("data for a saved model is arrays: x, (x, y), or the path of an .npz file",
                         hint="pass data=(x_train, y_train) as NumPy arrays, or data='data.npz'")
    written = Path(directory) / "data.npz"
    np.savez(written, **({"x": np.asarray(x)} | ({"y": np.asarray(y)} if y is not None else {})))
    return str(written)


def saved_model_source(path: str | os.PathLike, *, custom_objects: str | None, data: Any,
                       directory: str) -> dict[str, Any]:
    """The job's source for a saved model, everything checked before a child starts."""
    path = Path(path)
    check_saved_model(path)
    module = None
    if custom_objects is not None:
        module_path = Path(custom_objects)
        if not module_path.is_file() or module_path.suffix != ".py":
            raise UsageError(f"{custom_objects} is not a Python file" if module_path.exists()
                             else f"no such file: {custom_objects}", hint=_CUSTOM_OBJECTS_FIX)
        module = str(module_path.resolve())
    return {"kind": "keras_file", "path": str(path.resolve()), "custom_objects": module,
            "data": _data_file(data, directory)}


def _custom_objects(source: dict[str, Any]) -> dict[str, Any]:
    """The classes and functions the custom objects module defines, by name (and by registered name)."""
    if not source.get("custom_objects"):
        return {}
    import keras

    from preflight.engine.loader import run_model_file

    namespace = run_model_file(source["custom_objects"])
    found: dict[str, Any] = {}
    for name, value in namespace.items():
        if name.startswith("_") or getattr(value, "__module__", None) != namespace["__name__"]:
            continue  # imported names (keras.layers.Dense) load by their own names
        if inspect.isclass(value) or inspect.isfunction(value):
            found[name] = value
            if inspect.isclass(value):
                found[keras.saving.get_registered_name(value)] = value
    return found


def saved_model_data(source: dict[str, Any]) -> Any:
    """The --data arrays: (x, y), or x alone; None: synthesized from the model."""
    import numpy as np

    if not source.get("data"):
        return None
    with np.load(source["data"], allow_pickle=False) as arrays:
        x = arrays["x"]
        return (x, arrays["y"]) if "y" in arrays.files else x


def _loaded(path: str, load) -> Any:
    """`load()`, its failure a readable TargetLoadError (a missing custom class is the usual one)."""
    try:
        return load()
    except Exception as exc:  # noqa: BLE001 - deserialization fails in many ways
        from preflight.errors import is_out_of_memory

        if is_out_of_memory(exc):
            raise
        missing = sorted(set(re.findall(r"Could not locate (?:class|function) '([^']+)'", str(exc))))
        if missing:
            raise TargetLoadError(f"cannot load {Path(path).name}: it uses {', '.join(missing)}, which Keras cannot "
                                  "find by name (a custom class or function)", hint=_CUSTOM_OBJECTS_FIX) from None
        reason = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise TargetLoadError(f"cannot load {Path(path).name}: {type(exc).__name__}: {reason[:240]}",
                              hint=_CUSTOM_OBJECTS_FIX) from None


def check_trainable(model: Any, path: str) -> None:
    """A saved model needs its compile(): an optimizer and a loss (or its own train_step)."""
    import keras

    compiled = getattr(model, "compiled", False) and getattr(model, "optimizer", None) is not None
    own_step = type(model).train_step is not keras.Model.train_step
    if compiled and (getattr(model, "loss", None) is not None or own_step):
        return
    name = Path(path).name
    what = "without compile()" if not compiled else "compiled without a loss"
    raise ModelError(
        f"{name} holds model {model.name!r} saved {what}: a training step needs an optimizer and a loss",
        hint=f"compile it and save it again: model = keras.saving.load_model('{name}'); "
             "model.compile(optimizer='adam', loss='sparse_categorical_crossentropy'); "
             f"model.save('{name}') (the loss your training uses)")


def load_saved_model(source: dict[str, Any]) -> tuple[Any, Any]:
    """(the compiled model with its weights, its data or None)."""
    import keras

    custom_objects = _custom_objects(source)
    model = _loaded(source["path"], lambda: keras.saving.load_model(
        source["path"], custom_objects=custom_objects, compile=True, safe_mode=False))
    check_trainable(model, source["path"])
    if Path(source["path"]).suffix.lower() in HDF5_SUFFIXES:
        # Keras 3.15 restores an HDF5 file's optimizer bound to other variables: its first step raises
        # "Unknown variable". Compiled again from the file's own compile config, as a new run starts.
        model.compile(**keras.saving.deserialize_keras_object(model.get_compile_config(),
                                                              custom_objects=custom_objects, safe_mode=False))
    return model, saved_model_data(source)


def saved_model_from_config(source: dict[str, Any]) -> Any:
    """A .keras file's model built from its config alone (inside static_floor.shapes_only(): the static
    floor's model, no weight read). An HDF5 file has no such config: ModelError, and the model is loaded."""
    if Path(source["path"]).suffix.lower() != KERAS_SUFFIX:
        raise ModelError(f"{Path(source['path']).name}: only a .keras file is built from its config alone")
    from preflight.engine.handoff import model_from_config

    custom_objects = _custom_objects(source)
    return _loaded(source["path"], lambda: model_from_config(source["path"], custom_objects))
