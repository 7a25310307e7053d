"""One memory reader per Keras backend, used inside the dry-run child (preflight.child, engine.probe).

A reader starts its backend (caps it at the budget where the device allows), says which device it measures
and how (`device`, `method`), runs one training step exactly as model.fit runs it (`train_step`), and reads
the step's peak (`start_window`, `window_peak`). Where the figure comes from the compiled program instead of
an allocator (JAX on a CPU), `static_peak` gives it before the step runs. The parent sets KERAS_BACKEND
before this process imports Keras (preflight.engine.runner); `start_reader` follows it.
"""
from __future__ import annotations

import os


def start_reader(job: dict):
    backend = job.get("backend") or os.environ.get("KERAS_BACKEND") or "tensorflow"
    if backend == "jax":
        from preflight.engine.readers.jax_reader import JaxReader

        return JaxReader(job)
    if backend == "torch":
        from preflight.engine.readers.torch_reader import TorchReader

        return TorchReader(job)
    from preflight.engine.readers.tensorflow_reader import TensorFlowReader

    return TensorFlowReader(job)


def fit_step(model, batch):
    """One training step as model.fit runs it, on the backend this process's Keras runs on."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        from preflight.engine.readers.jax_reader import fit_step as step
    elif backend == "torch":
        from preflight.engine.readers.torch_reader import fit_step as step
    else:
        from preflight.engine.readers.tensorflow_reader import fit_step as step
    return step(model, batch)
