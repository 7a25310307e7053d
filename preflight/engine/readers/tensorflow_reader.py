"""TensorFlow: the allocator's own peak, reset before each measured step (BFC on CPU with
TF_CPU_ALLOCATOR_USE_BFC=true, set by the parent; BFC on GPU; the TPU runtime's statistics).

The user's file sets up its devices first (issue 25): a model.py that starts with
`tf.config.set_logical_device_configuration(...)` or `set_memory_growth(...)` fails once TensorFlow's devices
are initialized, so this reader touches nothing that initializes them until the device is first asked for
(`device`, after the file ran). The budget's GPU limit goes through the file's own calls
(`_DeviceSetupWatch`): a logical GPU device the file asks for is capped at the budget, and each conflict
becomes a note in `DeviceInfo.setup_notes`."""
from __future__ import annotations

import os
from dataclasses import replace

from preflight.engine.cpu import cpu_description
from preflight.common.measurements import DeviceInfo
from preflight.common.units import format_bytes

MIB = 2**20


class TensorFlowReader:
    backend = "tensorflow"

    def __init__(self, job: dict):
        import tensorflow as tf

        self.tf = tf
        if job.get("single_thread"):
            # One inter-op and one intra-op thread make a process's steps agree (notes §1), at a speed cost;
            # processes still differ from each other (README "Steps").
            tf.config.threading.set_inter_op_parallelism_threads(1)
            tf.config.threading.set_intra_op_parallelism_threads(1)
        gpus = tf.config.list_physical_devices("GPU")  # lists without initializing the devices
        self._limit = job.get("memory_limit_bytes")
        # Only a dry-run child (a job with a source) watches the file's setup; a callback in the user's
        # own process (preflight.engine.run_sampler) leaves tf.config as it is.
        self._watch = _DeviceSetupWatch(tf, gpus[0] if gpus and self._limit else None, self._limit,
                                        patch=bool(job.get("source")))
        self._device: DeviceInfo | None = None
        self._name = "GPU:0" if gpus else "CPU:0"

    @property
    def device(self) -> DeviceInfo:
        """The measured device; the first call initializes TensorFlow's devices (after the user's file)."""
        if self._device is None:
            self._device = replace(self._describe(self._limit), logical_devices=self._logical_count(),
                                   setup_notes=self._watch.notes(self._logical_count()))
            self._name = {"GPU": "GPU:0", "TPU": "TPU:0"}.get(self._device.kind, "CPU:0")
        return self._device

    @property
    def method(self) -> str:
        return f"allocator peak after reset_memory_stats ({self.device.allocator})"

    def _logical_count(self) -> int:
        kind = "GPU" if self.tf.config.list_physical_devices("GPU") else "CPU"
        return max(1, len(self.tf.config.list_logical_devices(kind)))

    def _describe(self, limit: int | None) -> DeviceInfo:
        tf = self.tf
        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return DeviceInfo("GPU", details.get("device_name", "GPU:0"), "BFC (GPU)", limit, self.backend)
        tpus = tf.config.list_logical_devices("TPU")
        if tpus:
            return DeviceInfo("TPU", tpus[0].name, "TPU runtime", limit, self.backend)
        allocator = "BFC (TF_CPU_ALLOCATOR_USE_BFC)" if os.environ.get("TF_CPU_ALLOCATOR_USE_BFC") == "true" \
            else "default CPU allocator"
        return DeviceInfo("CPU", cpu_description(), allocator, limit, self.backend)

    def new_trace(self, model) -> None:
        # A fresh trace per batch size: after two shapes tf.function would generalize the batch axis, and
        # that generic graph's peak differs from the fixed-shape step (about 5 % lower for a small CNN).
        model.make_train_function(force=True)

    def train_step(self, model, batch):
        return fit_step(model, batch)

    def static_peak(self, model, batch) -> int | None:
        return None  # the TF executor's peak varies with op scheduling: only a run tells it

    def start_window(self) -> int:
        self.device  # noqa: B018 - initializes the devices (after the user's file) and names the one measured
        resident = self.tf.config.experimental.get_memory_info(self._name)["current"]
        self.tf.config.experimental.reset_memory_stats(self._name)
        return int(resident)

    def window_peak(self) -> int:
        return int(self.tf.config.experimental.get_memory_info(self._name)["peak"])


def fit_step(model, batch):
    """One step handed to train_step exactly as model.fit hands it (train_on_batch would pass
    (x, y, sample_weight) even when y is None, which breaks a custom train_step written for fit)."""
    if model.train_function is None:
        model.make_train_function()
    strategy = getattr(model, "_distribute_strategy", None)
    if strategy is not None and strategy.num_replicas_in_sync > 1:
        import tensorflow as tf

        # Under a strategy fit builds the model and its optimizer's slots in the strategy's scope before the
        # first step, then hands each replica its slice of the global batch (a distributed iterator).
        if not model.optimizer.built:
            model._maybe_symbolic_build(data_batch=tuple(batch) if isinstance(batch, list) else batch)
        dataset = tf.data.Dataset.from_tensors(tuple(b for b in batch) if isinstance(batch, list) else batch)
        return model.train_function(iter(strategy.experimental_distribute_dataset(dataset)))
    return model.train_function(iter([batch]))


class _DeviceSetupWatch:
    """Lets the user's device setup run first and puts the budget through it.

    Before the file runs, the budget's limit is one logical GPU device of the budget's size (set, not yet
    initialized: a later call replaces it). The file's own `set_logical_device_configuration` on that GPU
    keeps its devices, each capped at the budget; its `set_memory_growth` is left out while a limit is set
    (TensorFlow refuses both on one GPU). CPU devices are left as the file sets them."""

    def __init__(self, tf, gpu, limit_bytes: int | None, patch: bool = True):
        self._tf, self._gpu, self._limit = tf, gpu, limit_bytes
        self._notes: list[str] = []
        if gpu is not None:
            tf.config.set_logical_device_configuration(
                gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=int(limit_bytes) // MIB)])
        if patch:
            self._patch(tf)

    def _patch(self, tf) -> None:
        original_logical = tf.config.set_logical_device_configuration
        original_growth = tf.config.experimental.set_memory_growth

        def set_logical_device_configuration(device, logical_devices):
            if device == self._gpu and logical_devices:
                logical_devices = [self._capped(d) for d in logical_devices]
            return original_logical(device, logical_devices)

        def set_memory_growth(device, enable):
            if device == self._gpu:
                self._notes.append(
                    f"The file turns on memory growth for {device.name}; preflight kept its allocator limit of "
                    f"{format_bytes(self._limit)} instead (TensorFlow takes one or the other): the real run grows "
                    "on demand up to the card's memory, the dry run stopped at the budget.")
                return None
            return original_growth(device, enable)

        for module in (tf.config, tf.config.experimental):
            for name, fn in (("set_logical_device_configuration", set_logical_device_configuration),
                             ("set_virtual_device_configuration", set_logical_device_configuration),
                             ("set_memory_growth", set_memory_growth)):
                if hasattr(module, name) and (module is tf.config.experimental or name != "set_memory_growth"):
                    setattr(module, name, fn)

    def _capped(self, device):
        asked = getattr(device, "memory_limit", None)
        budget_mib = int(self._limit) // MIB
        if asked is not None and asked <= budget_mib:
            if asked < budget_mib:
                self._notes.append(f"The file limits a logical GPU device to {asked} MiB, under the budget of "
                                   f"{format_bytes(self._limit)}: the dry run measured under the file's limit.")
            return device
        self._notes.append(
            f"The file asks for a logical GPU device of {'all the card' if asked is None else f'{asked} MiB'}; "
            f"preflight capped it at the budget, {format_bytes(self._limit)}.")
        return self._tf.config.LogicalDeviceConfiguration(memory_limit=budget_mib)

    def notes(self, logical_devices: int) -> list[str]:
        notes = list(self._notes)
        if self._gpu is None and logical_devices > 1:
            notes.append(f"The file splits the CPU into {logical_devices} logical devices; they share one CPU "
                         "allocator, so the measured peak and the budget are the total over them.")
        return notes
