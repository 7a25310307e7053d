"""PyTorch: on a GPU the caching allocator's `max_memory_allocated` after `reset_peak_memory_stats`,
under `set_per_process_memory_fraction` of the budget; on a CPU, where PyTorch keeps no statistics, the
bytes of every tensor storage created during the step, followed through PyTorch's dispatcher
(TorchDispatchMode) until it is freed, added to the tensors resident before the step.
"""
from __future__ import annotations

import weakref

from torch.utils._python_dispatch import TorchDispatchMode  # this module is imported under torch only

from preflight.engine.cpu import cpu_description
from preflight.common.measurements import DeviceInfo

CPU_METHOD = ("live tensor storages followed through PyTorch's dispatcher during the step, "
              "plus the tensors resident before it")


class TorchReader:
    backend = "torch"

    def __init__(self, job: dict):
        import torch

        self.torch = torch
        limit = job.get("memory_limit_bytes")
        self.cuda = torch.cuda.is_available()
        if job.get("single_thread"):
            torch.set_num_threads(1)
        if self.cuda:
            total = torch.cuda.get_device_properties(0).total_memory
            if limit:
                torch.cuda.set_per_process_memory_fraction(min(1.0, int(limit) / total), 0)
            self.device = DeviceInfo("GPU", torch.cuda.get_device_name(0), "PyTorch CUDA caching allocator",
                                     limit, self.backend)
            self.method = "max_memory_allocated after reset_peak_memory_stats"
        else:
            self.device = DeviceInfo("CPU", cpu_description(), "PyTorch CPU allocator (no statistics)", limit,
                                     self.backend)
            self.method = CPU_METHOD
        self._tracker = None
        self._resident = 0
        self._model = None

    def new_trace(self, model) -> None:
        model.make_train_function(force=True)

    def train_step(self, model, batch):
        """One step as TorchTrainer.fit runs it: training mode, the batch handed over in a list."""
        self._model = model
        if self._tracker is not None:
            with self._tracker:
                return fit_step(model, batch)
        return fit_step(model, batch)

    def static_peak(self, model, batch) -> int | None:
        return None

    def start_window(self) -> int:
        if self.cuda:
            self.torch.cuda.synchronize()
            self.torch.cuda.reset_peak_memory_stats()
            return int(self.torch.cuda.memory_allocated())
        self._resident = resident_tensor_bytes(self._model) if self._model is not None else 0
        self._tracker = LiveStorageBytes()
        return self._resident

    def window_peak(self) -> int:
        if self.cuda:
            self.torch.cuda.synchronize()
            return int(self.torch.cuda.max_memory_allocated())
        peak = self._resident + (self._tracker.peak if self._tracker else 0)
        self._tracker = None
        return int(peak)


def fit_step(model, batch):
    """One step as TorchTrainer.fit runs it: training mode, the batch handed over in a list."""
    if model.train_function is None:
        model.make_train_function()
    model.train()
    logs = model.train_function([batch])
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()  # kernels run asynchronously: the step's time ends when they have
    return logs


def resident_tensor_bytes(model) -> int:
    """Bytes of the distinct storages behind the model's and its optimizer's variables."""
    storages: dict[int, int] = {}
    variables = list(model.variables) + list(getattr(model.optimizer, "variables", []) or [])
    for variable in variables:
        value = getattr(variable, "value", variable)
        storage = getattr(value, "untyped_storage", None)
        if storage is not None:
            st = storage()
            storages[st.data_ptr()] = st.nbytes()
    return sum(storages.values())


class LiveStorageBytes(TorchDispatchMode):
    """The peak of the bytes held by storages created inside the `with` block, each counted from the op
    that made it until Python drops its last reference (the autograd graph holds saved tensors alive)."""

    def __init__(self):
        super().__init__()
        self.current = 0
        self.peak = 0
        self._live: set[int] = set()

    def _freed(self, key: int, nbytes: int) -> None:
        self.current -= nbytes
        self._live.discard(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        from torch.utils._pytree import tree_flatten

        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if not hasattr(tensor, "untyped_storage"):
                continue
            storage = tensor.untyped_storage()
            key = id(storage)
            if key in self._live:
                continue
            nbytes = storage.nbytes()
            self._live.add(key)
            self.current += nbytes
            self.peak = max(self.peak, self.current)
            weakref.finalize(storage, self._freed, key, nbytes)
        return out
