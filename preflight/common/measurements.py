"""Plain data measured by the dry-run child, sent to the parent as JSON.

Frozen dataclasses with to_dict/from_dict. Nothing here imports TensorFlow.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

PROBE_STATUSES = ("ok", "oom", "timeout", "crashed", "error")


def _from_dict(cls, data: dict[str, Any]):
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class LayerInfo:
    name: str
    type: str
    output_shape: list  # per-sample shape with None for the batch axis; [] when unknown
    params: int
    activation_bytes_per_sample: int
    compute_dtype: str = ""  # the dtype the layer computes in (bfloat16 under a mixed policy); "" unknown

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LayerInfo":
        return _from_dict(cls, data)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    params_total: int
    params_trainable: int
    params_non_trainable: int
    param_bytes: int                       # all weights, exact from the variables
    trainable_param_bytes: int             # what gradients mirror
    param_bytes_by_dtype: dict[str, int]
    optimizer: str                         # class name
    optimizer_bytes: int                   # all optimizer variables once built, exact
    optimizer_slots_per_weight: float      # optimizer_bytes / trainable_param_bytes
    input_bytes_per_sample: int            # x + y (+ sample weights) of one sample
    jit_compile: bool
    dtype_policy: str
    layers: list[LayerInfo] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["layers"] = [layer.to_dict() for layer in self.layers]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelInfo":
        data = dict(data)
        data["layers"] = [LayerInfo.from_dict(layer) for layer in data.get("layers", [])]
        return _from_dict(cls, data)


# How reports and messages name the Keras backend a DeviceInfo was measured under.
BACKEND_DISPLAY_NAMES = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}


@dataclass(frozen=True)
class DeviceInfo:
    kind: str          # "CPU" | "GPU" | "TPU"
    name: str          # e.g. "CPU:0 (AMD EPYC, 2 cores)" or the GPU's product name
    allocator: str     # e.g. "BFC (TF_CPU_ALLOCATOR_USE_BFC)"
    memory_limit_bytes: int | None = None  # the allocator limit the probe ran under
    backend: str = "tensorflow"  # the Keras backend the steps ran under (preflight.engine.backends)
    method: str = ""             # how the peak was read (preflight.engine.readers)
    deterministic: bool = False  # the figure is the same in every process (XLA's static buffer assignment)
    logical_devices: int = 1     # devices of this kind the user's file set up (issue 25: per-device figures)
    strategy: str = ""           # the tf.distribute strategy the model was built under ("" none)
    replicas: int = 1            # its replicas: the probes' batches are global, split over them
    setup_notes: list = field(default_factory=list)  # where the file's device setup met the budget

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DeviceInfo":
        return _from_dict(cls, data)


@dataclass(frozen=True)
class ProbeResult:
    """One batch size, dry-run: a warm-up step, then `len(peak_bytes_runs)` measured steps."""

    batch_size: int
    status: str                     # one of PROBE_STATUSES
    peak_bytes: int | None = None   # max over the measured steps (what verdicts use)
    peak_bytes_runs: list[int] = field(default_factory=list)
    resident_bytes: int | None = None   # allocator 'current' before a measured step: weights, slots, buffers
    step_seconds: float | None = None   # median of the measured steps
    warmup_seconds: float | None = None  # first step: tracing and slot creation
    message: str = ""
    losses: list = field(default_factory=list)  # per measured step: a float, or "nan"/"inf"/"-inf"
    weights_changed: bool | None = None  # did the steps move any trainable weight; None: not compared
    processes: int = 1                  # fresh processes whose runs are in peak_bytes_runs (preflight.engine.processes)
    process_peaks: list[int] = field(default_factory=list)  # each process's max, when more than one

    @property
    def spread(self) -> float:
        """(max - min) / max over the measured steps of every process; 0 with one run."""
        runs = self.peak_bytes_runs
        if len(runs) < 2 or max(runs) == 0:
            return 0.0
        return (max(runs) - min(runs)) / max(runs)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["spread"] = round(self.spread, 4)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ProbeResult":
        return _from_dict(cls, data)


@dataclass
class ProbeOutcome:
    """What one dry run (one or more child processes of the same job) measured; filled by preflight.engine.runner."""

    model: ModelInfo | None = None
    device: DeviceInfo | None = None
    data: dict | None = None
    probes: list[ProbeResult] = field(default_factory=list)
    graph_estimates: dict[int, int] = field(default_factory=dict)  # batch size -> liveness estimate of the peak
    variant: dict | None = None             # {"description", "message"} when the job applied a what-if
    variant_specs: list[dict] | None = None  # the what-ifs the child listed
    peak_composition: dict | None = None    # {"composition", "message"} from the profiled step
    floor: dict | None = None               # static floor (preflight.engine.static_floor) when the child computed it
    variant_floors: dict | None = None      # spec label -> static floor of that what-if, when the floor is over
    load_oom: str | None = None             # out of memory while building the model: what was being allocated
    readiness: dict | None = None           # preflight.engine.readiness.readiness_record, when the job asked for it
    fit_plan: dict | None = None            # the fit(...) call a model.py or notebook stopped at (engine.fit_plan)
    # The inputs' None axes besides the batch: {"axes", "planned_length", "length_source", "max_length"}
    dynamic_axes: dict | None = None
    length_probes: list[dict] = field(default_factory=list)  # {"length", "probe": ProbeResult} at the planned batch
