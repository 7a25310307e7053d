"""The pytest plugin: a test that builds a model can assert that its training run fits.

    @pytest.mark.preflight(budget="8GiB", batch_size=64)
    def test_model_fits():
        return build_model()          # the marked test returns the compiled keras.Model

    def test_with_data(preflight_check):
        preflight_check(build_model(), (x, y), budget="8GiB", batch_size=64)

Either way the dry run happens in a child process (preflight.check), and the test fails with the
verdict when the run does not fit or cannot train (NaN or infinite loss). Registered through the
`pytest11` entry point, so pytest loads it for every run: this module imports no TensorFlow and no
preflight machinery until a marked test or the fixture runs.
"""
from __future__ import annotations

import inspect
from typing import Any

import pytest

MARKER = "preflight"
# A run that cannot train fails the test like one that does not fit.
FAILING_FINDINGS = ("loss-not-finite",)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}(budget=None, batch_size=None, target=None, **options): the test returns a compiled "
                   "keras.Model; fail unless a dry run of its training step fits (see preflight.check)")


def assert_fits(report: Any) -> Any:
    """pytest.fail with the verdict when the report says it does not fit or cannot train."""
    problems = [f["message"] for f in report.findings if f.get("id") in FAILING_FINDINGS]
    if report.fits is False or problems:
        pytest.fail(f"preflight: {'does not fit' if report.fits is False else 'cannot train'}\n{report!r}",
                    pytrace=False)
    return report


def _check(model: Any, data: Any = None, **options: Any) -> Any:
    from preflight.api import check

    options.setdefault("progress", False)
    return assert_fits(check(model, data, **options))


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run a marked test ourselves, so its return value (the model) reaches the dry run."""
    marker = pyfuncitem.get_closest_marker(MARKER)
    if marker is None:
        return None
    if marker.args:
        raise pytest.UsageError(f"@pytest.mark.{MARKER} takes keyword arguments only, e.g. budget='8GiB'")
    function = pyfuncitem.obj
    if inspect.iscoroutinefunction(function):
        raise pytest.UsageError(f"@pytest.mark.{MARKER} does not support async tests; use the preflight_check fixture")
    # The test's own arguments, picked from its fixtures the way pytest's default pytest_pyfunc_call does.
    arguments = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    model = function(**arguments)
    if model is None:
        pytest.fail(f"@pytest.mark.{MARKER}: the test returned nothing; return the compiled keras.Model, "
                    "or call the preflight_check fixture instead", pytrace=False)
    _check(model, **marker.kwargs)
    return True


@pytest.fixture
def preflight_check():
    """preflight_check(model, data=None, budget=..., batch_size=..., ...) -> Report; fails the test if it does not fit."""
    return _check
