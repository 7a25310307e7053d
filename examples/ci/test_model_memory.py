"""pytest plugin example: `pytest examples/ci/test_model_memory.py` (the plugin loads with preflight installed)."""
import keras
import pytest


def build_model(width: int = 512):
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(width, activation="relu", name="hidden"),
                              keras.layers.Dense(10, name="logits")], name="digits")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


@pytest.mark.preflight(budget="256MiB", batch_size=64)
def test_training_fits_in_256_mib():
    return build_model()  # the marked test returns the compiled model; the plugin dry-runs it


def test_training_fits_with_real_data(preflight_check):
    import numpy as np

    x, y = np.random.rand(256, 784).astype("float32"), np.random.randint(0, 10, 256)
    report = preflight_check(build_model(), (x, y), budget="256MiB", batch_size=64)
    assert report.peak_bytes < 64 * 2**20
