"""A layer that only works on one Keras backend: found in the traceback, named, with the fix.

Keras 3 runs a model on TensorFlow, JAX or PyTorch, but a custom layer that calls `tf.` (or `jnp.`,
`torch.`) directly runs on that one backend alone; elsewhere it fails with an error about tracers or
tensors that names neither the layer nor the cause. The traceback does: the innermost frame of a layer's
own code is followed by a frame inside another backend's package.
"""
from __future__ import annotations

import os
import sys
import traceback

from preflight.engine.step_errors import error_line
from preflight.errors import ModelError
from preflight.common.measurements import BACKEND_DISPLAY_NAMES

BACKEND_PACKAGES = {"tensorflow": {"tensorflow"}, "jax": {"jax", "jaxlib"}, "torch": {"torch"}}
PACKAGE_BACKENDS = {package: backend for backend, packages in BACKEND_PACKAGES.items() for package in packages}


def _package(filename: str) -> str | None:
    """The top-level package a frame's file belongs to, when it is an installed package."""
    parts = filename.replace("\\", "/").split("/")
    for index, part in enumerate(parts[:-1]):
        if part in ("site-packages", "dist-packages"):
            return parts[index + 1]
    return None


def foreign_backend_error(exc: BaseException) -> ModelError | None:
    """A ModelError naming the layer whose own code called another backend, or None."""
    keras = sys.modules.get("keras")
    if keras is None:
        return None
    active = keras.backend.backend()
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        frames = list(traceback.walk_tb(exc.__traceback__))
        for index in range(len(frames) - 1, -1, -1):
            frame, line = frames[index]
            layer = frame.f_locals.get("self")
            if not isinstance(layer, keras.layers.Layer) or _package(frame.f_code.co_filename) == "keras":
                continue
            foreign = _foreign_call(frames[index + 1:], active)
            if foreign is not None:
                return _error(exc, layer, frame, line, foreign, active)
        exc = exc.__cause__ or exc.__context__
    return None


def _foreign_call(frames, active: str) -> str | None:
    """The other backend the frames right after a layer's code went into, if any."""
    if not frames:
        return None
    backend = PACKAGE_BACKENDS.get(_package(frames[0][0].f_code.co_filename) or "")
    return backend if backend is not None and backend != active else None


def _error(exc: BaseException, layer, frame, line: int, foreign: str, active: str) -> ModelError:
    where = f"{os.path.basename(frame.f_code.co_filename)}, line {line}"
    foreign_name, active_name = BACKEND_DISPLAY_NAMES[foreign], BACKEND_DISPLAY_NAMES[active]
    return ModelError(
        f"layer {layer.name!r} ({type(layer).__name__}) calls {foreign_name} directly in "
        f"{frame.f_code.co_name}() ({where}), which does not run under the {active_name} backend: "
        f"{type(exc).__name__}: {error_line(exc)}",
        hint=f"write the layer with keras.ops instead of {foreign_name} ops so it runs on every backend, "
             f"or measure under the backend it was written for (--backend {foreign})")
