"""Reading memory inside the user's own training process (preflight.keras.MemoryCallback), with the dry-run
child's readers (preflight.engine.readers): the device allocator's peak where the backend keeps one, and
host memory (psutil's RSS, the kernel's max RSS) beside it.

The device peak is there for TensorFlow on a GPU or TPU, and on a CPU when TF_CPU_ALLOCATOR_USE_BFC=true was
set before TensorFlow started (TF's default CPU allocator reads 0); for JAX and PyTorch on a GPU. JAX and
PyTorch keep no allocator statistics on a CPU: there the first steps are measured as the dry run measures
them (StepMeter: XLA's buffer assignment of the compiled step, or the storages followed through PyTorch's
dispatcher), by wrapping the train function fit calls for those steps and putting fit's own back after.
"""
from __future__ import annotations

import itertools
import os
import resource
import sys
from dataclasses import replace

NO_BFC_NOTE = ("TensorFlow's default CPU allocator keeps no statistics: set TF_CPU_ALLOCATOR_USE_BFC=true "
               "before TensorFlow starts (os.environ, before `import tensorflow` or `import keras`)")


class RunSampler:
    """`reset()` starts a new peak window (returning the memory held at that moment), `window_peak()` is the
    peak since; `running_peak` keeps the max of every window closed so far, so a per-step window inside an
    epoch does not lose the epoch's peak."""

    def __init__(self, backend: str):
        import psutil

        from preflight.engine.readers import start_reader

        self._process = psutil.Process()
        self._psutil = psutil
        self.reader = start_reader({"backend": backend})
        self.device = replace(self.reader.device, method=self.reader.method)
        self.available, self.note = _peak_available(self.reader, backend)
        self.running_peak = 0
        self.meter: StepMeter | None = None

    def measure_steps(self, model, steps: int) -> None:
        """JAX or PyTorch on a CPU: measure the next `steps` steps of `model.fit` with a StepMeter."""
        backend = self.reader.backend
        if self.available or self.device.kind != "CPU" or backend not in ("jax", "torch"):
            return
        self.meter = StepMeter(model, backend, steps)
        self.available, self.note = True, ""
        self.device = replace(self.device, method=f"{self.reader.method}; the first {steps} steps of fit")

    def stop_measuring(self) -> None:
        if self.meter is not None:
            self.meter.restore()

    def reset(self) -> int | None:
        """Close the current window (its peak joins `running_peak`) and start a new one; the device memory
        in use now (weights, optimizer state, buffers kept between steps), or None."""
        if not self.available:
            return None
        self.running_peak = max(self.running_peak, self.window_peak() or 0)
        if self.meter is not None:
            self.meter.pending_peak = None
            return self.meter.held()
        return self.reader.start_window()

    def window_peak(self) -> int | None:
        if self.meter is not None:
            return self.meter.pending_peak
        return self.reader.window_peak() if self.available else None

    def take_running_peak(self) -> int | None:
        """The peak over every window since the last take (the current one included), then start over; None
        where a StepMeter measured no step in that time."""
        if not self.available:
            return None
        peak = max(self.running_peak, self.window_peak() or 0)
        self.running_peak = 0
        if self.meter is None:
            return peak
        self.meter.pending_peak = None
        return peak or None

    def rss(self) -> int:
        return int(self._process.memory_info().rss)

    def max_rss(self) -> int:
        """The process's largest RSS so far (getrusage; kilobytes on Linux, bytes on macOS)."""
        value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(value if sys.platform == "darwin" else value * 1024)

    def host_total(self) -> int:
        return int(self._psutil.virtual_memory().total)

    def device_total(self) -> int | None:
        """The device's memory where the backend says (JAX's bytes_limit, PyTorch's total_memory)."""
        reader = self.reader
        if self.device.kind == "CPU":
            return None
        if self.device.backend == "jax":
            return (reader._device.memory_stats() or {}).get("bytes_limit")
        if self.device.backend == "torch":
            return int(reader.torch.cuda.get_device_properties(0).total_memory)
        return None  # TensorFlow does not say; a budget or a target gives the limit


def _peak_available(reader, backend: str) -> tuple[bool, str]:
    if backend == "jax" and getattr(reader, "static", False):
        return False, "JAX keeps no allocator statistics on a CPU (memory_stats() is None); host RSS only"
    if backend == "torch" and not getattr(reader, "cuda", False):
        return False, "PyTorch keeps no allocator statistics on a CPU; host RSS only"
    if backend == "tensorflow" and reader.device.kind == "CPU" and \
            os.environ.get("TF_CPU_ALLOCATOR_USE_BFC") != "true":
        return False, NO_BFC_NOTE
    return True, ""


class StepMeter:
    """The dry run's own measurement of a step, inside `model.fit`, for backends with no allocator statistics on
    a CPU: `model.train_function` is wrapped for the next `steps` calls, then fit's own is put back, so the
    steps after cost what they cost without preflight.

    JAX: XLA's buffer assignment of the step, from the state and the first batch fit hands in (one more
    compile of the step, once; nothing extra runs). PyTorch: the tensors resident before the step plus the
    storages created during it, followed through the dispatcher (a few microseconds per op while measured).
    `pending_peak` is the last measured step's peak until the sampler takes it."""

    def __init__(self, model, backend: str, steps: int):
        self.model = model
        self.backend = backend
        self.left = steps
        self.original = model.train_function
        self.pending_peak: int | None = None
        self._analysis: dict[str, int] | None = None
        model.train_function = self._jax_step if backend == "jax" else self._torch_step

    def held(self) -> int | None:
        """Memory held between steps where it can be read: PyTorch's resident tensors; None under JAX, whose
        CPU buffers are not counted anywhere."""
        if self.backend != "torch":
            return None
        from preflight.engine.readers.torch_reader import resident_tensor_bytes

        return resident_tensor_bytes(self.model)

    def restore(self) -> None:
        """Put fit's own train function back (training ended before the measured steps ran out)."""
        if self.left > 0:
            self.model.train_function = self.original
            self.left = 0

    def _measured(self) -> None:
        self.left -= 1
        if self.left <= 0:
            self.model.train_function = self.original

    def _jax_step(self, state, iterator):
        from preflight.engine.readers.jax_reader import state_step_memory

        first = next(iterator)
        if self._analysis is None:  # the compiled step's buffers are the same at every step
            self._analysis = state_step_memory(self.model, state, first)
        self.pending_peak = self._analysis["total_bytes"]
        original = self.original
        self._measured()
        return original(state, itertools.chain([first], iterator))

    def _torch_step(self, data):
        from preflight.engine.readers.torch_reader import LiveStorageBytes, resident_tensor_bytes

        resident = resident_tensor_bytes(self.model)
        tracker = LiveStorageBytes()
        with tracker:
            logs = self.original(data)
        self.pending_peak = resident + tracker.peak
        self._measured()
        return logs
