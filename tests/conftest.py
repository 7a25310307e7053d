"""Shared fixtures. Integration tests run real TensorFlow in child processes on tiny models."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ("pytester",)  # tests/test_pytest_plugin.py runs pytest on generated test files

MODELS = Path(__file__).parent / "models"
EXAMPLES = Path(__file__).parent.parent / "examples"

# Quieter TF logs in the children; the variable is inherited.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The largest-batch search runs model.fit in one fresh process per batch size tried (up to 180 s a check);
# a test that is not about it should not pay for it. The tests of the search pass --max-batch-time /
# max_batch_time themselves, which overrides this (flags and arguments sit above the environment).
os.environ.setdefault("PREFLIGHT_MAX_BATCH_TIME", "0")
# The planned batch is measured again in a second fresh process by default (the spread between processes);
# a test that is not about that spread measures it once (tests/test_cli.py's mlp run passes --processes 2).
os.environ.setdefault("PREFLIGHT_PROCESSES", "1")
# The fork server (preflight.engine.zygote) stays between the checks a test worker runs in its own process:
# each check's children are forked without importing TensorFlow again. A test that is about it sets its own.
os.environ.setdefault("PREFLIGHT_FORK_SERVER", "keep")
# Checks record their predictions in the calibration store (README "After the run"): never the user's own
# during the tests; the tests of the store give their own path.
os.environ.setdefault("PREFLIGHT_CALIBRATION", "none")


@pytest.fixture(autouse=True)
def _environment_restored():
    """Each test leaves os.environ as it found it. The CLI sets KERAS_BACKEND (and a file's device setup may
    set XLA_FLAGS) in its own process for its children; a test calling main(["--backend", "jax", ...]) in
    this process would otherwise hand JAX to every later test's children in the same worker."""
    saved = dict(os.environ)
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def models_dir() -> Path:
    return MODELS


@pytest.fixture
def examples_dir() -> Path:
    return EXAMPLES


def has_gpu() -> bool:
    try:
        import tensorflow as tf
    except ImportError:
        return False
    return bool(tf.config.list_physical_devices("GPU"))


def pytest_collection_modifyitems(config, items):
    if any("gpu" in item.keywords for item in items) and not has_gpu():
        skip = pytest.mark.skip(reason="no GPU on this machine")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
