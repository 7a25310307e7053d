"""Settings, layered: defaults < [tool.preflight] in pyproject.toml < PREFLIGHT_* environment < flags.

Unknown keys in pyproject.toml are warned about, not ignored silently: a typo in a CI threshold
should not pass unnoticed. `[[tool.preflight.models]]` tables list model files (or globs) for one run
over several models, each with its own overrides of the per-model settings.
"""
from __future__ import annotations

import glob
import os
import sys
import warnings
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from preflight.settings import validate
from preflight.errors import ConfigError, UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


@dataclass(frozen=True)
class Settings:
    batch_size: int | None = None       # None: the model file's `batch_size`, else 32
    budget: str | None = None           # "15GiB"; a target's usable memory when only a target is named
    target: str | None = None           # a name from `python -m preflight targets`
    timeout: float = 600.0              # seconds per probe
    max_batch_time: float = 180.0       # seconds the largest-batch search may take after the verdict; 0 skips it
    steps: int = 3                      # measured steps per batch size (after one warm-up step)
    processes: int = 2                  # fresh processes that measure the planned batch (1: no repeat)
    single_thread: bool = False         # steps of one process agree (processes still differ), slower steps
    backend: str | None = None          # the Keras backend to measure under; None: KERAS_BACKEND, keras.json, tensorflow
    json: str | None = "preflight-report.json"
    html: str | None = "preflight-report.html"
    baseline: str | None = None         # a previous JSON report to compare against (CI gate)
    max_increase: str | None = None     # e.g. "10%": the gate fails if the peak grew more than this
    max_params_increase: str | None = None     # ... if the parameter count grew more than this
    max_optimizer_increase: str | None = None  # ... if the optimizer state grew more than this
    max_step_time_increase: str | None = None  # ... if the step time at the planned batch grew more than this
    profile: str | None = None          # a directory for a TensorBoard profile of the probed steps
    markdown: str | None = None         # also write the Markdown summary here (e.g. $GITHUB_STEP_SUMMARY)
    report_dir: str = "preflight-reports"  # several models: <name>.json and <name>.html go here
    models: tuple["ModelEntry", ...] = ()  # [[tool.preflight.models]]: checked when no file is named


@dataclass(frozen=True)
class ModelEntry:
    """One model of a several-model run: its file, a report name, and its own settings."""

    path: str
    name: str
    overrides: dict[str, Any]

    def settings(self, base: Settings) -> Settings:
        return replace(base, **self.overrides)


SETTING_NAMES = {f.name for f in fields(Settings)}
# What a [[tool.preflight.models]] table may set besides `path` and `name`.
PER_MODEL_NAMES = {"batch_size", "budget", "target", "timeout", "max_batch_time", "steps", "processes", "single_thread", "backend", "baseline",
                   "max_increase", "max_params_increase", "max_optimizer_increase", "max_step_time_increase"}


def find_pyproject(start: Path | None = None) -> Path | None:
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def from_pyproject(path: Path | None) -> dict[str, tuple[Any, str]]:
    """{name: (value, origin)}; values are checked once the layers are merged."""
    if path is None:
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", hint="fix the TOML syntax in that file") from None
    tool = data.get("tool", {})
    section = tool.get("preflight", {}) if isinstance(tool, dict) else {}
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: [tool.preflight] is a {type(section).__name__}, not a table",
                          hint="write the settings as a table: [tool.preflight] then key = value lines")
    values: dict[str, Any] = {}
    for key, value in section.items():
        name = key.replace("-", "_")
        if name == "models":
            values["models"] = (model_entries(value, path), "checked")
            continue
        if name not in SETTING_NAMES:
            warnings.warn(f"{path}: unknown key [tool.preflight] {key!r} ignored "
                          f"(known: {', '.join(sorted(SETTING_NAMES))})", stacklevel=2)
            continue
        values[name] = (value, f"{path} [tool.preflight] {key}")
    return values


def model_entries(tables: Any, pyproject: Path) -> tuple[ModelEntry, ...]:
    """[[tool.preflight.models]] -> entries; paths and globs are relative to pyproject.toml's folder."""
    origin = f"{pyproject}: [[tool.preflight.models]]"
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(f"{origin} must be a list of tables",
                          hint='write [[tool.preflight.models]] with path = "model.py" under it')
    root = pyproject.parent
    entries: list[ModelEntry] = []
    for table in tables:
        if "path" not in table:
            raise ConfigError(f"{origin}: a table has no path", hint='add path = "models/my_model.py"')
        overrides = {}
        for key, value in table.items():
            name = key.replace("-", "_")
            if name in ("path", "name"):
                continue
            if name not in PER_MODEL_NAMES:
                warnings.warn(f"{origin}: unknown key {key!r} ignored "
                              f"(known: path, name, {', '.join(sorted(PER_MODEL_NAMES))})", stacklevel=3)
                continue
            overrides[name] = value
        if overrides.get("baseline"):
            overrides["baseline"] = str(root / overrides["baseline"])
        matches = sorted(glob.glob(str(root / table["path"]), recursive=True))
        if not matches:
            raise ConfigError(f"{origin}: path {table['path']!r} matches no file under {root}",
                              hint="fix the path, or remove the table")
        overrides = {name: _checked(name, value, f"{origin} {name.replace('_', '-')}")
                     for name, value in overrides.items()}
        for match in matches:
            name = table.get("name") if len(matches) == 1 and table.get("name") else Path(match).stem
            entries.append(ModelEntry(match, str(name), overrides))
    names = [entry.name for entry in entries]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise ConfigError(f"{origin}: two models are named {duplicate!r} (their reports would overwrite each other)",
                          hint='give one of them name = "..." in its table')
    return tuple(entries)


def from_environment(environ: dict[str, str] | None = None) -> dict[str, tuple[Any, str]]:
    environ = os.environ if environ is None else environ
    values = {}
    for name in SETTING_NAMES - {"models"}:
        key = "PREFLIGHT_" + name.upper()
        if key in environ:
            values[name] = (environ[key], key)
    return values


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def load_settings(flags: dict[str, Any], pyproject: Path | None = None,
                  environ: dict[str, str] | None = None) -> Settings:
    """Flags whose value is None are 'not given' and do not override lower layers.

    Only the value that wins is checked (a bad pyproject value overridden by a flag does not stop a
    run); a bad one raises UsageError naming its origin and the allowed range (preflight.settings.validate).
    """
    merged: dict[str, tuple[Any, str]] = {}
    merged.update(from_pyproject(pyproject if pyproject is not None else find_pyproject()))
    merged.update(from_environment(environ))
    merged.update({k: (v, flag_name(k)) for k, v in flags.items() if v is not None and k in SETTING_NAMES})
    return replace(Settings(), **{name: value if name == "models" else _checked(name, value, origin)
                                  for name, (value, origin) in merged.items()})


def _checked(name: str, value: Any, origin: str) -> Any:
    try:
        return validate.setting(name, value, origin)
    except UsageError as exc:
        if origin.startswith("--"):
            raise
        raise ConfigError(exc.message, hint=exc.hint) from None


GATE_KEYS = ("max_increase", "max_params_increase", "max_optimizer_increase", "max_step_time_increase")


def gate_thresholds(settings: Settings):
    """The CI gate's thresholds (preflight.analysis.gate) from the settings' max_*_increase values."""
    return gate_thresholds_from({key: getattr(settings, key) for key in GATE_KEYS}, origin="threshold")


def gate_thresholds_from(values: dict[str, Any], origin: str = "gate"):
    """{"max_increase": "10%", ...} -> GateThresholds; an unknown key or a bad value is a usage error."""
    from preflight.analysis.gate import GateThresholds

    unknown = sorted(set(values) - set(GATE_KEYS))
    if unknown:
        raise UsageError(f"{origin}: unknown threshold {', '.join(unknown)}", hint=f"use {', '.join(GATE_KEYS)}")

    def read(key: str) -> float | None:
        text = values.get(key)
        return validate.fraction(text, f"{origin} {key}") if text not in (None, "") else None

    return GateThresholds(peak=read("max_increase"), params=read("max_params_increase"),
                          optimizer=read("max_optimizer_increase"), step_time=read("max_step_time_increase"))
