"""Does the dry run's step train at all? Child-side helpers for the loss and weight-change record.

The loss is what the step returned (its logs). Zero gradients are detected by their effect, not by
computing gradients a second time: the trainable weights are copied to host memory before the
warm-up step and compared after the last measured step. With a nonzero learning rate, weights that
did not move mean every gradient was zero (or the optimizer skipped every step). The copy costs host
memory equal to the trainable weights, outside the allocator the peak is read from, so it is taken
only for models up to SNAPSHOT_MAX_BYTES; larger ones are not compared (weights_changed None).
"""
from __future__ import annotations

import math
from typing import Any

SNAPSHOT_MAX_BYTES = 256 * 2**20


def loss_value(step_result: Any) -> float | str | None:
    """The loss out of a step's result (logs dict, a scalar, or a list whose first entry is the loss).

    NaN and infinities come back as the strings "nan", "inf", "-inf": JSON has no such numbers.
    """
    value = step_result[0] if isinstance(step_result, (list, tuple)) and step_result else step_result
    if isinstance(value, dict):
        value = value.get("loss")
    try:
        loss = float(value)
    except (TypeError, ValueError):
        return None
    return loss if math.isfinite(loss) else str(loss)


def snapshot_weights(model) -> list | None:
    """Host copies of the trainable weights, or None when they are too large to copy cheaply."""
    import numpy as np

    from preflight.engine.static_floor import variable_bytes

    size = sum(variable_bytes(w) for w in model.trainable_weights)
    if not model.trainable_weights or size > SNAPSHOT_MAX_BYTES:
        return None
    return [np.array(w.numpy(), copy=True) for w in model.trainable_weights]


def weights_changed(model, snapshot: list | None) -> bool | None:
    import numpy as np

    if snapshot is None:
        return None
    return any(not np.array_equal(before, w.numpy()) for before, w in zip(snapshot, model.trainable_weights))
