"""JAX: on a GPU or TPU the device allocator's statistics; on a CPU, XLA's buffer assignment of the
compiled train step.

- GPU/TPU: `memory_stats()["peak_bytes_in_use"]`. JAX has no reset of the peak, and its peak is set in the
  first step (compilation, autotuning: gpu-findings.md), so the figure is the process's peak so far, first
  step included: an upper bound for a smaller batch probed after a larger one. The parent caps the process
  at the budget (XLA_PYTHON_CLIENT_PREALLOCATE=false, XLA_PYTHON_CLIENT_MEM_FRACTION; runner).
- CPU: JAX keeps no allocator statistics there (`memory_stats()` is None). The step jax.jit compiles has a
  fixed buffer assignment: arguments (weights, optimizer slots, metrics, the batch) + temporaries + outputs
  - outputs aliased to donated arguments is what it holds at most, exactly, in every process. The steps
  still run, for the time, the loss and any error.
"""
from __future__ import annotations

from preflight.engine.cpu import cpu_description
from preflight.common.measurements import DeviceInfo

STATIC_METHOD = "XLA buffer assignment of the compiled train step (arguments + temporaries + outputs - aliased)"


class JaxReader:
    backend = "jax"

    def __init__(self, job: dict):
        # Nothing touches JAX's devices yet: the user's file may set XLA_FLAGS (several host devices) or a
        # keras.distribution first (issue 25). The first use of the device starts the backend.
        self._limit = job.get("memory_limit_bytes")
        self._started = False
        self.last_analysis: dict[str, int] | None = None

    def _start(self) -> None:
        if self._started:
            return
        import jax
        import keras

        self._started = True
        self._device = jax.devices()[0]
        self.static = self._device.memory_stats() is None
        kind = {"gpu": "GPU", "tpu": "TPU"}.get(self._device.platform, "CPU")
        name = cpu_description() if kind == "CPU" else str(getattr(self._device, "device_kind", self._device))
        allocator = "XLA buffer assignment (no allocator statistics on CPU)" if self.static else \
            f"XLA {kind} allocator (peak since start, no reset)"
        distribution = keras.distribution.distribution()
        devices, replicas = len(jax.devices(self._device.platform)), 1
        if distribution is not None:
            # The step spans the mesh's devices; the batch is split over its batch axis only.
            mesh = distribution.device_mesh
            devices = int(mesh.devices.size)
            batch_axis = getattr(distribution, "batch_dim_name", None)
            replicas = int(mesh.shape[mesh.axis_names.index(batch_axis)]) if batch_axis in mesh.axis_names else 1
        self._info = DeviceInfo(kind, name, allocator, self._limit, self.backend, deterministic=self.static,
                                logical_devices=devices,
                                strategy=type(distribution).__name__ if distribution is not None else "",
                                replicas=replicas)
        self._method = STATIC_METHOD if self.static else \
            "peak_bytes_in_use of the device allocator, first step (compilation, autotuning) included"

    @property
    def device(self) -> DeviceInfo:
        self._start()
        return self._info

    @property
    def method(self) -> str:
        self._start()
        return self._method

    def new_trace(self, model) -> None:
        model.make_train_function(force=True)

    def train_step(self, model, batch):
        return fit_step(model, batch)

    def static_peak(self, model, batch) -> int | None:
        """On a CPU: the bytes the compiled step's buffers take, from XLA's buffer assignment. Under a
        keras.distribution the step is one SPMD program: its analysis is one device's."""
        self._start()
        if not self.static:
            return None
        self.last_analysis = compiled_step_memory(model, batch)
        return self.last_analysis["total_bytes"]

    def start_window(self) -> int | None:
        self._start()
        if self.static:
            return None
        return int(self._device.memory_stats().get("bytes_in_use", 0))

    def window_peak(self) -> int:
        if self.static:
            return int(self.last_analysis["total_bytes"]) if self.last_analysis else 0
        return int(self._device.memory_stats().get("peak_bytes_in_use", 0))


def compiled_step_memory(model, batch) -> dict[str, int]:
    """XLA's memory analysis of the train step model.fit compiles (jit of train_step, state donated)."""
    model._symbolic_build(data_batch=batch)
    batch = _distributed(batch)
    state = model._get_jax_state(trainable_variables=True, non_trainable_variables=True,
                                 optimizer_variables=True, metrics_variables=True, purge_model_variables=False)
    return state_step_memory(model, state, batch)


def state_step_memory(model, state, batch) -> dict[str, int]:
    """The same analysis from the state fit hands its train function (the callback's way in: fit has purged
    the model's own copies by then). Compiles the step once more; runs nothing."""
    import jax
    import keras

    # As fit's jit (keras' JAX trainer, make_train_function): under a distribution the new state comes out
    # with the state's own shardings; without them XLA lays the outputs out its own way (ModelParallel:
    # 4.8 KB more per device than fit's step).
    out_shardings = None
    if keras.distribution.distribution() is not None:
        out_shardings = (None, model._get_state_sharding_spec())
    step = jax.jit(model.train_step, donate_argnums=0, out_shardings=out_shardings)
    analysis = step.lower(state, batch).compile().memory_analysis()
    parts = {name: int(getattr(analysis, f"{name}_size_in_bytes")) for name in ("argument", "output", "temp", "alias")}
    return {**{f"{k}_bytes": v for k, v in parts.items()},
            "total_bytes": parts["argument"] + parts["temp"] + parts["output"] - parts["alias"]}


def fit_step(model, batch):
    """One step as JAXTrainer.fit runs it: the state handed in (the model's own copies purged, as fit
    does, so weights are not held twice), the new state synced back."""
    import keras

    model._symbolic_build(data_batch=batch)  # builds the optimizer's slots on the first call, as fit does
    slots = len(getattr(model.optimizer, "variables", []))
    if model.train_function is None or (keras.distribution.distribution() is not None
                                        and getattr(model, "_preflight_traced_slots", None) != slots):
        # Under a distribution the step is traced with the state's shardings, so fit traces it once the
        # optimizer's slots exist; a step traced before (new_trace, ahead of the first build) would not match.
        model.make_train_function(force=True)
        model._preflight_traced_slots = slots
    state = model._get_jax_state(trainable_variables=True, non_trainable_variables=True,
                                 optimizer_variables=True, metrics_variables=True, purge_model_variables=True)
    model._jax_state_synced = False
    logs, state = model.train_function(state, iter([_distributed(batch)]))
    trainable, non_trainable, optimizer, metrics = state
    model._jax_state = {"trainable_variables": trainable, "non_trainable_variables": non_trainable,
                        "optimizer_variables": optimizer, "metrics_variables": metrics}
    model.jax_state_sync()
    import jax

    return jax.block_until_ready(logs)  # dispatch is asynchronous: the step's time ends when its results exist


def _distributed(batch):
    """The batch laid out as fit lays it out under a keras.distribution (split over the data axis), so the
    compiled step's analysis holds one device's slice; unchanged without one."""
    import jax
    import keras

    distribution = keras.distribution.distribution()
    if distribution is None:
        return batch
    return jax.tree_util.tree_map(
        lambda a: jax.device_put(a, distribution.get_data_layout(a.shape).backend_layout), batch)
