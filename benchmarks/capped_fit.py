"""The truth for gpu_backends.py: `model.fit` for a few steps in this fresh process, capped at a budget.

    python -m benchmarks.capped_fit MODEL_PY BATCH_SIZE --backend jax --memory-fraction 0.0070 --steps 3

The cap is the one a user would set, applied before the backend starts: JAX reads
XLA_PYTHON_CLIENT_PREALLOCATE=false and XLA_PYTHON_CLIENT_MEM_FRACTION (a fraction of the whole card) when
it first touches the GPU; PyTorch gets torch.cuda.set_per_process_memory_fraction before Keras allocates.
The first step (JAX compiles and autotunes there) runs inside the cap, as in a real run. Written without
preflight's code: MODEL_PY is loaded here (`build_model()`, `get_dataset()` returning numpy (x, y)).

Prints one JSON line: status "ok" (capped on a GPU, ran), "ran" (no GPU: nothing was capped), "oom" or
"error"; the peak the backend reports (JAX `peak_bytes_in_use`, PyTorch `max_memory_allocated`), the
allocator's limit, the device and the wall time. Importing this module imports only the standard library.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time

# How each backend words running out of device memory (JAX: JaxRuntimeError RESOURCE_EXHAUSTED; PyTorch:
# torch.OutOfMemoryError "CUDA out of memory"; XLA's allocator: "Out of memory while trying to allocate").
OOM_MARKERS = ("RESOURCE_EXHAUSTED", "Out of memory", "out of memory", "OutOfMemoryError")


def is_out_of_memory(text: str) -> bool:
    return any(marker in text for marker in OOM_MARKERS)


def _apply_cap(backend: str, fraction: float | None) -> None:
    """Set the cap before Keras imports the backend (both read their settings once, at start)."""
    os.environ["KERAS_BACKEND"] = backend
    # Where TensorFlow is installed Keras may import it even under JAX/PyTorch; it must not grab the card.
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    if backend == "jax":
        os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
        if fraction is not None:
            os.environ["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{fraction:.6f}"
    elif backend == "torch" and fraction is not None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.set_per_process_memory_fraction(fraction, 0)


def _device_memory(backend: str, fraction: float | None) -> dict:
    """{"device", "capped", "peak_bytes", "limit_bytes"} as the backend reports them; capped: on a GPU
    with a fraction set (on a CPU nothing caps the run)."""
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        stats = (device.memory_stats() if device.platform == "gpu" else None) or {}
        return {"device": f"{device.platform}:{getattr(device, 'device_kind', '')}",
                "capped": bool(stats) and fraction is not None,
                "peak_bytes": stats.get("peak_bytes_in_use"), "limit_bytes": stats.get("bytes_limit")}
    import torch

    if not torch.cuda.is_available():
        return {"device": "cpu", "capped": False, "peak_bytes": None, "limit_bytes": None}
    total = torch.cuda.get_device_properties(0).total_memory
    return {"device": f"cuda:{torch.cuda.get_device_name(0)}", "capped": fraction is not None,
            "peak_bytes": int(torch.cuda.max_memory_allocated()),
            "reserved_peak_bytes": int(torch.cuda.max_memory_reserved()),
            "limit_bytes": int(total * fraction) if fraction is not None else int(total)}


def _load(model_file: str):
    spec = importlib.util.spec_from_file_location("capped_fit_target", model_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _first(data, count: int):
    """The first `count` samples of an array or a tuple/list of arrays (a model with several inputs)."""
    if isinstance(data, (tuple, list)):
        return type(data)(array[:count] for array in data)
    return data[:count]


def run(model_file: str, batch_size: int, backend: str, fraction: float | None, steps: int) -> dict:
    _apply_cap(backend, fraction)
    started = time.perf_counter()
    try:
        module = _load(model_file)
        model = module.build_model()
        x, y = module.get_dataset()
        samples = batch_size * steps  # exactly `steps` batches: fit runs `steps` steps
        model.fit(_first(x, samples), _first(y, samples), batch_size=batch_size, epochs=1, shuffle=False,
                  verbose=0)
    except Exception as exc:  # noqa: BLE001 - the run's outcome is the measurement: report it, whatever it is
        text = f"{type(exc).__name__}: {exc}"
        status = "oom" if is_out_of_memory(text) else "error"
        return {"status": status, "message": text.splitlines()[0][:500] if text else "",
                "seconds": round(time.perf_counter() - started, 2), **_safe_memory(backend, fraction)}
    memory = _device_memory(backend, fraction)
    return {"status": "ok" if memory["capped"] else "ran", "message": "",
            "seconds": round(time.perf_counter() - started, 2), **memory}


def _safe_memory(backend: str, fraction: float | None) -> dict:
    try:
        return _device_memory(backend, fraction)
    except Exception as exc:  # noqa: BLE001 - after an OOM the backend may refuse even a statistics call
        return {"device": None, "capped": None, "peak_bytes": None, "limit_bytes": None,
                "memory_error": f"{type(exc).__name__}: {exc}"[:200]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_file")
    parser.add_argument("batch_size", type=int)
    parser.add_argument("--backend", choices=("jax", "torch"), required=True)
    parser.add_argument("--memory-fraction", type=float, help="the cap, a fraction of the whole card (none: uncapped)")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args(argv)
    result = run(args.model_file, args.batch_size, args.backend, args.memory_fraction, args.steps)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
