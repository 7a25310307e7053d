"""Data kinds -> sample pools, synthetic data, and what a tf.data pipeline holds in host memory."""
from __future__ import annotations

import numpy as np
import pytest

from preflight.checks import CheckContext, pipeline_holds_host_memory
from preflight.errors import DataError

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from preflight.data import describe_pipeline, make_pool, synthesize  # noqa: E402


def _image_model():
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(4)])
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def test_batched_and_unbatched_datasets_give_the_same_pool():
    x = np.arange(40 * 8 * 8 * 3, dtype="float32").reshape(40, 8, 8, 3)
    y = np.arange(40) % 4
    model = _image_model()
    unbatched = make_pool(tf.data.Dataset.from_tensor_slices((x, y)), model, 16)
    batched = make_pool(tf.data.Dataset.from_tensor_slices((x, y)).batch(5), model, 16)
    for pool in (unbatched, batched):
        bx, by = pool.batch(12)
        assert bx.shape == (12, 8, 8, 3) and by.shape == (12,)
        np.testing.assert_array_equal(bx, x[:12])


def test_small_data_is_tiled_to_any_batch():
    x, y = np.ones((3, 8, 8, 3), "float32"), np.array([0, 1, 2])
    pool = make_pool((x, y), _image_model(), 4)
    bx, by = pool.batch(10)
    assert bx.shape[0] == 10 and list(by) == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
    assert pool.host_bytes == x.nbytes + y.nbytes


def test_pydataset_is_collected():
    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 4

        def __getitem__(self, index):
            return np.full((5, 8, 8, 3), index, "float32"), np.full((5,), index)

    pool = make_pool(Batches(), _image_model(), 12)
    bx, by = pool.batch(12)
    assert bx.shape == (12, 8, 8, 3) and list(by[:6]) == [0, 0, 0, 0, 0, 1]


def test_multi_input_dict_data():
    a, b = keras.Input((3,), name="a"), keras.Input((2,), name="b")
    model = keras.Model({"a": a, "b": b}, keras.layers.Dense(1)(keras.layers.Concatenate()([a, b])))
    model.compile("sgd", "mse")
    pool = make_pool(({"a": np.zeros((6, 3)), "b": np.zeros((6, 2))}, np.zeros((6, 1))), model, 4)
    bx, _ = pool.batch(4)
    assert bx["a"].shape == (4, 3) and bx["b"].shape == (4, 2)
    with pytest.raises(DataError, match=r"input 'b'.*\(5,\).*\(2,\)"):
        make_pool(({"a": np.zeros((6, 3)), "b": np.zeros((6, 5))}, np.zeros((6, 1))), model, 4)


def test_mismatched_lengths_are_named():
    with pytest.raises(DataError, match="different numbers of samples"):
        make_pool((np.zeros((10, 8, 8, 3)), np.zeros(7)), _image_model(), 4)


@pytest.mark.parametrize("loss,check", [
    ("sparse_categorical_crossentropy", lambda y: y.dtype.kind == "i" and y.shape == (16,) and y.max() < 5),
    ("categorical_crossentropy", lambda y: y.shape == (16, 5) and np.all(y.sum(axis=1) == 1)),
    ("binary_crossentropy", lambda y: y.shape == (16, 5) and set(np.unique(y)) <= {0.0, 1.0}),
    ("mse", lambda y: y.shape == (16, 5) and y.dtype == np.float32),
])
def test_synthetic_labels_follow_the_loss(loss, check):
    model = keras.Sequential([keras.Input((10,), dtype="int32"), keras.layers.Embedding(7, 4),
                              keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(5)])
    model.compile("adam", loss)
    x, y = synthesize(model, 16).batch(16)
    assert x.dtype == np.int32 and x.max() < 7  # stays inside the Embedding's vocabulary
    assert check(y)


def test_pipeline_shuffle_buffer_and_cache_are_measured():
    x = np.zeros((1000, 32, 32, 3), "float32")
    y = np.zeros((1000,), "int64")
    element = 32 * 32 * 3 * 4 + 8
    dataset = (tf.data.Dataset.from_tensor_slices((x, y)).map(lambda a, b: (a * 2, b)).cache()
               .shuffle(500).batch(32).prefetch(2))
    described = describe_pipeline(dataset)
    assert described == {"shuffle_buffer_bytes": 500 * element, "in_memory_cache_bytes": 1000 * element}
    file_cached = tf.data.Dataset.from_tensor_slices((x, y)).cache("/tmp/preflight-test-cache").batch(8)
    assert describe_pipeline(file_cached)["in_memory_cache_bytes"] == 0


def test_pipeline_finding_only_when_it_matters():
    document = {"data": {"pipeline": {"shuffle_buffer_bytes": 6 * 2**30, "in_memory_cache_bytes": 0}}}
    finding = pipeline_holds_host_memory(CheckContext(document, host_available_bytes=16 * 2**30))
    assert finding is not None and "6.0 GiB" in finding.message and "shuffle" in finding.message
    assert pipeline_holds_host_memory(CheckContext(document, host_available_bytes=200 * 2**30)) is None
