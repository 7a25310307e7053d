"""What-if variants: rebuilt copies of the user's compiled model, one change each, ready to dry-run.

Each what-if is a function `compiled keras.Model -> (new compiled keras.Model, description)`. The new
model keeps the user's loss, metrics, jit_compile and (unless the what-if is about the optimizer) a
fresh optimizer from the same config, so the engine can dry-run it on the same batch and compare.
The description is plain data: {"kind", "title", "snippet", "tradeoff", "params", "details"}.

`list_variants(model, target_kind)` proposes JSON-able specs {"kind", "args"}; the engine sends a spec
to its dry-run child, which calls `apply_variant(model, spec)`. A variant that cannot be built for this
model raises `VariantNotApplicable` (a ModelError) with the reason; list_variants already knows some
reasons and lists those specs with args {"not_applicable": reason}, so the report can say why.

TensorFlow and Keras are imported inside functions so `import preflight` stays light.
"""
from __future__ import annotations

import copy
from typing import Any

from preflight.analysis.recommendations import finetune_title
from preflight.errors import ModelError
from preflight.common.units import tensor_bytes

VariantSpec = dict  # {"kind": str, "args": dict}: JSON-able, crosses the process boundary

KINDS = ("mixed_precision", "optimizer", "remat", "shrink", "finetune")
LIGHT_OPTIMIZERS = ("sgd", "adafactor", "lion")
_MERGE_LAYERS = {"Add", "Concatenate", "Multiply", "Subtract", "Average", "Maximum", "Minimum", "Dot"}
# Layers that keep the channel count of their input, so a filter change flows through them.
_CHANNEL_PRESERVING = {
    "BatchNormalization", "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Dropout",
    "SpatialDropout2D", "LayerNormalization", "MaxPooling2D", "AveragePooling2D", "ZeroPadding2D",
}


class VariantNotApplicable(ModelError):
    """This what-if cannot be built for this model; the message says why (shown in the report)."""

    slug = "variant-not-applicable"


# ----------------------------------------------------------------------------------------------
# Shared helpers


def _keras():
    import keras

    return keras


def _compile_kwargs(model) -> dict[str, Any]:
    """The user's compile() arguments, deserialized afresh (new optimizer, loss and metric objects)."""
    from keras.src.saving import serialization_lib

    config = model.get_compile_config() if getattr(model, "compiled", False) else {}
    if not config:
        raise ModelError(
            f"model {model.name!r} is not compiled",
            hint="call model.compile(optimizer=..., loss=...) before preflight",
        )
    return dict(serialization_lib.deserialize_keras_object(copy.deepcopy(config)))


def _rebuildable_config(model) -> dict[str, Any]:
    """get_config() of a Functional or Sequential model; subclassed models have no layer graph to edit."""
    keras = _keras()
    from keras.src.models.functional import Functional

    if not isinstance(model, (Functional, keras.Sequential)):
        raise VariantNotApplicable(
            f"model {model.name!r} is a subclassed keras.Model ({type(model).__name__}); preflight can "
            "only rebuild Functional or Sequential models from their config",
            hint="apply the change in your model's code and run preflight on the changed model",
        )
    config = copy.deepcopy(model.get_config())
    if "layers" not in config:
        raise VariantNotApplicable(f"model {model.name!r} has no layer list in its config")
    return config


def _from_config(model, config):
    """Rebuild `model`'s class from an edited config; a failure means the edit is not valid here."""
    try:
        return model.__class__.from_config(config)
    except Exception as exc:  # noqa: BLE001 - any failure means this edit does not fit the graph
        raise VariantNotApplicable(f"the edited model could not be rebuilt: {exc}") from exc


def _transfer_weights(source, target) -> None:
    """The same weights in the copy; none to copy in a shape-only build (its floor is what is wanted)."""
    from preflight.engine.static_floor import in_shapes_only_build

    if not in_shapes_only_build():
        target.set_weights(source.get_weights())


def _copy_matching_weights(source, target) -> None:
    """Copy weights layer by layer (by name) where every shape still matches; changed layers keep fresh init."""
    from preflight.engine.static_floor import in_shapes_only_build

    if in_shapes_only_build():
        return
    source_layers = {layer.name: layer for layer in source.layers}
    for layer in target.layers:
        old = source_layers.get(layer.name)
        if old is None or not layer.weights:
            continue
        old_weights = old.get_weights()
        new_shapes = [tuple(w.shape) for w in layer.weights]
        if len(old_weights) == len(new_shapes) and all(
            tuple(w.shape) == s for w, s in zip(old_weights, new_shapes)
        ):
            layer.set_weights(old_weights)


def _strip_build_configs(config: dict[str, Any]) -> None:
    """Layers rebuilt with a changed input must infer shapes from their new inputs, not saved ones."""
    for layer in config.get("layers", []):
        layer.pop("build_config", None)
        if isinstance(layer.get("config"), dict) and "layers" in layer["config"]:
            _strip_build_configs(layer["config"])


def _layer_name(layer_config: dict[str, Any]) -> str:
    return layer_config.get("name") or layer_config["config"]["name"]


def _output_layer_names(model, config: dict[str, Any]) -> set[str]:
    from keras.src.models.functional import Functional

    if isinstance(model, Functional):
        outputs = config.get("output_layers", [])
        if outputs and isinstance(outputs[0], str):  # a single output is stored as [name, node, index]
            outputs = [outputs]
        return {entry[0] for entry in outputs}
    return {_layer_name(config["layers"][-1])}


def _activation_bytes_per_sample(layer) -> int:
    """Bytes of one sample of the layer's output(s); 0 where Keras has no symbolic output."""
    try:
        outputs = layer.output
    except (AttributeError, ValueError):
        return 0
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return sum(tensor_bytes(t.shape[1:], t.dtype) for t in outputs if hasattr(t, "shape"))


def _activation_bytes(model, layers) -> list[int]:
    """Per-sample output bytes of each top-level layer, in order.

    A Sequential rebuilds its graph as layers are added, so its layers have several call nodes and
    `layer.output` names the first, stale one; its shapes are chained with compute_output_shape.
    """
    keras = _keras()
    if not isinstance(model, keras.Sequential):
        return [_activation_bytes_per_sample(layer) for layer in layers]
    shape = tuple(model.inputs[0].shape)
    sizes = []
    for layer in layers:
        shape = tuple(layer.compute_output_shape(shape))
        sizes.append(tensor_bytes(shape[1:], layer.compute_dtype))
    return sizes


def _trainable_bytes(variables) -> int:
    return sum(tensor_bytes(v.shape, v.dtype) for v in variables)


def _optimizer_state_bytes(optimizer, model) -> int:
    """Bytes of all optimizer variables once built for the model's trainable weights (exact)."""
    from preflight.engine.static_floor import build_optimizer_shapes_only, in_shapes_only_build

    if in_shapes_only_build():
        build_optimizer_shapes_only(model, optimizer)
    else:
        optimizer.build(model.trainable_variables)
    return _trainable_bytes(optimizer.variables)


def _fresh_optimizer(optimizer):
    """A new, unbuilt optimizer with the same config (round trip through Keras serialization)."""
    keras = _keras()
    return keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))


def _compile_like(new_model, model, optimizer=None) -> None:
    kwargs = _compile_kwargs(model)
    if optimizer is not None:
        kwargs["optimizer"] = optimizer
    new_model.compile(**kwargs)


def _python_literal(value: Any) -> str:
    """A Keras compile argument as Python source: strings as-is, objects through Keras deserialization."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return repr(value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return repr(list(value))
    return f"keras.saving.deserialize_keras_object({value!r})"


def _compile_snippet(model, optimizer_source: str) -> str:
    config = model.get_compile_config()
    parts = [f"optimizer={optimizer_source}", f"loss={_python_literal(config.get('loss'))}"]
    for key in ("metrics", "loss_weights", "weighted_metrics"):
        if config.get(key) is not None:
            parts.append(f"{key}={_python_literal(config[key])}")
    if config.get("jit_compile") not in (None, "auto"):
        parts.append(f"jit_compile={config['jit_compile']!r}")
    return "model.compile(\n    " + ",\n    ".join(parts) + ",\n)"


def _describe(kind: str, title: str, snippet: str, tradeoff: str, new_model, **details: Any) -> dict[str, Any]:
    return {"kind": kind, "title": title, "snippet": snippet, "tradeoff": tradeoff,
            "params": int(new_model.count_params()), "details": details}


def _layer_graph(model):
    """(layers in topological order without InputLayers, consumer indices per layer) for the top level.

    Raises VariantNotApplicable for shared layers (one layer called twice): a cut there is ambiguous.
    """
    keras = _keras()
    if isinstance(model, keras.Sequential):
        layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
        return layers, {i: [i + 1] for i in range(len(layers) - 1)}
    config = model.get_config()
    order = [_layer_name(entry) for entry in config["layers"]]
    position: dict[str, int] = {}
    layers = []
    for name in order:
        layer = model.get_layer(name)
        if isinstance(layer, keras.layers.InputLayer):
            continue
        position[name] = len(layers)
        layers.append(layer)
    consumers: dict[int, list[int]] = {i: [] for i in range(len(layers))}
    for entry in config["layers"]:
        name = _layer_name(entry)
        if name not in position:
            continue
        if len(entry.get("inbound_nodes", [])) > 1:
            raise VariantNotApplicable(f"layer {name!r} is shared (called more than once); cannot cut the graph")
        for source in _histories(entry.get("inbound_nodes", [])):
            if source in position:
                consumers[position[source]].append(position[name])
    return layers, consumers


def _histories(node: Any) -> list[str]:
    """Names of the layers whose tensors feed a serialized inbound node."""
    found: list[str] = []
    if isinstance(node, dict):
        history = node.get("config", {}).get("keras_history") if node.get("class_name") == "__keras_tensor__" else None
        if history:
            found.append(history[0])
        else:
            for value in node.values():
                found.extend(_histories(value))
    elif isinstance(node, (list, tuple)):
        for value in node:
            found.extend(_histories(value))
    return found


# ----------------------------------------------------------------------------------------------
# Mixed precision


def _set_policy(config: dict[str, Any], policy: str, keep_float32: set[str]) -> None:
    for layer in config["layers"]:
        if layer["class_name"] == "InputLayer":
            continue
        inner = layer["config"]
        if _layer_name(layer) in keep_float32:
            continue
        if "layers" in inner:  # a nested Functional/Sequential: its layers carry the policy
            _set_policy(inner, policy, set())
        inner["dtype"] = policy


def _cpu_has_native_bfloat16() -> bool:
    """True when /proc/cpuinfo lists a bfloat16 instruction set; without one TF emulates bfloat16 math."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = handle.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def mixed_precision(model, policy: str = "mixed_bfloat16"):
    """The model rebuilt under `policy` ("mixed_bfloat16" or "mixed_float16"), output layer(s) float32.

    Rebuilt from its config with every layer's dtype rewritten, because setting the global policy
    after the model exists changes nothing. float16 gets a LossScaleOptimizer (small gradients would
    underflow); bfloat16 has float32's exponent range and needs none.
    """
    keras = _keras()
    if policy not in ("mixed_bfloat16", "mixed_float16"):
        raise VariantNotApplicable(f"unknown mixed-precision policy {policy!r}")
    current = getattr(model.dtype_policy, "name", str(model.dtype_policy))
    if current.startswith("mixed"):
        raise VariantNotApplicable(f"model already runs under {current}")
    config = _rebuildable_config(model)
    output_names = _output_layer_names(model, config)
    _set_policy(config, policy, output_names)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)  # so the rebuilt model's own policy is mixed too
    try:
        new_model = _from_config(model, config)
    finally:
        keras.config.set_dtype_policy(previous)
    _transfer_weights(model, new_model)
    optimizer = _compile_kwargs(model)["optimizer"]
    if policy == "mixed_float16" and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    _compile_like(new_model, model, optimizer=optimizer)

    import tensorflow as tf

    low = "float16" if policy == "mixed_float16" else "bfloat16"
    outputs = ", ".join(sorted(output_names))
    snippet = (
        "import keras\n"
        f"keras.mixed_precision.set_global_policy({policy!r})  # before the model is built\n"
        "# ... build the model as before; give the output layer dtype=\"float32\" so the softmax/loss\n"
        f"# stay in float32, e.g. keras.layers.Dense(..., dtype=\"float32\", name={sorted(output_names)[0]!r})\n"
    )
    if policy == "mixed_float16":
        snippet += (
            "optimizer = keras.optimizers.LossScaleOptimizer(optimizer)  # compile() also wraps it "
            "when the model's policy is mixed_float16\n"
        )
    tradeoff = (
        f"Activations and matmuls in {low}; weights, gradients and optimizer state stay float32, so the "
        "saving is on activations only; where weights or the optimizer update set the peak, the "
        "low-precision copies of the weights can raise it instead (the measurement says which). "
    )
    if policy == "mixed_float16":
        tradeoff += "Needs loss scaling (LossScaleOptimizer). Fast on GPUs with tensor cores. "
        if not tf.config.list_physical_devices("GPU"):
            tradeoff += ("Peak measured on CPU, where float16 is emulated: the memory figure carries over "
                         "to the GPU, the step time does not (expect it faster there, not slower). ")
    else:
        tradeoff += "bfloat16 keeps float32's range (no loss scaling); it has 8 bits of mantissa. "
        if not tf.config.list_physical_devices("GPU") and not _cpu_has_native_bfloat16():
            tradeoff += ("This CPU has no native bfloat16 (no AVX512_BF16/AMX), so bfloat16 is emulated here: "
                         "the memory figure holds, the step time is far slower than on a target with bfloat16 "
                         "units (TPU, recent GPUs and CPUs). ")
    tradeoff += f"Output layer(s) {outputs} kept in float32."
    return new_model, _describe(
        "mixed_precision", f"Mixed precision ({policy})", snippet, tradeoff, new_model, policy=policy,
        float32_layers=sorted(output_names),
    )


# ----------------------------------------------------------------------------------------------
# Optimizer


# Source text and the same optimizer built from it, so the snippet and the measured variant agree.
_OPTIMIZER_SOURCE = {
    "sgd": "keras.optimizers.SGD(learning_rate=0.01, momentum=0.9)",
    "adafactor": "keras.optimizers.Adafactor(learning_rate=0.001)",
    "lion": "keras.optimizers.Lion(learning_rate=0.0001)",
}
_OPTIMIZER_FACTORY = {
    "sgd": lambda keras: keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
    "adafactor": lambda keras: keras.optimizers.Adafactor(learning_rate=0.001),
    "lion": lambda keras: keras.optimizers.Lion(learning_rate=0.0001),
}
_OPTIMIZER_NOTE = {
    "sgd": "SGD with momentum keeps one slot per weight (Adam keeps two); it usually needs a "
           "different learning rate and schedule, and may converge more slowly.",
    "adafactor": "Keras's Adafactor keeps factored second moments (a row and a column vector per "
                 "matrix) but also a full-size velocity slot, so its state is about one slot per weight; "
                 "it is less tested outside transformers and may need tuning.",
    "lion": "Lion keeps one slot per weight (momentum only); use a learning rate 3-10x smaller "
            "than Adam's and a larger weight decay.",
}


def optimizer(model, name: str):
    """The same model (same weights) compiled with a lighter optimizer: "sgd", "adafactor" or "lion"."""
    keras = _keras()
    if name not in _OPTIMIZER_SOURCE:
        raise VariantNotApplicable(f"unknown optimizer {name!r}; one of {', '.join(_OPTIMIZER_SOURCE)}")
    new_model = _clone(model)
    baseline_bytes = _optimizer_state_bytes(_fresh_optimizer(model.optimizer), model)
    state_bytes = _optimizer_state_bytes(_OPTIMIZER_FACTORY[name](keras), new_model)
    new_optimizer = _OPTIMIZER_FACTORY[name](keras)
    _compile_like(new_model, model, optimizer=new_optimizer)
    from preflight.common.units import format_bytes

    tradeoff = (
        f"Optimizer state {format_bytes(baseline_bytes)} ({model.optimizer.__class__.__name__}) -> "
        f"{format_bytes(state_bytes)}, measured from the built optimizer variables. " + _OPTIMIZER_NOTE[name]
    )
    return new_model, _describe(
        "optimizer", f"Optimizer {new_optimizer.__class__.__name__}",
        "import keras\n" + _compile_snippet(model, _OPTIMIZER_SOURCE[name]), tradeoff, new_model,
        optimizer=new_optimizer.__class__.__name__, optimizer_state_bytes=state_bytes,
        baseline_optimizer_state_bytes=baseline_bytes,
    )


def _clone(model):
    """An independent copy with the same weights (subclassed models via keras.models.clone_model)."""
    keras = _keras()
    try:
        config = _rebuildable_config(model)
        new_model = _from_config(model, config)
    except VariantNotApplicable:
        try:
            new_model = keras.models.clone_model(model)
        except Exception as exc:  # noqa: BLE001
            raise VariantNotApplicable(f"model {model.name!r} could not be cloned: {exc}") from exc
    _transfer_weights(model, new_model)
    return new_model


# ----------------------------------------------------------------------------------------------
# Rematerialization


def _remat_block_class():
    keras = _keras()

    @keras.saving.register_keras_serializable(package="preflight")
    class RematBlock(keras.layers.Layer):
        """Runs `block` under keras.remat: only its input is kept for backward, the rest is recomputed.

        The closure passes `training` because tf.recompute_grad rejects keyword arguments in graph mode.
        """

        def __init__(self, block, **kwargs):
            kwargs.setdefault("autocast", False)  # the inner layers cast for themselves
            super().__init__(**kwargs)
            self.block = block

        def call(self, inputs, training=None):
            return keras.remat(lambda x: self.block(x, training=training))(inputs)

        def compute_output_spec(self, inputs, training=None):
            return self.block.compute_output_spec(inputs)

        def get_config(self):
            return {**super().get_config(), "block": keras.saving.serialize_keras_object(self.block)}

        @classmethod
        def from_config(cls, config):
            config = dict(config)
            config["block"] = keras.saving.deserialize_keras_object(config["block"])
            return cls(**config)

    return RematBlock


def remat_cut_points(model, num_blocks: int = 4) -> list[str]:
    """Layer names after which to cut the model into `num_blocks` pieces of about equal activation bytes.

    Only single-tensor articulation points qualify (no skip connection jumps over them), so each piece
    is a one-input, one-output sub-model that keras.remat can wrap.
    """
    keras = _keras()
    layers, consumers = _layer_graph(model)
    sequential = isinstance(model, keras.Sequential)
    if len(layers) < 2:
        raise VariantNotApplicable("the model has fewer than two layers to rematerialize")
    cuts: list[int] = []
    furthest_before = -1  # the furthest consumer of any layer before `index`
    for index in range(len(layers) - 1):
        single_output = sequential or not isinstance(layers[index].output, (list, tuple))
        if furthest_before <= index and single_output:
            cuts.append(index)  # nothing from earlier layers is needed after this one
        furthest_before = max(furthest_before, *consumers.get(index, [index]))
    activation = _activation_bytes(model, layers)
    total = sum(activation)
    if not cuts or total == 0:
        raise VariantNotApplicable("no single-tensor cut point between the model's layers")
    cumulative = []
    running = 0
    for value in activation:
        running += value
        cumulative.append(running)
    chosen: list[int] = []
    for k in range(1, num_blocks):
        target = total * k / num_blocks
        # Near the target, prefer cutting at a small tensor: the cut tensor is what stays in memory.
        best = min(cuts, key=lambda c: abs(cumulative[c] - target) + activation[c])
        if best not in chosen and (not chosen or best > chosen[-1]):
            chosen.append(best)
    return [layers[c].name for c in chosen]


def remat_blocks(model, cut_after: list[str]):
    """A new (uncompiled) model: `model` cut after the named layers, each piece wrapped in keras.remat.

    It shares the given model's layers and weights. On the TF backend keras.remat is
    tf.recompute_grad; wrapping several layers at once is what lowers the peak.
    """
    keras = _keras()
    RematBlock = _remat_block_class()
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise VariantNotApplicable("remat blocks need a single-input, single-output model")
    source = model.inputs[0]
    new_input = keras.Input(shape=source.shape[1:], dtype=source.dtype)
    pieces = []
    if isinstance(model, keras.Sequential):
        layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
        names = [layer.name for layer in layers]
        edges = [0] + [names.index(name) + 1 for name in cut_after] + [len(layers)]
        for index, (start, end) in enumerate(zip(edges[:-1], edges[1:])):
            pieces.append((keras.Sequential(layers[start:end], name=f"{model.name}_piece_{index}"), end - start))
    else:
        boundaries = [source] + [model.get_layer(name).output for name in cut_after] + [model.outputs[0]]
        for index, (start, end) in enumerate(zip(boundaries[:-1], boundaries[1:])):
            piece = keras.Model(start, end, name=f"{model.name}_piece_{index}")
            inner = [layer for layer in piece.layers if not isinstance(layer, keras.layers.InputLayer)]
            pieces.append((piece, len(inner)))
    hidden = new_input
    for index, (piece, num_layers) in enumerate(pieces):
        # A one-layer piece gains nothing from remat: its output is kept for the next piece anyway.
        hidden = RematBlock(piece, name=f"remat_block_{index}")(hidden) if num_layers > 1 else piece(hidden)
    return keras.Model(new_input, hidden, name=f"{model.name}_remat")


def remat(model, cut_after: list[str] | None = None, num_blocks: int = 4):
    """The model rebuilt as pieces wrapped in keras.remat (cut after `cut_after`, or balanced cuts).

    keras.RematScope is not used: its "full", "larger_than" and "list_of_layers" modes fail inside
    tf.function on the TF backend (custom_gradient with keyword arguments; a test keeps checking), and
    "activations" raised the peak in our probes.
    """
    config = _rebuildable_config(model)
    clone = _from_config(model, config)
    _transfer_weights(model, clone)
    if cut_after is None:
        cut_after = remat_cut_points(clone, num_blocks)
    new_model = remat_blocks(clone, list(cut_after))
    _compile_like(new_model, model)
    optimizer_source = f"keras.optimizers.get({model.get_compile_config()['optimizer']!r})"
    snippet = (
        "import keras\n"
        "from preflight.whatif.variants import remat_blocks  # wraps each piece in keras.remat\n"
        f"model = remat_blocks(model, cut_after={list(cut_after)!r})\n"
        + _compile_snippet(model, optimizer_source)
    )
    tradeoff = (
        f"Forward activations inside {len(cut_after) + 1} pieces are recomputed during backward instead "
        "of kept: more compute per step (typically +30-40 %), and BatchNormalization/Dropout run twice "
        "in the forward (moving statistics update twice). Only keras.remat around a multi-layer function "
        "lowers the peak on the TensorFlow backend: keras.RematScope's 'full', 'larger_than' and "
        "'list_of_layers' modes fail inside tf.function there ('The custom_gradient decorator currently "
        "supports keywords arguments only when eager execution is enabled'; checked on Keras 3.15 / TF 2.21) "
        "and 'activations' runs but raised the peak in our probes."
    )
    return new_model, _describe(
        "remat", f"Rematerialize {len(cut_after) + 1} blocks (cut after {', '.join(cut_after)})",
        snippet, tradeoff, new_model, cut_after=list(cut_after),
    )


# ----------------------------------------------------------------------------------------------
# Shrinking


_GLOBAL_POOL = {3: "GlobalAveragePooling1D", 4: "GlobalAveragePooling2D", 5: "GlobalAveragePooling3D"}
_CONV_TYPES = {"Conv1D", "Conv2D", "Conv3D", "SeparableConv2D", "SeparableConv1D"}


def _constructor_source(class_name: str, layer_config: dict[str, Any], keys: list[str]) -> str:
    args = [f"{key}={layer_config[key]!r}" for key in keys if key in layer_config]
    return f"keras.layers.{class_name}({', '.join(args)})"


def shrink_candidates(model) -> list[dict[str, Any]]:
    """Concrete shrink changes for the layers that dominate parameters or activations.

    [{"change": "flatten_to_gap" | "halve_units" | "halve_filters", "layer": name}]: a Flatten whose Dense
    consumer holds the most parameters, the widest hidden Dense, the Conv with the largest output.
    """
    keras = _keras()
    layers, consumers = _layer_graph(model)
    outputs = {t._keras_history[0].name for t in model.outputs} if model.outputs else set()
    candidates: list[dict[str, Any]] = []
    total_params = max(1, model.count_params())
    for index, layer in enumerate(layers):
        if type(layer).__name__ != "Flatten":
            continue
        rank = len(layer.input.shape)
        dense_params = sum(layers[c].count_params() for c in consumers.get(index, []))
        if rank in _GLOBAL_POOL and dense_params >= 0.2 * total_params:
            candidates.append({"change": "flatten_to_gap", "layer": layer.name})
    dense = [l for l in layers if isinstance(l, keras.layers.Dense) and l.name not in outputs and l.units > 1]
    if dense:
        widest = max(dense, key=lambda l: l.count_params())
        candidates.append({"change": "halve_units", "layer": widest.name})
    convs = []
    for index, layer in enumerate(layers):
        if type(layer).__name__ not in _CONV_TYPES or layer.name in outputs or layer.filters < 2:
            continue
        if _feeds_merge(layers, consumers, index):
            continue  # halving it would break an Add/Concatenate with a skip branch
        convs.append(layer)
    if convs:
        biggest = max(convs, key=lambda l: (_activation_bytes_per_sample(l), l.count_params()))
        candidates.append({"change": "halve_filters", "layer": biggest.name})
    if len(model.inputs) == 1 and len(model.inputs[0].shape) == 4:
        height, width = model.inputs[0].shape[1:3]
        if height and width and min(height, width) >= 2 * _MIN_RESOLUTION:
            # No layer name: an auto-named input ("input_layer_3") is named differently in another process.
            candidates.append({"change": "half_resolution"})
    return candidates


_MIN_RESOLUTION = 32  # keras.applications refuse smaller images; below it little is left to see
_RESIZE_NAME = "preflight_half_resolution"


def _input_layer_name(model) -> str:
    config = model.get_config()
    first = next(e for e in config["layers"] if e["class_name"] == "InputLayer") if "layers" in config else None
    return _layer_name(first) if first else model.inputs[0].name


def _insert_half_resolution(model, config: dict[str, Any], input_name: str) -> tuple[int, int, int, int]:
    """Put a Resizing layer to half height and width right after the input; returns (h, w, new_h, new_w)."""
    keras = _keras()
    height, width = (int(d) for d in model.inputs[0].shape[1:3])
    new_height, new_width = height // 2, width // 2
    layers = config["layers"]
    position = next((i for i, e in enumerate(layers) if _layer_name(e) == input_name), None)
    if position is None or layers[position]["class_name"] != "InputLayer":
        raise VariantNotApplicable(f"no input layer named {input_name!r}")
    resize = {"module": "keras.layers", "class_name": "Resizing", "registered_name": None, "name": _RESIZE_NAME,
              "config": {"name": _RESIZE_NAME, "height": new_height, "width": new_width,
                         "interpolation": "bilinear", "trainable": True}}
    if not isinstance(model, keras.Sequential):
        resize["inbound_nodes"] = [{"args": [{"class_name": "__keras_tensor__", "config": {
            "shape": tuple(model.inputs[0].shape), "dtype": str(model.inputs[0].dtype),
            "keras_history": [input_name, 0, 0]}}], "kwargs": {}}]
        for entry in layers:
            _redirect_history(entry.get("inbound_nodes", []), input_name, _RESIZE_NAME)
    layers.insert(position + 1, resize)
    return height, width, new_height, new_width


def _redirect_history(node: Any, old: str, new: str) -> None:
    if isinstance(node, dict):
        history = node.get("config", {}).get("keras_history") if node.get("class_name") == "__keras_tensor__" else None
        if history and history[0] == old:
            history[0] = new
        else:
            for value in node.values():
                _redirect_history(value, old, new)
    elif isinstance(node, (list, tuple)):  # serialized call args are tuples
        for value in node:
            _redirect_history(value, old, new)


def _feeds_merge(layers, consumers, index: int) -> bool:
    frontier = list(consumers.get(index, []))
    while frontier:
        current = frontier.pop()
        kind = type(layers[current]).__name__
        if kind in _MERGE_LAYERS:
            return True
        if kind in _CHANNEL_PRESERVING:
            frontier.extend(consumers.get(current, []))
    return False


def shrink(model, change: str, layer: str | None = None):
    """The model rebuilt with one change: "flatten_to_gap", "halve_units", "halve_filters" (at `layer`) or
    "half_resolution" (a Resizing layer after the input named `layer`)."""
    config = _rebuildable_config(model)
    _strip_build_configs(config)
    if change == "half_resolution" and layer is None:
        if len(model.inputs) != 1:
            raise VariantNotApplicable("half_resolution needs a model with one image input")
        layer = _input_layer_name(model)
    entry = next((e for e in config["layers"] if _layer_name(e) == layer), None)
    if entry is None:
        raise VariantNotApplicable(f"no top-level layer named {layer!r}")
    layer_config = entry["config"]
    if change == "half_resolution":
        height, width, new_height, new_width = _insert_half_resolution(model, config, layer)
        before = None
        after = f"keras.layers.Resizing({new_height}, {new_width}, name={_RESIZE_NAME!r})"
        title = f"Half input resolution: {height}x{width} -> {new_height}x{new_width}"
        tradeoff = ("Every activation after the input shrinks about 4x; the data pipeline can stay as it is "
                    "(or resize there and skip the layer). Fine detail is lost, which can cost accuracy; a "
                    "Flatten-fed Dense also changes size.")
    elif change == "flatten_to_gap":
        old_layer = model.get_layer(layer)
        rank = len(old_layer.input.shape)
        if entry["class_name"] != "Flatten" or rank not in _GLOBAL_POOL:
            raise VariantNotApplicable(f"{layer!r} is not a Flatten over a 1-3D feature map")
        pool = _GLOBAL_POOL[rank]
        entry["class_name"] = pool
        entry["module"] = "keras.layers"
        entry["config"] = {"name": layer, "trainable": True, "dtype": layer_config.get("dtype"),
                           "data_format": layer_config.get("data_format") or "channels_last", "keepdims": False}
        before = f"keras.layers.Flatten(name={layer!r})"
        after = f"keras.layers.{pool}(name={layer!r})"
        title = f"Replace Flatten {layer!r} with {pool}"
        tradeoff = ("Averages each feature map instead of keeping every position: the Dense after it shrinks "
                    "by the spatial size (height x width), which is where the parameters were. Loses exact "
                    "spatial layout; for classification it usually matches or beats Flatten.")
    elif change == "halve_units":
        if entry["class_name"] != "Dense":
            raise VariantNotApplicable(f"{layer!r} is not a Dense layer")
        units = int(layer_config["units"])
        layer_config["units"] = max(1, units // 2)
        keys = ["units", "activation", "use_bias", "name"]
        before = _constructor_source("Dense", {**layer_config, "units": units}, keys)
        after = _constructor_source("Dense", layer_config, keys)
        title = f"Halve Dense {layer!r}: {units} -> {layer_config['units']} units"
        tradeoff = "Halves this layer's and the next layer's weights (and their gradients and optimizer state); less capacity."
    elif change == "halve_filters":
        if entry["class_name"] not in _CONV_TYPES:
            raise VariantNotApplicable(f"{layer!r} is not a convolution")
        filters = int(layer_config["filters"])
        layer_config["filters"] = max(1, filters // 2)
        keys = ["filters", "kernel_size", "strides", "padding", "activation", "use_bias", "name"]
        before = _constructor_source(entry["class_name"], {**layer_config, "filters": filters}, keys)
        after = _constructor_source(entry["class_name"], layer_config, keys)
        title = f"Halve {entry['class_name']} {layer!r}: {filters} -> {layer_config['filters']} filters"
        tradeoff = "Halves this layer's output activations and the next layer's input weights; less capacity."
    else:
        raise VariantNotApplicable(f"unknown shrink change {change!r}")
    new_model = _from_config(model, config)
    if change == "half_resolution" and _RESIZE_NAME not in {l.name for l in new_model.layers}:
        # A Functional drops layers its outputs do not depend on: the rewiring did not take.
        raise VariantNotApplicable("could not insert a Resizing layer after the input of this model")
    _copy_matching_weights(model, new_model)
    _compile_like(new_model, model)
    old_params, new_params = model.count_params(), new_model.count_params()
    if before is None:
        snippet = ("import keras\n"
                   f"# in your model definition, add as the first layer after the Input (data stays {height}x{width}):\n"
                   f"{after}\n")
    else:
        snippet = f"import keras\n# in your model definition, replace\n#     {before}\n# with:\n{after}\n"
    return new_model, _describe(
        "shrink", title, snippet, f"{tradeoff} Parameters {old_params:,} -> {new_params:,}.", new_model,
        change=change, layer=layer, params_before=int(old_params),
    )


# ----------------------------------------------------------------------------------------------
# Fine-tuning: which weights train (frozen layers, LoRA)

FINETUNE_MODES = ("full", "freeze_backbone", "lora")
LORA_TYPES = ("Dense", "EinsumDense", "Embedding")


def _flat_layers(model) -> list:
    """Every layer inside the model, nested ones included (a keras-hub backbone's attention projections)."""
    flatten = getattr(model, "_flatten_layers", None)
    return list(flatten(include_self=False, recursive=True)) if flatten else list(model.layers)


def _lora_layers(model) -> list:
    return [layer for layer in _flat_layers(model) if getattr(layer, "lora_enabled", False)]


def _lora_variables(layer) -> list:
    return [v for v in layer.weights if "lora_" in v.path.rsplit("/", 1)[-1]]


def fine_tuning_state(model) -> dict[str, Any] | None:
    """How the model fine-tunes: {"lora_rank", "lora_layers", "frozen_layers"}; None when every layer
    trains and none has LoRA (then the fine-tuning what-ifs have nothing to compare)."""
    lora = _lora_layers(model)
    frozen = [layer for layer in _flat_layers(model) if layer.weights and not layer.trainable
              and not getattr(layer, "lora_enabled", False)]
    if not lora and not frozen:
        return None
    ranks = sorted({int(getattr(layer, "lora_rank", 0) or 0) for layer in lora})
    return {"lora_rank": ranks[-1] if ranks else None, "lora_layers": len(lora), "frozen_layers": len(frozen)}


def _backbone(model):
    """The part a fine-tune keeps frozen: a keras-hub task's `backbone`, else the largest nested model, else
    every top-level layer with weights except those that make the outputs (the head)."""
    keras = _keras()
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, keras.layers.Layer):
        return [backbone]
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if nested:
        return [max(nested, key=lambda layer: layer.count_params())]
    outputs = {t._keras_history[0].name for t in model.outputs} if getattr(model, "outputs", None) else set()
    return [layer for layer in model.layers if layer.weights and layer.name not in outputs]


def _drop_lora(model) -> list:
    """Switch every LoRA adapter off (the layer computes with its base weights again) and freeze the
    adapter's variables; returns them. Keras has no disable_lora: the variables stay, unused."""
    dropped = []
    for layer in _lora_layers(model):
        layer.lora_enabled = False
        for variable in _lora_variables(layer):
            variable.trainable = False
            dropped.append(variable)
    return dropped


def _set_all_trainable(model, dropped: list) -> None:
    model.trainable = True
    for layer in _flat_layers(model):
        layer.trainable = True
    for variable in dropped:  # `trainable = True` turned the unused adapters back on
        variable.trainable = False


def _trainable_bytes_of(model) -> int:
    return _trainable_bytes(model.trainable_weights)


def finetune(model, mode: str, rank: int | None = None):
    """The same model training a different set of weights: "full" (every weight trains, LoRA off),
    "freeze_backbone" (only the head trains) or "lora" (LoRA of `rank` on the backbone's Dense, EinsumDense
    and Embedding layers, through a keras-hub backbone's own `enable_lora` where it has one).

    Changed in place and compiled again with a fresh optimizer: the dry-run child loads its own copy of the
    model for each what-if, so nothing of the user's is touched.
    """
    keras = _keras()
    if mode not in FINETUNE_MODES:
        raise VariantNotApplicable(f"unknown fine-tuning mode {mode!r}; one of {', '.join(FINETUNE_MODES)}")
    state = fine_tuning_state(model) or {}
    before = _trainable_bytes_of(model)
    dropped = _drop_lora(model)
    _set_all_trainable(model, dropped)
    backbone = _backbone(model)
    if not backbone:
        raise VariantNotApplicable("no backbone to tell apart from the head: the model has one layer with weights")
    names = ", ".join(repr(layer.name) for layer in backbone[:3]) + (" ..." if len(backbone) > 3 else "")
    if mode == "freeze_backbone":
        for layer in backbone:
            layer.trainable = False
        if not model.trainable_weights:
            raise VariantNotApplicable(
                f"with the backbone ({names}) frozen nothing is left to train: the head has no weights of its own "
                "(a causal LM's output projection is the backbone's token embedding)")
        title = finetune_title(mode)
        snippet = ("backbone.trainable = False  # before compile(); the head's layers keep training\n"
                   "model.compile(...)")
        tradeoff = (f"Only the head learns ({names} frozen): no gradients or optimizer state for the backbone. "
                    "The features cannot adapt to your data, which usually costs accuracy against fine-tuning.")
    elif mode == "lora":
        rank = int(rank or 4)
        hub_backbone = next((layer for layer in backbone if hasattr(layer, "enable_lora")
                             and hasattr(layer, "default_lora_layer_names")), None)
        if hub_backbone is not None:
            hub_backbone.enable_lora(rank)
            for variable in dropped:  # enable_lora set whole layers trainable again
                variable.trainable = False
            snippet = f"backbone.enable_lora(rank={rank})  # before compile()\nmodel.compile(...)"
        else:
            targets = [layer for part in backbone for layer in ([part] + _flat_layers(part) if hasattr(part, "layers")
                                                                else [part])
                       if type(layer).__name__ in LORA_TYPES and layer.built]
            if not targets:
                raise VariantNotApplicable("the backbone has no Dense, EinsumDense or Embedding layer to adapt")
            for layer in backbone:
                layer.trainable = False
            for layer in targets:
                layer.trainable = True
                try:
                    layer.enable_lora(rank)
                except (ValueError, NotImplementedError) as exc:
                    raise VariantNotApplicable(f"LoRA on layer {layer.name!r}: {exc}") from exc
                for variable in dropped:
                    variable.trainable = False
            snippet = (f"for layer in backbone_layers:  # the Dense/EinsumDense/Embedding layers to adapt\n"
                       f"    layer.enable_lora({rank})  # freezes the layer's own kernel\n"
                       "model.compile(...)")
        title = finetune_title(mode, rank)
        tradeoff = (f"Low-rank adapters of rank {rank} train in place of the backbone's weights ({names}): "
                    "gradients and optimizer state only for the adapters and the head. Quality depends on the rank "
                    "and on which layers are adapted.")
    else:
        title = finetune_title(mode)
        snippet = ("model.trainable = True  # and no enable_lora(...)\n"
                   "model.compile(...)")
        tradeoff = ("Every weight learns: gradients and optimizer state for all of them, the most memory; the "
                    "most capacity to adapt, and the easiest to overfit a small data set.")
    _compile_like(model, model)  # a fresh optimizer, built by the first step for the new trainable set
    after = _trainable_bytes_of(model)
    from preflight.common.units import format_bytes

    tradeoff += (f" Trainable weights {format_bytes(before)} -> {format_bytes(after)}"
                 + (f" (now: LoRA rank {state['lora_rank']})." if state.get("lora_rank") else "."))
    return model, _describe("finetune", title, snippet, tradeoff, model, mode=mode, rank=rank,
                            trainable_bytes=int(after), baseline_trainable_bytes=int(before))


# ----------------------------------------------------------------------------------------------
# Listing and applying specs


def list_variants(model, target_kind: str = "CPU") -> list[VariantSpec]:
    """The what-ifs worth measuring for this model on a `target_kind` ("CPU" | "GPU" | "TPU") device."""
    from keras.src.models.functional import Functional

    keras = _keras()
    target_kind = target_kind.upper()
    if target_kind not in ("CPU", "GPU", "TPU"):
        raise ValueError(f"target_kind must be CPU, GPU or TPU, not {target_kind!r}")
    specs: list[VariantSpec] = []
    rebuildable = isinstance(model, (Functional, keras.Sequential))
    if rebuildable:
        try:  # a keras-hub task is a Functional whose config holds its backbone, not a layer list
            _rebuildable_config(model)
        except (VariantNotApplicable, NotImplementedError, TypeError):
            rebuildable = False
    policy = getattr(model.dtype_policy, "name", "float32")
    if not policy.startswith("mixed"):
        specs.append({"kind": "mixed_precision",
                      "args": {"policy": "mixed_float16" if target_kind == "GPU" else "mixed_bfloat16"}})
    current = model.optimizer.__class__.__name__.lower() if getattr(model, "optimizer", None) else ""
    for name in LIGHT_OPTIMIZERS:
        if name != current:
            specs.append({"kind": "optimizer", "args": {"name": name}})
    if rebuildable:
        # A what-if that cannot be built is still listed, with the reason, so the report can say so.
        try:
            specs.append({"kind": "remat", "args": {"cut_after": remat_cut_points(model)}})
        except VariantNotApplicable as exc:
            specs.append({"kind": "remat", "args": {"not_applicable": exc.message}})
        try:
            for candidate in shrink_candidates(model):
                specs.append({"kind": "shrink", "args": candidate})
        except VariantNotApplicable as exc:
            specs.append({"kind": "shrink", "args": {"not_applicable": exc.message}})
    else:
        # Listed anyway so the report says why they were not measured.
        specs.append({"kind": "remat", "args": {}})
        specs.append({"kind": "shrink", "args": {}})
    specs += finetune_specs(model)
    return specs


def finetune_specs(model) -> list[VariantSpec]:
    """For a model that fine-tunes (frozen layers or LoRA): full fine-tuning, the backbone frozen, and LoRA
    (rank 4, or twice the rank it has)."""
    state = fine_tuning_state(model)
    if state is None:
        return []
    rank = 2 * state["lora_rank"] if state["lora_rank"] else 4
    specs = [{"kind": "finetune", "args": {"mode": "full"}}]
    if state["lora_rank"] or any(layer.trainable_weights for layer in _backbone(model)):
        specs.append({"kind": "finetune", "args": {"mode": "freeze_backbone"}})  # not frozen already
    return specs + [{"kind": "finetune", "args": {"mode": "lora", "rank": rank}}]


def apply_variant(model, spec: VariantSpec):
    """Build the variant a spec names: `(new compiled model, description)`; VariantNotApplicable if it can't."""
    kind, args = spec.get("kind"), dict(spec.get("args") or {})
    builders = {"mixed_precision": mixed_precision, "optimizer": optimizer, "remat": remat, "shrink": shrink,
                "finetune": finetune}
    if kind not in builders:
        raise VariantNotApplicable(f"unknown what-if kind {kind!r}; one of {', '.join(KINDS)}")
    if "not_applicable" in args:
        raise VariantNotApplicable(args["not_applicable"])
    if kind == "shrink" and not args:
        _rebuildable_config(model)  # raises the subclassed-model reason
    return builders[kind](model, **args)


def spec_label(spec: VariantSpec) -> str:
    """A short stable label for logs and JSON keys, e.g. 'optimizer:sgd'."""
    args = spec.get("args") or {}
    detail = args.get("policy") or args.get("name") or (f"{args.get('change')}:{args.get('layer')}" if "change" in args else "")
    if "mode" in args:
        detail = f"{args['mode']}:{args['rank']}" if args.get("rank") else args["mode"]
    return f"{spec.get('kind')}:{detail}" if detail else str(spec.get("kind"))


__all__ = [
    "VariantNotApplicable", "VariantSpec", "apply_variant", "finetune", "finetune_specs", "fine_tuning_state",
    "list_variants", "mixed_precision", "optimizer",
    "remat", "remat_blocks", "remat_cut_points", "shrink", "shrink_candidates", "spec_label",
]


def variant_floors(model, specs: list[dict]) -> dict[str, Any]:
    """The static floor of each what-if variant of a shape-only `model`, keyed by `spec_label`.

    A value is the floor dict, or {"error": reason} when the variant cannot be built this way.
    """
    from preflight.engine.static_floor import build_optimizer_shapes_only, shapes_only, static_floor

    floors: dict[str, Any] = {}
    for spec in specs:
        try:
            with shapes_only():
                variant, _ = apply_variant(model, spec)
                build_optimizer_shapes_only(variant)
            floors[spec_label(spec)] = static_floor(variant)
        except VariantNotApplicable as exc:
            floors[spec_label(spec)] = {"error": exc.message}
        except Exception as exc:  # noqa: BLE001 - a floor is extra information; the variant may still run
            floors[spec_label(spec)] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    return floors
