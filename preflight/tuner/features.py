"""Cheap static memory features of one built-but-untrained Keras model.

Owns `StaticFeatures` and `static_features(model)`: parameter bytes, optimizer slots per weight,
per-sample activation bytes (sum of layer outputs) and per-sample input bytes. No step runs, no
optimizer variables are created, so computing these for hundreds of configurations stays cheap.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from preflight.common.units import dtype_size

# Optimizer variables per trainable weight, by class name (Keras 3 built-ins).
_SLOTS_BY_OPTIMIZER = {
    "SGD": 0, "Adam": 2, "AdamW": 2, "Adamax": 2, "Nadam": 2, "Lamb": 2, "Lion": 1,
    "RMSprop": 1, "Adagrad": 1, "Adadelta": 2, "Ftrl": 2, "Adafactor": 2, "Muon": 2,
}


@dataclass(frozen=True)
class StaticFeatures:
    param_bytes: int                  # all weights
    trainable_param_bytes: int        # what gradients and optimizer slots mirror
    optimizer: str
    optimizer_slots_per_weight: float
    activation_bytes_per_sample: int  # sum of every layer's output, one sample
    input_bytes_per_sample: int
    params_total: int
    largest_weight_bytes: int = 0     # the biggest trainable variable: the optimizer update's temporaries scale with it

    @property
    def state_bytes(self) -> int:
        """Weights + gradients + optimizer slots: the part of a step that does not scale with batch."""
        return int(self.param_bytes + self.trainable_param_bytes * (1 + self.optimizer_slots_per_weight))

    def batch_bytes(self, batch_size: int) -> int:
        """Activations and inputs of one batch: the part that scales with batch."""
        return int((self.activation_bytes_per_sample + self.input_bytes_per_sample) * batch_size)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StaticFeatures":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def _shape_elements(shape: Any) -> int:
    count = 1
    for dim in list(shape)[1:]:  # drop the batch axis
        if dim is None:
            return 0
        count *= int(dim)
    return count


def _output_bytes_per_sample(layer: Any) -> int:
    try:
        outputs = layer.output
    except (AttributeError, ValueError):
        return 0
    tensors = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    total = 0
    for tensor in tensors:
        shape = getattr(tensor, "shape", None)
        if shape is None:
            continue
        total += _shape_elements(shape) * dtype_size(getattr(tensor, "dtype", "float32"))
    return total


def _iter_layers(model: Any):
    for layer in getattr(model, "layers", []):
        if type(layer).__name__ == "InputLayer":
            continue
        if hasattr(layer, "layers") and getattr(layer, "layers", None) and hasattr(layer, "inputs"):
            yield from _iter_layers(layer)  # a nested functional model: count its inner layers
        else:
            yield layer


def optimizer_slots(optimizer: Any) -> float:
    name = type(optimizer).__name__ if optimizer is not None else "none"
    inner = getattr(optimizer, "inner_optimizer", None)  # LossScaleOptimizer wraps the real one
    if inner is not None:
        name = type(inner).__name__
        optimizer = inner
    slots = _SLOTS_BY_OPTIMIZER.get(name, 2)  # unknown: assume Adam-like, the common worst case
    if name == "SGD" and float(getattr(optimizer, "momentum", 0.0) or 0.0) > 0:
        slots = 1
    if name == "RMSprop" and getattr(optimizer, "centered", False):
        slots = 2
    if name in ("Adam", "AdamW") and getattr(optimizer, "amsgrad", False):
        slots = 3
    return float(slots)


def static_features(model: Any) -> StaticFeatures:
    """Features of a built model. A model without known input shapes gets 0 activation bytes."""
    param_bytes = sum(_shape_elements((None, *w.shape)) * dtype_size(w.dtype) for w in model.weights)
    trainable = sum(_shape_elements((None, *w.shape)) * dtype_size(w.dtype) for w in model.trainable_weights)
    params_total = sum(_shape_elements((None, *w.shape)) for w in model.weights)
    largest = max((_shape_elements((None, *w.shape)) * dtype_size(w.dtype) for w in model.trainable_weights),
                  default=0)
    activation = sum(_output_bytes_per_sample(layer) for layer in _iter_layers(model))
    input_bytes = 0
    try:
        for tensor in model.inputs or []:
            input_bytes += _shape_elements(tensor.shape) * dtype_size(tensor.dtype)
        for tensor in (model.outputs or []):
            input_bytes += _shape_elements(tensor.shape) * dtype_size(tensor.dtype)  # the targets
    except (AttributeError, ValueError):
        pass
    optimizer = getattr(model, "optimizer", None)
    return StaticFeatures(
        param_bytes=int(param_bytes), trainable_param_bytes=int(trainable),
        optimizer=type(optimizer).__name__ if optimizer is not None else "none",
        optimizer_slots_per_weight=optimizer_slots(optimizer),
        activation_bytes_per_sample=int(activation), input_bytes_per_sample=int(input_bytes),
        params_total=int(params_total), largest_weight_bytes=int(largest),
    )
