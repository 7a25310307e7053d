"""Which Keras backend the dry run measures under, chosen the way Keras chooses it, read in the parent.

Keras 3 runs the same model.py on TensorFlow, JAX or PyTorch. The user's choice is, in Keras' own order:
`KERAS_BACKEND`, then "backend" in `$KERAS_HOME/keras.json` (default `~/.keras/keras.json`), then
tensorflow. preflight's `--backend` / `backend = ...` in [tool.preflight] comes first. The child gets
the answer as KERAS_BACKEND before Keras is imported (preflight.engine.runner): Keras reads it once.
Nothing here imports a backend: `installed` asks importlib where the package would come from.
"""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Mapping

from preflight.errors import UsageError

BACKENDS = ("tensorflow", "jax", "torch")
# The pip extra that installs each backend with preflight (pyproject.toml [project.optional-dependencies]).
EXTRAS = {"tensorflow": None, "jax": "jax", "torch": "torch"}
# Names Keras accepts for the same backend.
ALIASES = {"tf": "tensorflow", "pytorch": "torch"}


def keras_config_backend(environ: Mapping[str, str]) -> str | None:
    """"backend" in keras.json, where Keras reads it ($KERAS_HOME, else ~/.keras); None when absent."""
    home = environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        config = json.loads((Path(home) / "keras.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    backend = config.get("backend") if isinstance(config, dict) else None
    return backend if isinstance(backend, str) and backend else None


def default_backend(environ: Mapping[str, str] | None = None) -> str:
    """The backend Keras itself would use in this environment (unchecked: see `checked_backend`)."""
    environ = os.environ if environ is None else environ
    chosen = environ.get("KERAS_BACKEND") or keras_config_backend(environ) or "tensorflow"
    return ALIASES.get(chosen.strip().lower(), chosen.strip().lower())


def installed(backend: str) -> bool:
    try:
        return importlib.util.find_spec(backend) is not None  # the backend's name is its package's
    except (ImportError, ValueError):
        return False


def installed_version(backend: str) -> str | None:
    """The backend package's version from its metadata, without importing it."""
    from importlib import metadata

    try:
        return metadata.version(backend)
    except metadata.PackageNotFoundError:
        return None


def installed_backends() -> list[str]:
    return [name for name in BACKENDS if installed(name)]


def checked_backend(value: object, origin: str = "--backend") -> str:
    """A known backend that is installed here, else a UsageError (exit 2) naming what to install."""
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{origin}: {value!r} is not a backend name",
                         hint=f"use one of {', '.join(BACKENDS)}")
    name = ALIASES.get(value.strip().lower(), value.strip().lower())
    if name not in BACKENDS:
        raise UsageError(f"{origin}: unknown Keras backend {value!r} (known: {', '.join(BACKENDS)})",
                         hint="use tensorflow, jax or torch, as KERAS_BACKEND takes them")
    if not installed(name):
        extra = EXTRAS[name]
        install = f"pip install 'preflight[{extra}]'" if extra else "pip install tensorflow"
        raise UsageError(f"{origin}: the {name} backend is not installed in this Python environment",
                         hint=f"{install}, or choose an installed backend ({', '.join(installed_backends()) or 'none'})")
    return name


def resolve_backend(explicit: str | None, environ: Mapping[str, str] | None = None,
                    origin: str = "--backend") -> str:
    """The backend to measure: `explicit` (flag, config or API argument) if given, else Keras' own
    choice; checked either way, so a KERAS_BACKEND naming an absent package is exit 2 too."""
    if explicit is not None:
        return checked_backend(explicit, origin)
    environ = os.environ if environ is None else environ
    source = "KERAS_BACKEND" if environ.get("KERAS_BACKEND") else \
        "keras.json" if keras_config_backend(environ) else "the default backend"
    return checked_backend(default_backend(environ), source)
