"""Measure the real training-step peak of a few search configurations, in a fresh BFC child process.

Owns `ConfigMeasurement`, `measure_configs(...)` (parent side) and the child's `main()`. The child runs
with TF_CPU_ALLOCATOR_USE_BFC=true and one thread (notes §1: deterministic peaks), builds each
configuration, runs a warm-up step, resets the allocator stats and measures one more step. This is a
stand-in until the dry-run engine (`preflight.child`/`runner`) measures search configurations; it
uses the same recipe so the numbers are comparable.
"""
from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any



@dataclass(frozen=True)
class ConfigMeasurement:
    values: dict[str, Any]
    batch_size: int
    # "ok"; "error": the user's model, data or loss failed (a trial would fail too);
    # "oom" | "timeout" | "crashed": the dry run itself could not finish (no verdict on the trial)
    status: str
    peak_bytes: int | None = None    # BFC peak of one steady training step
    step_seconds: float | None = None
    warmup_seconds: float | None = None  # first step: build, trace, optimizer slots
    message: str = ""
    fix: str = ""                    # for "error": the advice that fits the message (preflight.step_errors)
    source: str = "measured (BFC CPU child)"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def _one_batch(data: Any, batch_size: int) -> Any:
    """The first `batch_size` rows of (x, y) numpy data, tiled if there are fewer; None otherwise."""
    import numpy as np

    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        return None
    rows = []
    for array in data:
        array = np.asarray(array)
        reps = -(-batch_size // len(array))
        rows.append(np.concatenate([array] * reps)[:batch_size] if reps > 1 else array[:batch_size])
    return tuple(rows)


def measure_configs(hypermodel: Any, configs: list[dict[str, Any]], batch_size: int, data: Any = None,
                    *, timeout_seconds: float = 300.0) -> list[ConfigMeasurement]:
    """Dry-run each configuration for one measured step, each in its own fresh child. Order is kept.

    One child per configuration: a child that trained one model keeps hundreds of MiB in the
    allocator after `clear_session` + `gc.collect` (measured: 350-400 MiB after a 460 MiB config),
    which would leak into the next configuration's peak.
    """
    return [_measure_in_child(hypermodel, values, batch_size, data, timeout_seconds) for values in configs]


def _measure_in_child(hypermodel: Any, values: dict[str, Any], batch_size: int, data: Any,
                      timeout_seconds: float) -> ConfigMeasurement:
    import cloudpickle

    _pickle_by_value_if_user_code(getattr(hypermodel, "build_fn", hypermodel))
    config_batch = int(values.get("batch_size", batch_size))
    spec = {"hypermodel": hypermodel, "configs": [values], "batch_size": batch_size,
            "batch": _one_batch(data, config_batch)}
    with tempfile.TemporaryDirectory(prefix="preflight-tuner-") as tmp:
        spec_path = Path(tmp) / "spec.pkl"
        spec_path.write_bytes(cloudpickle.dumps(spec))
        env = dict(os.environ, TF_CPU_ALLOCATOR_USE_BFC="true", TF_CPP_MIN_LOG_LEVEL="2",
                   PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        try:
            completed = subprocess.run(
                [sys.executable, "-m", "preflight.tuner.measure", str(spec_path)],
                capture_output=True, text=True, env=env, timeout=timeout_seconds,
            )
        except subprocess.TimeoutExpired:
            return ConfigMeasurement(values=values, batch_size=config_batch, status="timeout",
                                     message=f"timed out after {timeout_seconds:.0f} s")
    lines = [line for line in completed.stdout.splitlines() if line.startswith("@@ ")]
    if not lines:
        tail = " | ".join((completed.stderr or "").strip().splitlines()[-5:])
        # SIGKILL without a Python error is the kernel's OOM killer
        status = "oom" if completed.returncode == -9 else "crashed"
        return ConfigMeasurement(values=values, batch_size=config_batch, status=status,
                                 message=f"child exited {completed.returncode}: {tail}"[:800])
    result = json.loads(lines[-1][len("@@ "):])
    return ConfigMeasurement(**{k: v for k, v in result.items() if k in ConfigMeasurement.__dataclass_fields__})


def synthetic_batch(model: Any, batch_size: int, seed: int = 0) -> tuple[Any, Any]:
    """Random inputs shaped like the model's, and targets its loss accepts."""
    import numpy as np

    rng = np.random.default_rng(seed)
    inputs = []
    for tensor in model.inputs:
        shape = (batch_size, *[int(d) for d in tensor.shape[1:]])
        dtype = str(getattr(tensor.dtype, "name", tensor.dtype))
        inputs.append(np.zeros(shape, dtype) if "int" in dtype else rng.standard_normal(shape).astype(dtype))
    loss_name = str(getattr(model, "loss", "") or "").lower()
    targets = []
    for tensor in model.outputs:
        per_sample = [int(d) for d in tensor.shape[1:]]
        if "sparse" in loss_name:
            classes = per_sample[-1] if per_sample else 2
            targets.append(rng.integers(0, classes, size=(batch_size, *per_sample[:-1])))
        else:
            targets.append(rng.random((batch_size, *per_sample)).astype("float32"))
    x = inputs[0] if len(inputs) == 1 else inputs
    y = targets[0] if len(targets) == 1 else targets
    return x, y


def _measure_one(hypermodel: Any, values: dict[str, Any], batch_size: int, batch: Any,
                 built: dict[str, Any]) -> dict[str, Any]:
    """One configuration's measured step. `built` gets the active values and the loss once the model
    exists, so a failing step can still be described."""
    import time

    import tensorflow as tf

    from preflight.step_errors import loss_name
    from preflight.tuner.space import build_and_values

    model, active = build_and_values(hypermodel, values)
    built.update(values=active, loss=loss_name(model))
    batch_size = int(active.get("batch_size", batch_size))
    if batch is not None:
        x, y = batch[0][:batch_size], batch[1][:batch_size]
    else:
        x, y = synthetic_batch(model, batch_size)
    start = time.perf_counter()
    model.train_on_batch(x, y)  # warm-up: trace, optimizer slots
    warmup_seconds = time.perf_counter() - start
    tf.config.experimental.reset_memory_stats("CPU:0")
    start = time.perf_counter()
    model.train_on_batch(x, y)
    step_seconds = time.perf_counter() - start
    peak = int(tf.config.experimental.get_memory_info("CPU:0")["peak"])
    return {"values": active, "batch_size": batch_size, "status": "ok", "peak_bytes": peak,
            "step_seconds": step_seconds, "warmup_seconds": warmup_seconds}


def main(argv: list[str] | None = None) -> int:
    import pickle

    from preflight.step_errors import error_line, fix_for

    argv = sys.argv[1:] if argv is None else argv
    spec = pickle.loads(Path(argv[0]).read_bytes())
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    for values in spec["configs"]:
        built: dict[str, Any] = {}
        try:
            result = _measure_one(spec["hypermodel"], values, spec["batch_size"], spec["batch"], built)
        except tf.errors.ResourceExhaustedError as exc:
            result = {"values": values, "batch_size": int(values.get("batch_size", spec["batch_size"])),
                      "status": "oom", "message": error_line(exc)}
        except Exception as exc:  # noqa: BLE001 - one bad configuration must not hide the others
            message = f"{type(exc).__name__}: {error_line(exc)}"
            result = {"values": built.get("values", values),
                      "batch_size": int(values.get("batch_size", spec["batch_size"])),
                      "status": "error", "message": message, "fix": fix_for(message, built.get("loss"))}
        print("@@ " + json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())


def engine_measure(path: str | os.PathLike, *, timeout_seconds: float = 300.0, measured_steps: int = 2,
                   single_thread: bool = True):
    """A `measure` for `analyse_space` that runs the dry-run engine (`preflight.runner`) on a tune.py:
    one engine child per configuration, its values passed as `hp_values`. Use it when the search comes
    from a file; `measure_configs` covers objects living in a notebook."""
    def measure(hypermodel: Any, configs: list[dict[str, Any]], batch_size: int,
                data: Any = None) -> list[ConfigMeasurement]:
        from preflight.errors import EXIT_USER_CODE, PreflightError
        from preflight.runner import ProbeJob, run_probes

        results = []
        for values in configs:
            config_batch = int(values.get("batch_size", batch_size))
            job = ProbeJob(source={"kind": "file", "path": str(path), "hp_values": values},
                           batch_sizes=[config_batch], measured_steps=measured_steps,
                           timeout_seconds=timeout_seconds, single_thread=single_thread)
            try:
                outcome = run_probes(job)
            except PreflightError as exc:
                if exc.exit_code != EXIT_USER_CODE:
                    raise
                # the engine raises for a step that fails on its first batch: the user's error
                results.append(ConfigMeasurement(values=values, batch_size=config_batch, status="error",
                                                 message=exc.message[:800], fix=exc.hint or "",
                                                 source="dry-run engine"))
                continue
            probe = outcome.probes[0] if outcome.probes else None
            if probe is None or probe.status != "ok":
                results.append(ConfigMeasurement(values=values, batch_size=config_batch,
                                                 status=probe.status if probe else "crashed",
                                                 message=(probe.message if probe else "no probe result")[:800],
                                                 source="dry-run engine"))
                continue
            results.append(ConfigMeasurement(values=values, batch_size=config_batch, status="ok",
                                             peak_bytes=probe.peak_bytes, step_seconds=probe.step_seconds,
                                             warmup_seconds=probe.warmup_seconds,
                                             source="measured (dry-run engine, BFC CPU)"))
        return results

    return measure
