"""Child runs recorded once and replayed through the runner (preflight.engine.recordings): what the tests
of everything after the child rest on. A replayed run gives the outcome the measured one gave; a changed
model file, another child environment or a second run of the same job in one check is measured again."""
from __future__ import annotations

import pytest

from preflight.engine import recordings
from preflight.engine.runner import ProbeJob, run_probes

pytestmark = pytest.mark.measured_children  # this module sets its own folder

MODEL = '''
import keras
def build_model():
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(UNITS), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    return model
'''


def _job(path, **fields) -> ProbeJob:
    return ProbeJob(source={"kind": "file", "path": str(path)}, batch_sizes=[8], measured_steps=1, **fields)


def _next_test(monkeypatch, name: str) -> None:
    """What the runner sees when another test runs the job (records are counted per test)."""
    monkeypatch.setenv("PYTEST_CURRENT_TEST", f"tests/test_other.py::{name} (call)")


def test_a_second_run_of_a_job_replays_the_first_and_what_changes_is_measured(tmp_path, monkeypatch):
    monkeypatch.setenv(recordings.VARIABLE, str(tmp_path / "runs"))
    model = tmp_path / "model.py"
    model.write_text(MODEL.replace("UNITS", "16"))
    _next_test(monkeypatch, "a")
    first = run_probes(_job(model))
    assert recordings.counts() == (1, 0)
    _next_test(monkeypatch, "b")
    again = run_probes(_job(model))
    assert recordings.counts() == (1, 1)
    assert again.probes == first.probes and again.model == first.model and again.device == first.device

    _next_test(monkeypatch, "c")
    model.write_text(MODEL.replace("UNITS", "64"))  # the same path, another model
    wider = run_probes(_job(model))
    assert recordings.counts() == (2, 1)
    assert wider.model.params_total > first.model.params_total

    _next_test(monkeypatch, "d")
    monkeypatch.setenv("TF_NUM_INTEROP_THREADS", "1")  # another child environment
    run_probes(_job(model))
    assert recordings.counts() == (3, 1)


def test_the_same_job_twice_in_one_test_is_two_records(tmp_path, monkeypatch):
    """A check's repeats of one job are separate processes; replaying the first for the second would
    report one process's figure twice."""
    monkeypatch.setenv(recordings.VARIABLE, str(tmp_path / "runs"))
    model = tmp_path / "model.py"
    model.write_text(MODEL.replace("UNITS", "16"))
    run_probes(_job(model))
    run_probes(_job(model))
    assert recordings.counts() == (2, 0)
    _next_test(monkeypatch, "e")  # another test running it twice gets both records, in order
    run_probes(_job(model))
    run_probes(_job(model))
    assert recordings.counts() == (2, 2)


def test_a_failed_load_replays_as_the_same_error(tmp_path, monkeypatch):
    monkeypatch.setenv(recordings.VARIABLE, str(tmp_path / "runs"))
    model = tmp_path / "model.py"
    model.write_text("raise RuntimeError('no model here')\n")
    errors = []
    for name in ("f", "g"):
        _next_test(monkeypatch, name)
        with pytest.raises(Exception) as info:
            run_probes(_job(model))
        errors.append(info.value)
    assert recordings.counts() == (1, 1)
    assert type(errors[0]) is type(errors[1]) and str(errors[0]) == str(errors[1])
    assert "no model here" in str(errors[1])


def test_without_the_variable_nothing_is_recorded(tmp_path, monkeypatch):
    monkeypatch.delenv(recordings.VARIABLE, raising=False)
    model = tmp_path / "model.py"
    model.write_text(MODEL.replace("UNITS", "16"))
    assert recordings.key_for(_job(model), {}) is None
    run_probes(_job(model))
    assert not (tmp_path / "runs").exists()


def test_without_a_budget_the_hosts_free_memory_is_not_part_of_the_key(tmp_path, monkeypatch):
    """No budget: the probes' limit is a share of the host's free memory, which moves between runs; with a
    budget the limit is the budget's and a different one is another record."""
    monkeypatch.setenv(recordings.VARIABLE, str(tmp_path / "runs"))
    model = tmp_path / "model.py"
    model.write_text(MODEL.replace("UNITS", "16"))

    def key(test: str, limit: int, usable: int | None) -> str:
        _next_test(monkeypatch, test)
        env = {"TF_CPU_BFC_MEM_LIMIT_IN_MB": str(limit // 2**20)}
        return recordings.key_for(_job(model, memory_limit_bytes=limit, usable_bytes=usable), env)

    assert key("h", 16 * 2**30, None) == key("i", 15 * 2**30, None)
    assert key("j", 2 * 2**30, 2**30) != key("k", 3 * 2**30, 2**30)
    before = key("l", 16 * 2**30, None)
    model.write_text(MODEL.replace("UNITS", "32"))
    assert key("m", 16 * 2**30, None) != before  # the model file's bytes are
