"""Shared fixtures. Integration tests run real TensorFlow in child processes on tiny models."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ("pytester",)  # tests/test_pytest_plugin.py runs pytest on generated test files

MODELS = Path(__file__).parent / "models"
EXAMPLES = Path(__file__).parent.parent / "examples"
RECORDED = Path(__file__).parent / "recorded"  # child runs recorded by tests/record_children.py

# Quieter TF logs in the children; the variable is inherited.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The largest-batch search runs model.fit in one fresh process per batch size tried (up to 180 s a check);
# a test that is not about it should not pay for it. The tests of the search pass --max-batch-time /
# max_batch_time themselves, which overrides this (flags and arguments sit above the environment).
os.environ.setdefault("PREFLIGHT_MAX_BATCH_TIME", "0")
# The planned batch is measured again in a second fresh process by default (the spread between processes);
# a test that is not about that spread measures it once (tests/test_cli.py's mlp run passes --processes 2).
os.environ.setdefault("PREFLIGHT_PROCESSES", "1")
# The fork server (preflight.engine.zygote) stays between the checks a test worker runs in its own process,
# and every child is forked from it, the verdict's too, without importing TensorFlow again. A user's check
# starts the verdict's children fresh (forked ones reach a step's high modes less often; engine.runner.forkable):
# these tests are about what is done with the figures; benchmarks/forked_children.py measures their spread.
# A test that is about the server sets its own.
os.environ.setdefault("PREFLIGHT_FORK_SERVER", "all")
# Checks record their predictions in the calibration store (README "After the run"): never the user's own
# during the tests; the tests of the store give their own path.
os.environ.setdefault("PREFLIGHT_CALIBRATION", "none")


@pytest.fixture(scope="session", autouse=True)
def _child_runs_replayed(tmp_path_factory):
    """A child run is measured once: the first run of a job (the same model file, settings, child environment
    and preflight source) is recorded, and a later run of that job gets the record replayed through the
    runner (preflight.engine.recordings). The records committed in tests/recorded (tests/record_children.py,
    from a passing run of this suite) are replayed too: with them the suite measures only what they lack,
    and a change to preflight's code makes them all stale, so a change is always measured. The tests assert
    what is done with a real child's figures; a test about the children themselves (their spread, their
    timing, their process) is marked `measured_children`."""
    from preflight.engine import recordings

    if recordings.VARIABLE not in os.environ:  # tests/record_children.py sets it to tests/recorded
        base = tmp_path_factory.getbasetemp()
        shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # one for both workers
        os.environ[recordings.VARIABLE] = str(shared / "child-runs")
        os.environ[recordings.READ_ONLY_VARIABLE] = str(RECORDED)
    yield
    os.environ.pop(recordings.VARIABLE, None)
    os.environ.pop(recordings.READ_ONLY_VARIABLE, None)


@pytest.fixture(autouse=True)
def _measured_children(request, monkeypatch):
    """A test marked `measured_children` runs every child for real, as a user's check does."""
    if request.node.get_closest_marker("measured_children"):
        from preflight.engine import recordings

        monkeypatch.delenv(recordings.VARIABLE, raising=False)
        monkeypatch.delenv(recordings.READ_ONLY_VARIABLE, raising=False)


@pytest.fixture(scope="session", autouse=True)
def _shared_fork_server():
    """One fork server per test worker, shared with the CLI processes its tests start (they are given its
    socket, preflight.engine.zygote.share): a `python -m preflight` check then imports TensorFlow in no
    process of its own. Set up before the first test's environment is saved, so every test sees it."""
    from preflight.engine import zygote
    from preflight.engine.runner import ProbeJob, child_environment

    if os.environ.get("PREFLIGHT_FORK_SERVER") == "all":
        for backend in ("tensorflow", "jax"):
            try:
                os.environ[zygote.SHARED_VARIABLE] = zygote.share(
                    child_environment(ProbeJob(source={}, batch_sizes=[], backend=backend)))
            except OSError:
                pass  # each check starts its own, as without it
    yield
    os.environ.pop(zygote.SHARED_VARIABLE, None)
    zygote.stop_shared()


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


def pytest_terminal_summary(terminalreporter, config):
    """How many child runs were replayed from records: a run after a change to preflight's code replays none
    until `python -m tests.record_children` records them again (README, tests)."""
    from preflight.engine import recordings

    folder = os.environ.get(recordings.VARIABLE)
    factory = getattr(config, "_tmp_path_factory", None)  # the workers' shared folder is under the run's
    if not folder and factory is not None:
        folder = str(factory.getbasetemp() / "child-runs")
    measured, replayed = recordings.counts(Path(folder)) if folder else (0, 0)
    if measured or replayed:
        terminalreporter.write_line(f"child runs: {measured} measured, {replayed} replayed from records "
                                    "(tests/recorded)")


def pytest_collection_modifyitems(config, items):
    if any("gpu" in item.keywords for item in items) and not has_gpu():
        skip = pytest.mark.skip(reason="no GPU on this machine")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
