"""Running a user's model.py and finding, by convention, the model, its data and the batch size.

Conventions (documented in the README):
- model: `build_model()` (no arguments), `get_model()`, or a module-level `model` (a keras.Model);
- data (optional): `get_dataset()`, `dataset` or `train_data`;
- batch size: a module-level int `batch_size`.
The file runs with `__name__ == "__preflight__"`, so an `if __name__ == "__main__":` training block
does not start training. Runs inside the dry-run child (it imports the user's TensorFlow code).
"""
from __future__ import annotations

import contextlib
import inspect
import os
import runpy
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from preflight.errors import ModelError, TargetLoadError, is_out_of_memory

MODEL_FACTORIES = ("build_model", "get_model")
MODEL_VARIABLES = ("model",)
DATA_FACTORIES = ("get_dataset",)
DATA_VARIABLES = ("dataset", "train_data")


@dataclass
class LoadedTarget:
    model: Any               # a compiled keras.Model
    data: Any | None         # any data kind preflight.engine.data understands, or None
    batch_size: int | None   # the file's `batch_size`, if it sets one
    namespace: dict


def _syntax_error(file: Path, exc: SyntaxError) -> TargetLoadError:
    where = f"has a syntax error at line {exc.lineno}" if exc.lineno else "is not Python source"
    return TargetLoadError(f"{file.name} {where}: {exc.msg}", hint="fix the file so that `python " + file.name + "` runs")


def check_source(path: str | os.PathLike) -> None:
    """In the parent, before a child starts TensorFlow: an empty, unreadable or unparsable file fails now."""
    file = Path(path)
    try:
        source = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TargetLoadError(f"cannot read {file.name}: {exc}",
                              hint="pass a Python source file saved as UTF-8") from None
    if not source.strip():
        raise TargetLoadError(f"{file.name} is empty",
                              hint="define build_model() returning a compiled keras.Model in it")
    try:
        compile(source, str(file), "exec")
    except SyntaxError as exc:  # null bytes too, on Python 3.11
        raise _syntax_error(file, exc) from None


def run_model_file(path: str | os.PathLike) -> dict:
    """Execute the file and return its globals; any failure becomes one readable TargetLoadError."""
    file = Path(path)
    if not file.is_file():
        raise TargetLoadError(f"no such file: {file}", hint="pass the path of your model.py")
    # The user's own sibling modules must import as they do when they run the file themselves.
    sys.path.insert(0, str(file.resolve().parent))
    try:
        with _training_refused():
            return runpy.run_path(str(file), run_name="__preflight__")
    except _FitAtImport as exc:
        raise TargetLoadError(f"{file.name} calls model.fit() while loading{_user_frame(exc, file)}: "
                              "preflight would train the model for real",
                              hint="move training under `if __name__ == '__main__':`") from None
    except SyntaxError as exc:
        raise _syntax_error(file, exc) from None
    except SystemExit as exc:
        raise TargetLoadError(f"{file.name} called sys.exit({exc.code}) while loading",
                              hint="move exit calls under `if __name__ == '__main__':`") from None
    except Exception as exc:  # noqa: BLE001 - the user's code may raise anything
        if is_out_of_memory(exc):
            raise  # a memory verdict, not a broken file: the child reports it with the static floor
        _raise_if_foreign_backend(exc)
        raise TargetLoadError(
            f"{file.name} failed while loading: {type(exc).__name__}: {exc}{_user_frame(exc, file)}",
            hint="fix the error above; preflight runs the file as a module, without its __main__ block",
        ) from None


def _raise_if_foreign_backend(exc: BaseException) -> None:
    """A layer written for another Keras backend: name it (preflight.engine.backend_errors)."""
    from preflight.engine.backend_errors import foreign_backend_error

    mismatch = foreign_backend_error(exc)
    if mismatch is not None:
        raise mismatch from None


class _FitAtImport(Exception):
    pass


@contextlib.contextmanager
def _training_refused():
    """While the file runs, model.fit() raises instead of training (a script that trains at the bottom)."""
    import keras

    original = keras.Model.fit

    def refuse(self, *args, **kwargs):
        raise _FitAtImport()

    keras.Model.fit = refuse
    try:
        yield
    finally:
        keras.Model.fit = original


def _user_frame(exc: BaseException, file: Path) -> str:
    """' (model.py, line 12)' for the deepest frame inside the user's file, so the message points at it."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).resolve() == file.resolve()]
    return f" ({file.name}, line {frames[-1].lineno})" if frames else ""


def model_factory(namespace: dict, source: str) -> tuple[str, Any] | None:
    """(name, function) of the file's build_model()/get_model(), or None when it only assigns `model`."""
    for name in MODEL_FACTORIES:
        factory = namespace.get(name)
        if callable(factory):
            required = [p for p in inspect.signature(factory).parameters.values()
                        if p.default is inspect.Parameter.empty
                        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            if required:
                raise TargetLoadError(
                    f"{source}: {name}() takes arguments ({', '.join(p.name for p in required)})",
                    hint="a build_model(hp) is a keras-tuner hypermodel: run `preflight search` on it, "
                         "or give a build_model() without arguments",
                )
            return name, factory
    return None


def find_model(namespace: dict, source: str) -> Any:
    import keras

    found = model_factory(namespace, source)
    if found is not None:
        name, factory = found
        try:
            model = factory()
        except Exception as exc:  # noqa: BLE001
            if is_out_of_memory(exc):
                raise  # the model is too big, not broken: a memory verdict (see preflight.child)
            _raise_if_foreign_backend(exc)
            raise TargetLoadError(f"{source}: {name}() raised {type(exc).__name__}: {exc}"
                                  f"{_user_frame(exc, Path(namespace['__file__']))}",
                                  hint=f"fix {name}() so that it returns a compiled keras.Model") from None
        return _checked_model(model, f"{name}()", source, keras)
    for name in MODEL_VARIABLES:
        if name in namespace:
            return _checked_model(namespace[name], f"`{name}`", source, keras)
    raise TargetLoadError(
        f"{source} defines no model",
        hint="define build_model() (no arguments) or get_model() returning a compiled keras.Model, "
             "or a module-level variable `model`",
    )


def _checked_model(model: Any, what: str, source: str, keras) -> Any:
    if not isinstance(model, keras.Model):
        raise TargetLoadError(f"{source}: {what} is a {type(model).__name__}, not a keras.Model",
                              hint="return or assign a keras.Model (Sequential, functional or subclassed)")
    check_compiled(model)
    return model


def check_compiled(model: Any) -> None:
    """A model must be compiled with an optimizer: that is what a training step needs."""
    if not getattr(model, "compiled", False) or getattr(model, "optimizer", None) is None:
        raise ModelError(
            f"model {model.name!r} is not compiled",
            hint="call model.compile(optimizer='adam', loss=...) before preflight sees it, "
                 "as you would before model.fit()",
        )


def find_data(namespace: dict, source: str) -> Any | None:
    for name in DATA_FACTORIES:
        factory = namespace.get(name)
        if callable(factory):
            try:
                return factory()
            except Exception as exc:  # noqa: BLE001
                raise TargetLoadError(f"{source}: {name}() raised {type(exc).__name__}: {exc}"
                                      f"{_user_frame(exc, Path(namespace['__file__']))}",
                                      hint=f"fix {name}(), or remove it to let preflight synthesize inputs") from None
    for name in DATA_VARIABLES:
        if namespace.get(name) is not None:
            return namespace[name]
    return None


def find_batch_size(namespace: dict) -> int | None:
    value = namespace.get("batch_size")
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def load_target(path: str | os.PathLike) -> LoadedTarget:
    namespace = run_model_file(path)
    source = Path(path).name
    return LoadedTarget(
        model=find_model(namespace, source),
        data=find_data(namespace, source),
        batch_size=find_batch_size(namespace),
        namespace=namespace,
    )
