"""The pytest plugin, run the way users run it: pytest on a test file that uses the marker and the fixture."""
from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import pytest

MODEL_TESTS = '''
import keras
import pytest


def build(units):
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(units, name="wide"), keras.layers.Dense(1)],
                             name=f"mlp_{units}")
    model.compile("sgd", "mse")
    return model


@pytest.mark.preflight(budget="512MiB", batch_size=8, steps=1, probe_batch_sizes=[8], whatif=False)
def test_small_model_fits():
    return build(8)


def test_wide_model_over_budget(preflight_check):
    preflight_check(build(4096), budget="1MiB", batch_size=8, steps=1, probe_batch_sizes=[8], whatif=False)


@pytest.mark.preflight(budget="1GiB")
def test_marker_without_a_model():
    build(8)
'''


def _plugin_args() -> list[str]:
    """Load the plugin by name unless it is installed (its pytest11 entry point then loads it)."""
    installed = any(e.value == "preflight.pytest_plugin" for e in importlib.metadata.entry_points(group="pytest11"))
    return ["-p", "no:cacheprovider"] + ([] if installed else ["-p", "preflight.pytest_plugin"])


def test_the_entry_point_names_the_plugin():
    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    assert pyproject["project"]["entry-points"]["pytest11"]["preflight"] == "preflight.pytest_plugin"


@pytest.mark.slow
def test_marker_passes_a_fitting_model_and_the_fixture_fails_one_over_budget(pytester):
    pytester.makepyfile(test_models=MODEL_TESTS)
    result = pytester.runpytest_subprocess(*_plugin_args(), "-q")
    result.assert_outcomes(passed=1, failed=2)
    output = result.stdout.str()
    assert "test_wide_model_over_budget" in output and "preflight: does not fit" in output
    assert "DOES NOT FIT" in output and "mlp_4096" in output  # the verdict, as the terminal summary prints it
    assert "the test returned nothing" in output
    assert "test_small_model_fits FAILED" not in output


def test_loading_the_plugin_imports_no_tensorflow(pytester):
    pytester.makepyfile(test_plain='''
import sys

def test_plain():
    assert "tensorflow" not in sys.modules and "keras" not in sys.modules
''')
    result = pytester.runpytest_subprocess(*_plugin_args(), "-q")
    result.assert_outcomes(passed=1)
