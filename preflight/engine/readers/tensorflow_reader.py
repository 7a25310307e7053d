"""TensorFlow: the allocator's own peak, reset before each measured step (BFC on CPU with
TF_CPU_ALLOCATOR_USE_BFC=true, set by the parent; BFC on GPU; the TPU runtime's statistics)."""
from __future__ import annotations

import os

from preflight.engine.cpu import cpu_description
from preflight.measurements import DeviceInfo


class TensorFlowReader:
    backend = "tensorflow"

    def __init__(self, job: dict):
        import tensorflow as tf

        self.tf = tf
        if job.get("single_thread"):
            # One inter-op and one intra-op thread make the peak reproducible (notes §1), at a speed cost.
            tf.config.threading.set_inter_op_parallelism_threads(1)
            tf.config.threading.set_intra_op_parallelism_threads(1)
        gpus = tf.config.list_physical_devices("GPU")
        limit = job.get("memory_limit_bytes")
        if gpus and limit:
            # A logical device of the budget's size makes the GPU behave like a smaller card.
            tf.config.set_logical_device_configuration(
                gpus[0], [tf.config.LogicalDeviceConfiguration(memory_limit=int(limit) // 2**20)])
        self.device = self._describe(limit)
        self.method = f"allocator peak after reset_memory_stats ({self.device.allocator})"
        self._name = {"GPU": "GPU:0", "TPU": "TPU:0"}.get(self.device.kind, "CPU:0")

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
    return model.train_function(iter([batch]))
