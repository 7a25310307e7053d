"""The dry-run engine on real TensorFlow: peaks agree with independent measurements, parameter and
optimizer bytes equal hand-computed sizes, and every failure mode is survived and named."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import preflight
from preflight.errors import DataError, ModelError, TargetLoadError

HERE = Path(__file__).parent


def independent_peaks(model_file: Path, batch_size: int, processes: int = 2, runs: int = 3) -> list[int]:
    peaks = []
    for _ in range(processes):
        out = subprocess.run([sys.executable, str(HERE / "independent_peak.py"), str(model_file), str(batch_size),
                              str(runs)], capture_output=True, text=True, check=True, timeout=300)
        peaks += json.loads(out.stdout.strip().splitlines()[-1])["peaks"]
    return peaks


def assert_agrees(measured: int, measured_runs: list[int], reference: list[int]) -> None:
    """Within the run-to-run spread of both measurements, plus 5 % for allocator rounding."""
    low = min(reference + measured_runs)
    high = max(reference + measured_runs)
    assert low * 0.95 <= measured <= high * 1.05
    assert abs(measured - max(reference)) <= (high - low) + 0.05 * max(reference)


@pytest.mark.measured_children  # against an independent measurement made now
def test_mlp_peak_params_and_optimizer(examples_dir):
    report = preflight.check(str(examples_dir / "mnist_mlp.py"), progress=False, steps=3)
    doc = report.document
    # 784*1024+1024 + 1024*1024+1024 + 1024*10+10 float32 weights
    params = 784 * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 10 + 10
    assert doc["model"]["params_total"] == params
    assert doc["footprint"]["parameters"] == params * 4
    # Adam: two float32 slots per weight, plus its int64 iteration counter and float32 learning rate.
    assert doc["footprint"]["optimizer"] == 2 * params * 4 + 8 + 4
    assert doc["batch_size"] == 256 and doc["peak_source"] == "measured"
    planned = next(p for p in doc["probes"] if p["batch_size"] == 256)
    assert_agrees(doc["peak_bytes"], planned["peak_bytes_runs"], independent_peaks(examples_dir / "mnist_mlp.py", 256))
    assert sum(doc["footprint"].values()) == doc["peak_bytes"]
    layer = next(row for row in doc["layers"] if row["name"] == "hidden_1")
    assert layer["output_shape"] == [None, 1024] and layer["activation_bytes_per_sample"] == 4096
    assert layer["params"] == 784 * 1024 + 1024


@pytest.mark.measured_children  # against an independent measurement made now
def test_cnn_peak_agrees_with_independent_measurement(models_dir):
    doc = preflight.check(str(models_dir / "cnn.py"), progress=False).document
    params = (3 * 3 * 3 * 16 + 16) + (3 * 3 * 16 * 32 + 32) + (32 * 10 + 10)
    assert doc["model"]["params_total"] == params
    planned = next(p for p in doc["probes"] if p["batch_size"] == 32)
    assert_agrees(doc["peak_bytes"], planned["peak_bytes_runs"], independent_peaks(models_dir / "cnn.py", 32))


@pytest.mark.measured_children  # against an independent measurement made now
def test_lstm_with_its_own_dataset_and_sgd_momentum(models_dir):
    doc = preflight.check(str(models_dir / "lstm.py"), progress=False).document
    params = 500 * 32 + 4 * (32 * 64 + 64 * 64 + 64) + (64 + 1)
    assert doc["model"]["params_total"] == params
    # SGD with momentum: one float32 slot per weight, plus iterations (int64) and learning rate (float32).
    assert doc["footprint"]["optimizer"] == params * 4 + 8 + 4
    assert doc["data"]["kind"] == "tf.data"
    planned = next(p for p in doc["probes"] if p["batch_size"] == 16)
    assert_agrees(doc["peak_bytes"], planned["peak_bytes_runs"], independent_peaks(models_dir / "lstm.py", 16))


def test_notebook_model_with_custom_layer_and_numpy_data():
    import keras
    import numpy as np

    from tests.custom_layers import ScaledDense

    model = keras.Sequential([keras.Input((20,)), ScaledDense(16, name="scaled"), keras.layers.Dense(3)],
                             name="notebook_model")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.rand(50, 20).astype("float32")
    y = np.random.randint(0, 3, 50)
    report = preflight.check(model, (x, y), batch_size=8, budget="1GiB", progress=False)
    assert report.fits is True
    assert report.peak_bytes > 0
    assert any(row["type"] == "ScaledDense" for row in report.document["layers"])
    assert report.document["data"]["host_bytes"] == x.nbytes + y.nbytes


def test_notebook_data_with_wrong_shape_is_named():
    import keras
    import numpy as np

    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10)])
    model.compile("adam", "mse")
    with pytest.raises(DataError, match=r"\(28, 28\).*\(784,\)"):
        preflight.check(model, (np.zeros((10, 28, 28), "float32"), np.zeros((10, 10))), progress=False)


def test_class_ids_with_a_categorical_loss_get_the_fix_that_fits():
    import keras
    import numpy as np

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, activation="softmax")])
    model.compile("adam", "categorical_crossentropy")
    with pytest.raises(ModelError, match="same rank") as info:
        preflight.check(model, (np.zeros((16, 8), "float32"), np.arange(16) % 4), batch_size=8, progress=False)
    assert "to_categorical(y, 4)" in info.value.hint and "sparse_categorical_crossentropy" in info.value.hint


def test_uncompiled_model_gets_a_fix(models_dir):
    with pytest.raises(ModelError, match="not compiled") as info:
        preflight.check(str(models_dir / "uncompiled.py"), progress=False)
    assert "model.compile" in info.value.hint


@pytest.mark.parametrize("name,pattern", [
    ("broken_syntax.py", r"syntax error at line 3"),
    ("raises.py", r"NameError: name 'undefined_name' is not defined \(raises.py, line 5\)"),
    ("no_model.py", r"defines no model"),
])
def test_broken_model_files_are_named(models_dir, name, pattern):
    with pytest.raises(TargetLoadError, match=pattern):
        preflight.check(str(models_dir / name), progress=False)


def test_hanging_step_times_out_and_is_reported(models_dir):
    report = preflight.check(str(models_dir / "hangs.py"), progress=False, timeout=10,
                             probe_batch_sizes=[4])
    probe = report.document["probes"][0]
    assert probe["status"] == "timeout" and "10 s" in probe["message"]
    assert any(f["id"] == "probe-timeout" for f in report.findings)


def test_unsaveable_notebook_model_gets_an_isolation_error():
    import keras
    import numpy as np

    from preflight.errors import IsolationError
    from tests.custom_layers import NoConfigLayer, Scaler

    model = keras.Sequential([keras.Input((4,)), NoConfigLayer(3, Scaler(2.0), name="needs_units")])
    model.compile("sgd", "mse")
    with pytest.raises(IsolationError, match="NoConfigLayer|needs_units|get_config") as info:
        preflight.check(model, (np.zeros((8, 4), "float32"), np.zeros((8, 3), "float32")), progress=False)
    assert "model.py" in info.value.hint


def test_recommended_batch_is_confirmed_under_the_budget(models_dir):
    doc = preflight.check(str(models_dir / "cnn.py"), budget="256MiB", progress=False, max_batch_time=120).document
    confirmation = doc["confirmation"]
    assert confirmation["status"] == "ok" and confirmation["limit_bytes"] == 256 * 2**20
    assert confirmation["batch_size"] == doc["recommended_batch_size"] <= doc["max_batch_size"]
    assert confirmation["measured_peak_bytes"] <= 256 * 2**20
    # The curve is an upper bound at every measured point.
    for row in doc["curve"]:
        if row["source"] == "measured":
            assert row["peak_bytes"] >= row["measured_bytes"]
