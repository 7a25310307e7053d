"""A model's fingerprint: one short hash that names the same model in every process.

The check (its report document's `layers` and `model`) and the training callback (preflight.keras, from
the live model through preflight.engine.probe.describe_layers) hash the same fields, so a run can be
matched to the check that predicted it. Hashed: each layer's class, per-sample output shape, parameter
count and compute dtype, in order; the optimizer's class; the weights' bytes per dtype. Not hashed:
layer names (Keras numbers unnamed layers in build order, so a second build in one notebook renames
them), the activation bytes (sized from the probe's data) and the model's name.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable

FINGERPRINT_VERSION = 1  # bump when the hashed fields change: old records then simply do not match


def fingerprint(layers: Iterable[dict[str, Any]], optimizer: str, param_bytes_by_dtype: dict[str, int]) -> str:
    """16 hex digits over the layers' (type, output_shape, params, compute_dtype), the optimizer's class
    and the weights' bytes per dtype."""
    canonical = {
        "v": FINGERPRINT_VERSION,
        "layers": [[layer.get("type"), _shape(layer.get("output_shape")), int(layer.get("params") or 0),
                    layer.get("compute_dtype") or ""] for layer in layers],
        "optimizer": optimizer or "",
        "weights": {str(k): int(v) for k, v in sorted((param_bytes_by_dtype or {}).items())},
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def document_fingerprint(document: dict[str, Any]) -> str | None:
    """The fingerprint of the model a report document describes; None when it lists no layers (a search
    document, or a model that could not be built)."""
    model = document.get("model") or {}
    layers = document.get("layers") or []
    if not layers or not model.get("optimizer"):
        return None
    return fingerprint(layers, model["optimizer"], model.get("param_bytes_by_dtype") or {})


def _shape(shape: Any) -> list:
    """Tuples and lists alike (a document went through JSON; a live model's did not)."""
    return [None if d is None else int(d) for d in (shape or [])]
