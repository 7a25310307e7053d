"""Running a user's model.py or notebook and finding, by convention, the model, its data and the batch size.

Conventions (documented in the README):
- the plan: the first `model.fit(...)` the code calls (preflight.engine.fit_plan) stops it there; its
  model and data are the check's, whatever else the file defines;
- else the model: `build_model()` (no arguments), `get_model()`, or a module-level `model` (a keras.Model);
- data (optional): `get_dataset()`, `dataset` or `train_data`;
- batch size: a module-level int `batch_size`.
The file runs with `__name__ == "__preflight__"`, so an `if __name__ == "__main__":` training block
does not start training; a notebook's code cells run as one program (preflight.engine.program). Runs
inside the dry-run child (it imports the user's TensorFlow code); `check_source` runs in the parent.
"""
from __future__ import annotations

import inspect
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from preflight.engine.fit_plan import FitPlan, PlanReached, fit_plan, fits_intercepted
from preflight.engine.notebook_source import SkippedShell
from preflight.engine.program import Program, read_program
from preflight.errors import ModelError, TargetLoadError, is_out_of_memory

MODEL_FACTORIES = ("build_model", "get_model")
MODEL_VARIABLES = ("model",)
DATA_FACTORIES = ("get_dataset",)
DATA_VARIABLES = ("dataset", "train_data")
RUN_NAME = "__preflight__"


@dataclass
class LoadedTarget:
    model: Any               # a compiled keras.Model
    data: Any | None         # any data kind preflight.engine.data understands, or None
    batch_size: int | None   # the file's `batch_size`, if it sets one
    namespace: dict


def _syntax_error(program: Program, exc: SyntaxError) -> TargetLoadError:
    where = f"has a syntax error at {program.where(exc.lineno).removeprefix(program.path.name + ', ')}" \
        if exc.lineno else "is not Python source"
    run = f"`python {program.path.name}`" if program.notebook is None else "each cell in Jupyter"
    return TargetLoadError(f"{program.path.name} {where}: {exc.msg}", hint=f"fix the file so that {run} runs")


def check_source(path: str | os.PathLike) -> None:
    """In the parent, before a child starts TensorFlow: an empty, unreadable or unparsable file fails now."""
    program = read_program(path)
    if not program.text.strip():
        raise TargetLoadError(f"{program.path.name} is empty" + (" (no code cells)" if program.notebook else ""),
                              hint="define build_model() returning a compiled keras.Model in it")
    try:
        compile(program.text, str(program.path), "exec")
    except SyntaxError as exc:  # null bytes too, on Python 3.11
        raise _syntax_error(program, exc) from None


@dataclass
class ProgramRun:
    """What running the user's program left: its globals, and the fit(...) call it stopped at, if any."""

    namespace: dict
    plan: FitPlan | None
    program: Program


def run_model_file(path: str | os.PathLike) -> dict:
    """Execute the file and return its globals; any failure becomes one readable TargetLoadError."""
    return run_program(path).namespace


def run_program(path: str | os.PathLike) -> ProgramRun:
    """Run a model.py or a notebook's code cells, stopping at the first model.fit(...) call (the plan:
    preflight.engine.fit_plan); any failure becomes one readable TargetLoadError."""
    file = Path(path)
    if not file.is_file():
        raise TargetLoadError(f"no such file: {file}", hint="pass the path of your model.py")
    program = read_program(file)
    try:
        code = compile(program.text, str(file), "exec")
    except SyntaxError as exc:
        raise _syntax_error(program, exc) from None
    # The user's own sibling modules must import as they do when they run the file themselves.
    sys.path.insert(0, str(file.resolve().parent))
    namespace: dict = {}
    try:
        with fits_intercepted():
            _execute(code, program, namespace)
    except PlanReached as reached:
        where = program.where(_user_line(reached, file))
        plan = fit_plan(reached, where) if reached.call == "fit" else None
        return ProgramRun(namespace, plan, program)
    except SystemExit as exc:
        raise TargetLoadError(f"{file.name} called sys.exit({exc.code}) while loading",
                              hint="move exit calls under `if __name__ == '__main__':`") from None
    except Exception as exc:  # noqa: BLE001 - the user's code may raise anything
        if is_out_of_memory(exc):
            raise  # a memory verdict, not a broken file: the child reports it with the static floor
        _raise_if_foreign_backend(exc)
        raise TargetLoadError(
            f"{file.name} failed while loading: {type(exc).__name__}: {exc}{_user_frame(exc, file)}",
            hint="fix the error above; preflight runs the file as a module, without its __main__ block"
            if program.notebook is None else "fix the error above; preflight runs the code cells in order, "
                                             "up to the first model.fit(...)",
        ) from None
    return ProgramRun(namespace, None, program)


def _execute(code, program: Program, namespace: dict) -> None:
    """Run the code as runpy.run_path runs a file, as module `__preflight__` (so a `__main__` block does not
    run); a notebook also gets the `get_ipython()` and `display()` Jupyter gives it."""
    import builtins
    import linecache
    import types

    module = types.ModuleType(RUN_NAME)
    module.__dict__.update(__file__=str(program.path), __builtins__=builtins, __cached__=None, __loader__=None,
                           __spec__=None, __package__=None)
    if program.notebook is not None:
        shell = SkippedShell()
        module.__dict__.update(get_ipython=lambda: shell, display=lambda *objects, **options: None)
        # Source lookups (tf.function's autograph, tracebacks) must see the program, not the notebook's JSON.
        linecache.cache[str(program.path)] = (len(program.text), None, program.text.splitlines(True),
                                              str(program.path))
    saved_module, saved_argv = sys.modules.get(RUN_NAME), sys.argv[0] if sys.argv else None
    sys.modules[RUN_NAME] = module
    if sys.argv:
        sys.argv[0] = str(program.path)
    try:
        exec(code, module.__dict__)
    finally:
        namespace.update(module.__dict__)
        if saved_module is None:
            sys.modules.pop(RUN_NAME, None)
        else:
            sys.modules[RUN_NAME] = saved_module
        if saved_argv is not None:
            sys.argv[0] = saved_argv


def _raise_if_foreign_backend(exc: BaseException) -> None:
    """A layer written for another Keras backend: name it (preflight.engine.backend_errors)."""
    from preflight.engine.backend_errors import foreign_backend_error

    mismatch = foreign_backend_error(exc)
    if mismatch is not None:
        raise mismatch from None


def _user_line(exc: BaseException, file: Path) -> int | None:
    """The line of the deepest frame inside the user's file."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).resolve() == file.resolve()]
    return frames[-1].lineno if frames else None


def _user_frame(exc: BaseException, file: Path) -> str:
    """' (model.py, line 12)' or ' (colab.ipynb, code cell 3, line 2)' for the deepest frame inside the
    user's file, so the message points at it."""
    line = _user_line(exc, file)
    return f" ({read_program(file).where(line)})" if line else ""


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


def model_and_data(run: ProgramRun) -> tuple[Any, Any]:
    """(model, data): the plan's when the program called fit(...), else found by convention."""
    source = run.program.path.name
    if run.plan is not None:
        import keras

        return _checked_model(run.plan.model, f"the model fit() was called on ({run.plan.record['where']})",
                              source, keras), run.plan.data
    return find_model(run.namespace, source), find_data(run.namespace, source)


def load_target(path: str | os.PathLike) -> LoadedTarget:
    run = run_program(path)
    model, data = model_and_data(run)
    batch_size = run.plan.record["batch_size"] if run.plan is not None else None
    return LoadedTarget(model=model, data=data, batch_size=batch_size or find_batch_size(run.namespace),
                        namespace=run.namespace)
