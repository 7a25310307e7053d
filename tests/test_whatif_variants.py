"""What-if variants on real TensorFlow with tiny models: each rebuilds, trains a step, and does what it says."""
from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from preflight.whatif.variants import (  # noqa: E402
    VariantNotApplicable,
    apply_variant,
    list_variants,
    mixed_precision,
    optimizer,
    remat,
    shrink,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "wide_dense_cnn.py"


def _small_cnn(functional: bool = True):
    layers = [
        keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c1"),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c2"),
        keras.layers.MaxPooling2D(name="p1"),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="c3"),
        keras.layers.MaxPooling2D(name="p2"),
        keras.layers.Flatten(name="flat"),
        keras.layers.Dense(64, activation="relu", name="wide"),
        keras.layers.Dense(5, activation="softmax", name="out"),
    ]
    if functional:
        inputs = keras.Input((16, 16, 3))
        hidden = inputs
        for layer in layers:
            hidden = layer(hidden)
        model = keras.Model(inputs, hidden, name="small_cnn")
    else:
        model = keras.Sequential([keras.Input((16, 16, 3)), *layers], name="small_cnn_seq")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def _batch(model, n=4):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, *model.inputs[0].shape[1:])).astype("float32")
    y = rng.integers(0, int(model.outputs[0].shape[-1]), size=(n,))
    return x, y


def test_mixed_precision_variant_computes_hidden_layers_in_bfloat16_and_keeps_output_float32():
    model = _small_cnn()
    variant, description = mixed_precision(model, "mixed_bfloat16")
    hidden = keras.Model(variant.inputs[0], variant.get_layer("c2").output)
    x, y = _batch(model)
    assert keras.backend.standardize_dtype(hidden(x).dtype) == "bfloat16"
    assert keras.backend.standardize_dtype(variant(x).dtype) == "float32"
    assert variant.get_layer("out").compute_dtype == "float32"
    assert np.isfinite(variant.train_on_batch(x, y)[0])
    assert description["kind"] == "mixed_precision" and description["params"] == model.count_params()
    ast.parse(description["snippet"])


def test_mixed_float16_wraps_the_optimizer_in_loss_scaling():
    variant, description = mixed_precision(_small_cnn(functional=False), "mixed_float16")
    assert isinstance(variant.optimizer, keras.optimizers.LossScaleOptimizer)
    assert str(variant.get_layer("c1").compute_dtype) == "float16"
    assert "LossScaleOptimizer" in description["snippet"]


def test_subclassed_model_is_reported_not_applicable():
    class Tiny(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, inputs):
            return self.dense(inputs)

    model = Tiny()
    model(np.zeros((1, 4), "float32"))
    model.compile(optimizer="adam", loss="mse")
    with pytest.raises(VariantNotApplicable, match="subclassed"):
        mixed_precision(model)
    with pytest.raises(VariantNotApplicable):
        apply_variant(model, {"kind": "shrink", "args": {}})


def test_remat_keeps_weights_trainable_inside_the_recomputed_blocks():
    model = _small_cnn()
    variant, description = remat(model, num_blocks=3)
    assert description["details"]["cut_after"], "expected at least one cut"
    assert any(type(layer).__name__ == "RematBlock" for layer in variant.layers)
    assert variant.count_params() == model.count_params()
    first_kernel = next(w for w in variant.weights if "c1" in w.path and "kernel" in w.path)
    before = np.array(first_kernel.numpy())
    x, y = _batch(model)
    variant.train_on_batch(x, y)
    assert not np.allclose(before, first_kernel.numpy()), "gradients did not reach a rematerialized layer"
    ast.parse(description["snippet"])


def test_shrink_flatten_to_global_pooling_cuts_the_dense_parameters():
    model = _small_cnn()
    variant, description = shrink(model, "flatten_to_gap", "flat")
    assert type(variant.get_layer("flat")).__name__ == "GlobalAveragePooling2D"
    assert description["params"] < model.count_params() / 2
    assert f"{description['params']:,}" in description["tradeoff"]
    x, y = _batch(model)
    assert np.isfinite(variant.train_on_batch(x, y)[0])


def test_optimizer_state_is_measured_from_built_variables():
    model = _small_cnn()
    trainable = sum(int(np.prod(w.shape)) * 4 for w in model.trainable_weights)
    _, adam_free = optimizer(model, "sgd")
    details = adam_free["details"]
    # Adam keeps two slots per weight, SGD with momentum one (plus a few scalars each).
    assert abs(details["baseline_optimizer_state_bytes"] - 2 * trainable) < 1024
    assert abs(details["optimizer_state_bytes"] - trainable) < 1024


def test_every_listed_variant_of_the_example_builds_trains_a_step_and_has_a_parsing_snippet():
    namespace: dict = {}
    exec(compile(EXAMPLE.read_text(), str(EXAMPLE), "exec"), namespace)
    model = namespace["model"]
    specs = list_variants(model, "CPU")
    kinds = {spec["kind"] for spec in specs}
    assert {"mixed_precision", "optimizer", "remat", "shrink"} <= kinds
    assert {"change": "flatten_to_gap", "layer": "flatten"} in [s["args"] for s in specs if s["kind"] == "shrink"]
    x, y = _batch(model, n=2)
    for spec in specs:
        variant, description = apply_variant(model, spec)
        loss = variant.train_on_batch(x, y)[0]
        assert np.isfinite(loss), spec
        assert set(description) >= {"kind", "title", "snippet", "tradeoff", "params"}
        ast.parse(description["snippet"])


def test_gpu_target_proposes_float16():
    specs = list_variants(_small_cnn(), "GPU")
    assert {"kind": "mixed_precision", "args": {"policy": "mixed_float16"}} in specs


MEASURE_MODEL = textwrap.dedent("""
    import keras
    inputs = keras.Input((64, 64, 3))
    h = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(inputs)
    h = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(h)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = keras.layers.Dense(10, activation="softmax")(h)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
""")


@pytest.mark.slow
def test_mixed_precision_peak_measured_with_bfc_in_a_child_is_lower(tmp_path):
    from preflight.whatif.measure import measure_variant

    model_file = tmp_path / "model.py"
    model_file.write_text(MEASURE_MODEL)
    baseline = measure_variant(str(model_file), None, batch_size=16, steps=1)
    mixed = measure_variant(str(model_file), {"kind": "mixed_precision", "args": {"policy": "mixed_bfloat16"}},
                            batch_size=16, steps=1)
    assert baseline["status"] == "ok", baseline
    assert mixed["status"] == "ok", mixed
    assert "bfloat16" in mixed["output_dtypes"] and mixed["output_dtypes"][-1] == "float32"
    assert mixed["peak_bytes"] < baseline["peak_bytes"], (mixed["peak_bytes"], baseline["peak_bytes"])


@pytest.mark.parametrize("mode", ["full", "larger_than"])
def test_remat_scope_still_fails_in_tf_function_which_is_why_remat_wraps_blocks(mode):
    # If Keras fixes this, RematScope becomes a one-line alternative and the remat tradeoff text must change.
    kwargs = {"output_size_threshold": 10} if mode == "larger_than" else {}
    with keras.RematScope(mode=mode, **kwargs):
        inputs = keras.Input((16,))
        hidden = keras.layers.Dense(32, activation="relu")(inputs)
        model = keras.Model(inputs, keras.layers.Dense(4)(hidden))
    model.compile(optimizer="adam", loss="mse")
    with pytest.raises(ValueError, match="keywords arguments only when eager"):
        model.train_on_batch(np.zeros((4, 16), "float32"), np.zeros((4, 4), "float32"))


def test_mixed_precision_reaches_layers_of_a_nested_model():
    inner_inputs = keras.Input((8, 8, 3))
    inner = keras.Model(inner_inputs, keras.layers.Conv2D(4, 3, name="inner_conv")(inner_inputs), name="backbone")
    model = keras.Sequential([keras.Input((8, 8, 3)), inner, keras.layers.Flatten(),
                              keras.layers.Dense(2, activation="softmax", name="head")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    variant, _ = mixed_precision(model, "mixed_bfloat16")
    assert variant.get_layer("backbone").get_layer("inner_conv").compute_dtype == "bfloat16"
    assert variant.get_layer("head").compute_dtype == "float32"
    np.testing.assert_allclose(variant.get_layer("head").get_weights()[0], model.get_layer("head").get_weights()[0])


def test_remat_never_cuts_inside_a_skip_connection():
    from preflight.whatif.variants import remat_cut_points

    inputs = keras.Input((8, 8, 4))
    a = keras.layers.Conv2D(4, 3, padding="same", name="a")(inputs)
    b = keras.layers.Conv2D(4, 3, padding="same", name="b")(a)
    c = keras.layers.Conv2D(4, 3, padding="same", name="c")(b)
    added = keras.layers.Add(name="add")([a, c])
    d = keras.layers.Conv2D(4, 3, padding="same", name="d")(added)
    outputs = keras.layers.Dense(2, name="out")(keras.layers.GlobalAveragePooling2D(name="gap")(d))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    cuts = remat_cut_points(model, num_blocks=6)
    assert cuts and not {"b", "c"} & set(cuts), cuts  # `a` is still needed by `add` after b and c
    variant, _ = remat(model, cut_after=cuts)
    assert np.all(np.isfinite(variant.train_on_batch(np.ones((2, 8, 8, 4), "float32"), np.array([0, 1]))))


def test_a_what_if_that_cannot_be_built_is_listed_with_its_reason():
    shared = keras.layers.Dense(4, name="shared")
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(2, name="out")(shared(shared(inputs)))  # one layer called twice
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="mse")
    [spec] = [s for s in list_variants(model, "CPU") if s["kind"] == "remat"]
    with pytest.raises(VariantNotApplicable, match="shared"):
        apply_variant(model, spec)


def test_half_resolution_rewires_a_functional_model_behind_a_resizing_layer():
    inputs = keras.Input((64, 64, 3))
    hidden = keras.layers.Conv2D(4, 3, padding="same", name="first_conv")(inputs)
    outputs = keras.layers.Dense(2, activation="softmax", name="out")(keras.layers.GlobalAveragePooling2D()(hidden))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    assert {"change": "half_resolution"} in [s["args"] for s in list_variants(model, "CPU") if s["kind"] == "shrink"]
    variant, description = shrink(model, "half_resolution")
    assert tuple(variant.get_layer("first_conv").output.shape) == (None, 32, 32, 4)
    assert variant.input_shape == (None, 64, 64, 3)  # the data stays as it is
    ast.parse(description["snippet"])
    assert np.all(np.isfinite(variant.train_on_batch(np.ones((2, 64, 64, 3), "float32"), np.array([0, 1]))))
