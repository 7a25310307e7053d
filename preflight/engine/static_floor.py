"""Shape-only builds and the static floor: the bytes a training step holds before any activation.

Parameters + gradients + optimizer state are fixed by the variables' shapes and dtypes, so they can be
computed without allocating them: Keras defers initializing variables created in a StatelessScope
(`shapes_only`). A model whose floor alone exceeds the budget fits at no batch size, and a 1.6e9-parameter
model is sized in a second instead of running the probe out of memory. Runs in the child (TensorFlow).
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

from preflight.common.units import tensor_bytes

LARGEST_LAYERS = 3


@contextlib.contextmanager
def shapes_only() -> Iterator[None]:
    """Build Keras objects whose variables get a shape and dtype but no memory and no init time.

    Keras defers initializing variables created in a StatelessScope (initialize_variables=False);
    it refuses constant initializers there (the optimizer's `iterations`), so for the duration
    those are wrapped into callables. A 200M-parameter model then builds in well under a second.
    """
    import keras
    import numpy as np
    from keras.src.backend.common import variables

    original_init = variables.Variable.__init__

    def init_with_callable(self, initializer, shape=None, dtype=None, *args, **kwargs):
        if not callable(initializer):
            constant = np.asarray(initializer)
            shape = constant.shape if shape is None else shape
            dtype = dtype or str(constant.dtype)
            initializer = lambda shape, dtype=None: constant  # noqa: E731 - never called
        original_init(self, initializer, shape, dtype, *args, **kwargs)

    variables.Variable.__init__ = init_with_callable
    try:
        with keras.StatelessScope(initialize_variables=False):
            yield
    finally:
        variables.Variable.__init__ = original_init


def in_shapes_only_build() -> bool:
    """True inside `shapes_only()`: weights have shapes but no values to copy."""
    from keras.src.backend.common.stateless_scope import in_stateless_scope

    return in_stateless_scope()


def build_optimizer_shapes_only(model, optimizer=None) -> None:
    """Create the slots of `optimizer` (default: the model's) for `model` inside `shapes_only()`, without memory.

    The TF backend reads each weight's value (to key slots by its tf.Variable and to colocate them), which
    would initialize a deferred weight: 1.7 GiB of temporaries for a 576 MiB kernel. Counting needs
    neither, so the object's id is the key and the backend-neutral slot constructor is used.
    """
    import types

    from keras.src.optimizers.base_optimizer import BaseOptimizer

    optimizer = optimizer or model.optimizer
    if optimizer.built:
        return
    optimizer._var_key = id
    optimizer.add_variable_from_reference = types.MethodType(BaseOptimizer.add_variable_from_reference, optimizer)
    optimizer.build(model.trainable_variables)


def initialize_deferred_variables(keep_deferred) -> None:
    """Give memory to every variable a shape-only build deferred (a variant's weights, optimizer scalars,
    metric trackers) except those of the model `keep_deferred`, whose weights never get any."""
    from keras.src.backend.common import global_state

    kept = {id(v) for v in list(keep_deferred.weights) + list(keep_deferred.optimizer.variables)}
    deferred = global_state.get_global_attribute("uninitialized_variables") or []
    for variable in deferred:
        if id(variable) not in kept and getattr(variable, "_value", "") is None:
            variable._deferred_initialize()
    # The kept ones leave the registry too: on JAX every StatelessScope exit (each symbolic build)
    # initializes whatever is registered, which would give the too-big base model its memory after all.
    global_state.set_global_attribute("uninitialized_variables", [])


def variable_bytes(variable) -> int:
    """Bytes a variable holds (or will hold), from its shape and dtype alone."""
    return tensor_bytes(variable.shape, variable.dtype)


def optimizer_bytes_from_shapes(model) -> int:
    """Bytes of the optimizer state `model`'s optimizer will create, from a shape-only copy of it."""
    import keras

    with shapes_only():
        optimizer = keras.optimizers.deserialize(keras.optimizers.serialize(model.optimizer))
        build_optimizer_shapes_only(model, optimizer)
    return sum(variable_bytes(v) for v in optimizer.variables)


def static_floor(model) -> dict[str, Any]:
    """{"parameter_bytes", "gradient_bytes", "optimizer_bytes", "total_bytes", "largest_layers"} of a
    compiled model whose optimizer is built (really or shape-only). Gradients: one per trainable weight,
    in the weight's dtype, as the optimizer receives them."""
    parameter_bytes = sum(variable_bytes(w) for w in model.weights)
    gradient_bytes = sum(variable_bytes(w) for w in model.trainable_weights)
    optimizer_bytes = sum(variable_bytes(v) for v in model.optimizer.variables)
    layers = []
    for layer in _leaf_layers(model):
        held = sum(variable_bytes(w) for w in layer.weights)
        if held:
            row = {"name": layer.name, "class_name": type(layer).__name__,
                   "params": int(layer.count_params()), "parameter_bytes": held}
            split = _split_axis_size(layer)
            if split is not None:
                row["split_axis_size"] = split
            layers.append(row)
    layers.sort(key=lambda row: -row["parameter_bytes"])
    return {
        "parameter_bytes": parameter_bytes,
        "gradient_bytes": gradient_bytes,
        "optimizer_bytes": optimizer_bytes,
        "total_bytes": parameter_bytes + gradient_bytes + optimizer_bytes,
        "optimizer": type(model.optimizer).__name__,
        "largest_layers": layers[:LARGEST_LAYERS],
    }


def _split_axis_size(layer) -> int | None:
    """The last axis of a Dense/EinsumDense kernel or an Embedding table: the axis the "shard the weights"
    what-if splits over N devices, which must divide by N (preflight.whatif.shard)."""
    weight = getattr(layer, "embeddings" if type(layer).__name__ == "Embedding" else "kernel", None)
    shape = getattr(weight, "shape", None)
    try:
        return int(shape[-1]) if shape else None
    except (TypeError, ValueError):
        return None


def _leaf_layers(model) -> list:
    leaves = []
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            leaves.extend(_leaf_layers(layer))
        else:
            leaves.append(layer)
    return leaves


def build_floor_model(factory):
    """Call the user's build function inside `shapes_only()` and size its optimizer. Returns the model."""
    with shapes_only():
        model = factory()
        build_optimizer_shapes_only(model)
    initialize_optimizer_scalars(model.optimizer)
    return model


def initialize_optimizer_scalars(optimizer) -> None:
    """Give the optimizer's scalar variables (iterations, learning rate) their values: what-ifs copy the
    optimizer through get_config(), which reads them. Scalars cost nothing; the slots stay deferred."""
    from keras.src.backend.common import global_state

    scalars = [getattr(optimizer, "_iterations", None), getattr(optimizer, "_learning_rate", None)]
    for variable in scalars:
        if getattr(variable, "_value", "") is None and hasattr(variable, "_deferred_initialize"):
            variable._deferred_initialize()
    # Out of the registry of deferred variables: on JAX a StatelessScope's exit initializes what is
    # registered, and an initialized one there is an error ("already initialized").
    deferred = global_state.get_global_attribute("uninitialized_variables") or []
    global_state.set_global_attribute("uninitialized_variables",
                                      [v for v in deferred if all(v is not s for s in scalars)])
