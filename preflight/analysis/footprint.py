"""Splitting a measured peak into parameters, gradients, optimizer state, activations, inputs and the rest.

Parameters and optimizer state are *measured*: exact sums over the model's and the optimizer's own
variables. Gradients (one per trainable weight), the input batch and the activations (every layer's
output, per sample, times the batch) are *derived* from shapes. "other" is what the measured peak holds
beyond those: framework temporaries, workspace, allocator rounding. When the derived parts add up to more
than the peak (not every activation is alive at once), activations are capped at what is left.
A model with non-trainable weights (frozen layers, the base weights under LoRA, BatchNorm statistics) has
them apart: "parameters" are then the trainable weights, "frozen_parameters" the rest.
"""
from __future__ import annotations

from preflight.common.measurements import ModelInfo

PARTS = ("parameters", "gradients", "optimizer", "activations", "inputs", "other")
OPTIONAL_PARTS = ("frozen_parameters",)  # present only when non-zero


def footprint(model: ModelInfo, batch_size: int, peak_bytes: int | None,
              peak_source: str = "measured") -> tuple[dict[str, int], dict[str, str]]:
    """(bytes per part, source per part) at `batch_size` for a step whose peak is `peak_bytes`
    (`peak_source`: "measured" or "predicted")."""
    frozen = max(0, model.param_bytes - model.trainable_param_bytes)
    parts = {
        "parameters": model.param_bytes - frozen,
        "gradients": model.trainable_param_bytes,
        "optimizer": model.optimizer_bytes,
        "activations": batch_size * sum(layer.activation_bytes_per_sample for layer in model.layers),
        "inputs": batch_size * model.input_bytes_per_sample,
        "other": 0,
    }
    sources = {
        "parameters": "measured", "gradients": "derived", "optimizer": "measured",
        "activations": "derived", "inputs": "derived", "other": "derived",
    }
    if frozen:
        parts["frozen_parameters"] = frozen
        sources["frozen_parameters"] = "measured (frozen layers, base weights under LoRA, BatchNorm statistics)"
    if peak_bytes is None:
        sources["other"] = "unknown"
        return parts, sources
    others = (parts["parameters"] + parts.get("frozen_parameters", 0) + parts["gradients"] + parts["optimizer"]
              + parts["inputs"])
    room_for_activations = max(0, peak_bytes - others)
    if parts["activations"] > room_for_activations:
        parts["activations"] = room_for_activations
        sources["activations"] = f"derived (capped at the {peak_source} peak)"
    parts["other"] = max(0, peak_bytes - others - parts["activations"])
    sources["other"] = f"{peak_source} peak minus the rest"
    return parts, sources
