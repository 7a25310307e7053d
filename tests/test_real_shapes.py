"""The breakdown from the shapes the probe ran: a `None` axis besides the batch (a sequence length) takes
the batch's size, so a language model's activations are not "0 B" (issue 21), and an "other" part over a
third of the peak is named with where to look."""
from __future__ import annotations

import numpy as np

from preflight.analysis.checks import CheckContext, other_holds_much_of_the_peak


def _text_model():
    import keras

    tokens = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    x = keras.layers.Embedding(1000, 32, name="embed")(tokens)
    x = keras.layers.Dense(64, activation="relu", name="ff")(x)
    outputs = keras.layers.Dense(1000, name="logits")(x)
    model = keras.Model(tokens, outputs)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_a_sequence_axis_of_none_is_sized_from_the_batch_the_probe_ran():
    from preflight.engine.data import make_pool
    from preflight.engine.probe import describe_model

    model = _text_model()
    rng = np.random.default_rng(0)
    x = rng.integers(0, 1000, size=(16, 50)).astype("int32")
    pool = make_pool((x, x), model, 8)
    layers = {layer.name: layer for layer in describe_model(model, pool).layers}
    assert layers["embed"].output_shape == [None, None, 32]  # the model's own shape is kept as written
    assert layers["embed"].activation_bytes_per_sample == 50 * 32 * 4
    assert layers["ff"].activation_bytes_per_sample == 50 * 64 * 4
    assert layers["logits"].activation_bytes_per_sample == 50 * 1000 * 4
    # Another length gives other bytes: the figure follows the data, not a constant.
    longer = make_pool((np.zeros((16, 120), "int32"), np.zeros((16, 120), "int32")), model, 8)
    assert {l.name: l for l in describe_model(model, longer).layers}["ff"].activation_bytes_per_sample == 120 * 64 * 4


def test_an_other_part_over_a_third_of_the_peak_is_a_finding_with_where_to_look():
    mib = 2**20
    document = {"peak_bytes": 300 * mib, "footprint": {"other": 150 * mib}}
    finding = other_holds_much_of_the_peak(CheckContext(document, None))
    assert finding is not None and "50%" in finding.message and "--profile" in finding.message
    document["footprint"]["other"] = 90 * mib
    assert other_holds_much_of_the_peak(CheckContext(document, None)) is None


def test_a_tiny_models_other_part_is_not_a_finding_however_large_its_share():
    # nan_loss.py's Dense(4) at batch 4 measured a 12.6 KiB peak, 10.3 KiB of it "other": TF's own buffers.
    document = {"peak_bytes": 12_865, "footprint": {"other": 10_517}}
    assert other_holds_much_of_the_peak(CheckContext(document, None)) is None
