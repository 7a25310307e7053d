"""A training step that failed for the user's reason: its informative line, and the fix that fits it.

Shared by the single-model dry run (the hint of the child's ModelError) and the search check's error
finding, so a label/loss mismatch gets the same advice both ways. Pure text; no TensorFlow here.
"""
from __future__ import annotations

import re
from typing import NamedTuple

GENERIC_FIX = "run one model.fit step on this data yourself to see the full error"

_SHAPES = re.compile(r"target\.shape=\(([^)]*)\).*?output\.shape=\(([^)]*)\)", re.DOTALL)


def error_line(exc: BaseException) -> str:
    """The informative line of a TF error: its first line is often just 'Graph execution error:'."""
    text = getattr(exc, "message", None) or str(exc)
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    oom = next((line for line in lines if line.startswith("OOM when allocating")), None)
    node = next((line.split("Detected at node", 1)[1].split(" defined at")[0].strip(" '")
                 for line in lines if "Detected at node" in line), None)
    if oom:
        oom = oom.split(" on /job:")[0]
        return (oom + (f" (op {node})" if node else ""))[:400]
    # tf.data wraps a Python error from a generator as "{{function_node ...}} RuntimeError: ..."
    lines = [re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", line) for line in lines]
    # Keras wraps a layer's error: "Exception encountered when calling X.call().", then the message in ANSI bold.
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in lines]
    informative = [line for line in lines if not line.endswith("error:")
                   and not line.startswith("Exception encountered when calling")] or lines
    return (informative[-1] if node else informative[0])[:400]


class _Shapes(NamedTuple):
    target: str          # as Keras wrote it: "(8,)"
    output: str          # "(8, 10)"
    target_rank: int
    output_rank: int
    classes: str         # the output's last dimension


def _shapes(message: str) -> _Shapes | None:
    """The shapes in Keras's 'Received: target.shape=(8,), output.shape=(8, 10)'."""
    match = _SHAPES.search(message)
    if not match:
        return None
    target, output = match.groups()
    target_dims = [d for d in target.split(",") if d.strip()]
    output_dims = [d.strip() for d in output.split(",") if d.strip()]
    return _Shapes(f"({target})", f"({output})", len(target_dims), len(output_dims),
                   output_dims[-1] if output_dims else "?")


def fix_for(message: str, loss: str | None = None) -> str:
    """The advice that fits a training step's error message (and the model's loss, when known)."""
    loss_text = (loss or "").lower()
    shapes = _shapes(message)
    if "must have the same rank" in message and shapes and shapes.target_rank == shapes.output_rank - 1:
        return (f"the labels are class ids (shape {shapes.target}) but the loss "
                f"{'(' + loss + ') ' if loss else ''}wants one-hot labels shaped like the output {shapes.output}: "
                f"one-hot the labels (y = keras.utils.to_categorical(y, {shapes.classes})) or compile with "
                f"loss='sparse_categorical_crossentropy'")
    if "target.ndim - 1" in message or ("sparse" in loss_text and "rank" in message):
        return ("the labels look one-hot but the loss is sparse (it wants class ids): pass class ids "
                "(y = y.argmax(axis=-1)) or compile with loss='categorical_crossentropy'")
    if "outside the valid range" in message:
        return ("a label is not a valid class id for the output layer: check that the labels run from 0 to "
                "the output's units - 1, or widen the output layer")
    if shapes and ("same shape" in message or "same rank" in message):
        return (f"the labels' shape {shapes.target} does not match the model's output {shapes.output}: "
                "make the output layer match the labels, or reshape the labels")
    if "Dimensions must be equal" in message or "Incompatible shapes" in message:
        return "the labels' shape does not match the model's output: make the output layer match the labels"
    return GENERIC_FIX


def loss_name(model) -> str | None:
    """The compiled loss as people write it ('categorical_crossentropy'), or None."""
    loss = getattr(model, "loss", None)
    if loss is None or isinstance(loss, str):
        return loss
    return getattr(loss, "name", None) or getattr(loss, "__name__", None) or type(loss).__name__
