"""Reading memory inside the user's own training process (preflight.keras.MemoryCallback), with the dry-run
child's readers (preflight.engine.readers): the device allocator's peak where the backend keeps one, and
host memory (psutil's RSS, the kernel's max RSS) beside it.

The device peak is there for TensorFlow on a GPU or TPU, and on a CPU when TF_CPU_ALLOCATOR_USE_BFC=true was
set before TensorFlow started (TF's default CPU allocator reads 0); for JAX and PyTorch on a GPU. JAX and
PyTorch keep no allocator statistics on a CPU: there `available` is False, `note` says why, and only host
memory is read (the dry run's figures for them, XLA's buffer assignment and the dispatcher's live storages,
come from running the step under preflight's control, which a callback cannot do).
"""
from __future__ import annotations

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

    def reset(self) -> int | None:
        """Close the current window (its peak joins `running_peak`) and start a new one; the device memory
        in use now (weights, optimizer state, buffers kept between steps), or None."""
        if not self.available:
            return None
        self.running_peak = max(self.running_peak, self.window_peak() or 0)
        return self.reader.start_window()

    def window_peak(self) -> int | None:
        return self.reader.window_peak() if self.available else None

    def take_running_peak(self) -> int | None:
        """The peak over every window since the last take (the current one included), then start over."""
        if not self.available:
            return None
        peak = max(self.running_peak, self.window_peak() or 0)
        self.running_peak = 0
        return peak

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
