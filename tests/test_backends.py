"""Measuring under the Keras backend the user trains with (issue 14): the choice, the readers, the errors.

JAX tests need the `jax` extra (CI installs it); PyTorch tests skip where torch is absent. Each end-to-end
test runs the real CLI in a fresh process, in a temporary folder (no pyproject budget), on a small model.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from preflight.engine.backends import checked_backend, default_backend, resolve_backend
from preflight.errors import UsageError, is_out_of_memory

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "tests" / "models"


def run_cli(args: list[str], cwd: Path, env: dict | None = None, prelude: str = "") -> subprocess.CompletedProcess:
    """python -m preflight ARGS, in `cwd`; `prelude` runs first in the same process (e.g. to hide a package)."""
    code = f"{prelude}\nimport sys\nfrom preflight.cli import main\nsys.exit(main({args!r}))"
    inherited = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}  # the test's own choice only
    environment = {**inherited, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=environment, capture_output=True, text=True,
                          timeout=900)


# --- the choice, the Keras way ------------------------------------------------------------------------------

def test_the_backend_is_chosen_as_keras_chooses_it(tmp_path):
    home = tmp_path / "keras_home"
    home.mkdir()
    (home / "keras.json").write_text(json.dumps({"backend": "torch"}))
    assert default_backend({"KERAS_HOME": str(home)}) == "torch"                      # keras.json
    assert default_backend({"KERAS_HOME": str(home), "KERAS_BACKEND": "jax"}) == "jax"  # the variable wins
    assert default_backend({"KERAS_HOME": str(tmp_path / "none"), "KERAS_BACKEND": ""}) == "tensorflow"
    assert resolve_backend("TF", {"KERAS_BACKEND": "jax"}) == "tensorflow"            # the flag wins over all
    assert checked_backend("tf") == "tensorflow"


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_an_unknown_backend_is_a_usage_error_listing_the_known_ones(tmp_path):
    with pytest.raises(UsageError, match="known: tensorflow, jax, torch"):
        checked_backend("mxnet")
    result = run_cli([str(MODELS / "cnn.py"), "--backend", "mxnet"], tmp_path)
    assert result.returncode == 2, result.stderr
    assert "unknown Keras backend 'mxnet'" in result.stderr and "Traceback" not in result.stderr


def test_an_uninstalled_backend_is_exit_2_naming_the_extra(tmp_path):
    hide_jax = "import sys; sys.modules['jax'] = None  # as if jax were not installed"
    result = run_cli([str(MODELS / "cnn.py"), "--backend", "jax"], tmp_path, prelude=hide_jax)
    assert result.returncode == 2, result.stderr
    assert "jax backend is not installed" in result.stderr and "pip install 'preflight[jax]'" in result.stderr
    # KERAS_BACKEND naming it is the same mistake, and the message says where the name came from.
    result = run_cli([str(MODELS / "cnn.py")], tmp_path, env={"KERAS_BACKEND": "jax"}, prelude=hide_jax)
    assert result.returncode == 2 and "KERAS_BACKEND" in result.stderr, result.stderr


def test_a_backend_in_pyproject_is_checked_like_the_flag(tmp_path):
    from preflight.settings.config import load_settings
    from preflight.errors import ConfigError

    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.preflight]\nbackend = "theano"\n')
    with pytest.raises(ConfigError, match="unknown Keras backend 'theano'"):
        load_settings({}, pyproject=pyproject)
    pyproject.write_text('[tool.preflight]\nbackend = "tensorflow"\n')
    assert load_settings({}, pyproject=pyproject).backend == "tensorflow"
    assert load_settings({"backend": "tf"}, pyproject=pyproject).backend == "tensorflow"


# --- out of memory, as each backend raises it ------------------------------------------------------------

def test_each_backends_out_of_memory_error_is_read_as_oom():
    jax = pytest.importorskip("jax")
    assert is_out_of_memory(jax.errors.JaxRuntimeError(
        "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1073741824 bytes."))
    assert not is_out_of_memory(jax.errors.JaxRuntimeError("INVALID_ARGUMENT: shapes do not match"))
    if _installed("torch"):
        import torch

        assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
        assert not is_out_of_memory(RuntimeError("CUDA error: device-side assert triggered"))


# --- JAX on CPU: XLA's buffer assignment -----------------------------------------------------------------

@pytest.mark.measured_children  # against the compiled step's buffers read now
def test_jax_on_cpu_reports_the_compiled_steps_buffers_exactly(tmp_path):
    pytest.importorskip("jax")
    json_path, html_path = tmp_path / "r.json", tmp_path / "r.html"
    result = run_cli([str(MODELS / "cnn.py"), "--batch-size", "16", "--steps", "1", "--no-whatif",
                      "--json", str(json_path), "--html", str(html_path)], tmp_path, env={"KERAS_BACKEND": "jax"})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(json_path.read_text())
    assert report["backend"]["name"] == "jax" and report["backend"]["version"]
    assert "XLA buffer assignment" in report["backend"]["method"]
    measured = {p["batch_size"]: p["peak_bytes"] for p in report["probes"] if p["status"] == "ok"}
    assert 16 in measured and len(measured) >= 2
    # The figure is the same in every process: the planned batch is not measured again in a second one.
    assert report["device"]["deterministic"] is True
    assert next(p for p in report["probes"] if p["batch_size"] == 16)["processes"] == 1

    independent = subprocess.run([sys.executable, str(ROOT / "tests" / "jax_step_buffers.py"), str(MODELS / "cnn.py"),
                                  *map(str, sorted(measured))], env={**os.environ, "KERAS_BACKEND": "jax",
                                                                     "PYTHONPATH": str(ROOT)},
                                 capture_output=True, text=True, timeout=600)
    assert independent.returncode == 0, independent.stderr[-3000:]
    figures = {int(b): f for b, f in json.loads(independent.stdout.strip().splitlines()[-1]).items()}
    for batch_size, peak in measured.items():
        assert peak == figures[batch_size]["total"], (batch_size, peak, figures[batch_size])
        # The arguments are the state and the batch, byte for byte.
        assert figures[batch_size]["argument"] == figures[batch_size]["state"] + figures[batch_size]["batch"]
    # The state the step takes holds the report's parameters and optimizer slots (plus scalars and metrics).
    state = figures[16]["state"]
    parts = report["model"]["param_bytes"] + report["model"]["optimizer_bytes"]
    assert parts <= state <= parts + 4096
    # Every renderer says which backend and method measured.
    assert "under JAX" in result.stdout and "XLA buffer assignment" in result.stdout
    html = html_path.read_text()
    assert "JAX" in html and "XLA buffer assignment" in html


def test_jax_on_cpu_a_budget_under_the_compiled_step_does_not_fit(tmp_path):
    pytest.importorskip("jax")
    json_path = tmp_path / "r.json"
    # small_cnn at batch 64: about 10 MiB of buffers; 4 MiB holds the weights and slots but not the step.
    result = run_cli([str(MODELS / "cnn.py"), "--backend", "jax", "--batch-size", "64", "--budget", "4MiB",
                      "--steps", "1", "--no-whatif", "--json", str(json_path), "--html", "none"], tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    report = json.loads(json_path.read_text())
    assert report["fits"] is False and report["backend"]["name"] == "jax"
    planned = next(p for p in report["probes"] if p["batch_size"] == 64)
    assert planned["status"] == "oom" or planned["peak_bytes"] > 4 * 2**20


def test_a_layer_calling_tensorflow_under_jax_is_exit_3_naming_the_layer(tmp_path):
    pytest.importorskip("jax")
    result = run_cli([str(MODELS / "tf_op_layer.py"), "--backend", "jax", "--json", "none", "--html", "none",
                      "--no-whatif"], tmp_path)
    assert result.returncode == 3, result.stderr[-3000:]
    assert "layer 'tf_scale' (TfScale) calls TensorFlow directly" in result.stderr
    assert "keras.ops" in result.stderr and "--backend tensorflow" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) <= 3


# --- PyTorch on CPU: live tensor storages through the dispatcher ------------------------------------------

def test_torch_on_cpu_measures_live_tensors_and_grows_with_the_batch(tmp_path):
    pytest.importorskip("torch")
    json_path = tmp_path / "r.json"
    result = run_cli([str(MODELS / "cnn.py"), "--backend", "torch", "--batch-size", "32", "--steps", "1",
                      "--no-whatif", "--json", str(json_path), "--html", "none"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(json_path.read_text())
    assert report["backend"]["name"] == "torch" and "dispatcher" in report["backend"]["method"]
    peaks = {p["batch_size"]: p["peak_bytes"] for p in report["probes"] if p["status"] == "ok"}
    floor = report["model"]["param_bytes"] + report["model"]["optimizer_bytes"]
    # At least the weights, their slots and the first convolution's output (32x32x16 float32 per sample).
    first_activation = 32 * 32 * 16 * 4
    for batch_size, peak in peaks.items():
        assert peak >= floor + batch_size * first_activation, (batch_size, peak)
    sizes = sorted(peaks)
    assert peaks[sizes[-1]] > peaks[sizes[0]]


def test_a_notebook_model_built_under_jax_is_measured_under_jax(tmp_path):
    pytest.importorskip("jax")
    script = tmp_path / "notebook_cell.py"
    script.write_text(
        "import json, os\n"
        "os.environ['KERAS_BACKEND'] = 'jax'\n"
        "import keras, numpy as np, preflight\n"
        "inputs = keras.Input((20,))\n"
        "model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Dense(64, activation='relu')(inputs)))\n"
        "model.compile('adam', keras.losses.SparseCategoricalCrossentropy(from_logits=True))\n"
        "x = np.random.rand(64, 20).astype('float32'); y = np.random.randint(0, 3, 64)\n"
        "report = preflight.check(model, (x, y), batch_size=16, probe_batch_sizes=[16], whatif=False,\n"
        "                         progress=False, budget='256MiB')\n"
        "print(json.dumps({'backend': report.document['backend'], 'fits': report.document['fits'],\n"
        "                  'peak': report.document['peak_bytes']}))\n")
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["backend"]["name"] == "jax" and "XLA buffer assignment" in answer["backend"]["method"]
    # Weights (20x64 + 64x3 floats) and Adam's two slots alone are about 17 KiB: the figure holds them.
    assert answer["fits"] is True and answer["peak"] > 3 * (20 * 64 + 64 + 64 * 3 + 3) * 4


def test_a_search_file_is_checked_under_the_chosen_backend(tmp_path):
    pytest.importorskip("jax")
    json_path = tmp_path / "search.json"
    result = run_cli([str(ROOT / "examples" / "tune.py"), "--backend", "jax", "--budget", "1GiB", "--configs", "1",
                      "--samples", "20", "--json", str(json_path), "--html", "none"], tmp_path)
    assert result.returncode in (0, 1), result.stderr[-3000:]
    report = json.loads(json_path.read_text())
    assert report["backend"]["name"] == "jax"
    measured = [m for m in report["search"]["measurements"] if m["status"] == "ok"]
    assert measured and all("jax on CPU: XLA buffer assignment" in m["source"] for m in measured)
    assert report["backend"]["method"] == measured[0]["source"]
