"""preflight.tuner.spread's claims and results on a folder, with a measuring function that records what it
was asked (the three-process run with real dry runs is in tests/test_tuner_distributed.py)."""
from __future__ import annotations

import json
import os
import time

from preflight.tuner import spread
from preflight.tuner.measure import ConfigMeasurement

CONFIGS = [{"units": 8}, {"units": 64}]


def recording_measure(asked):
    def measure(hypermodel, configs, batch_size, data=None):
        asked.extend(configs)
        return [ConfigMeasurement(values=v, batch_size=batch_size, status="ok", peak_bytes=1000 * v["units"])
                for v in configs]
    return measure


def paths(folder, values, batch_size=16, fingerprint="f"):
    key = spread._digest([fingerprint, values, batch_size])
    return folder / spread.FOLDER / f"{key}.json", folder / spread.FOLDER / f"{key}.claim"


def test_a_result_another_process_wrote_is_read_not_measured_again(tmp_path):
    result, _ = paths(tmp_path, CONFIGS[0])
    result.parent.mkdir(parents=True)
    other = ConfigMeasurement(values=CONFIGS[0], batch_size=16, status="ok", peak_bytes=123,
                              extra={"measured_by": "tuner1"})
    result.write_text(json.dumps(other.to_dict()))
    asked = []
    got = spread.spread_measure(recording_measure(asked), tmp_path, "f", "tuner0")(None, CONFIGS, 16)
    assert asked == [CONFIGS[1]]
    assert [(g.peak_bytes, g.extra["measured_by"]) for g in got] == [(123, "tuner1"), (64000, "tuner0")]
    assert json.loads(paths(tmp_path, CONFIGS[1])[0].read_text())["extra"]["measured_by"] == "tuner0"


def test_another_runs_result_and_an_abandoned_claim_are_measured_here(tmp_path):
    old_result, _ = paths(tmp_path, CONFIGS[0])
    _, abandoned = paths(tmp_path, CONFIGS[1])
    old_result.parent.mkdir(parents=True)
    old_result.write_text(json.dumps(ConfigMeasurement(values=CONFIGS[0], batch_size=16, status="ok",
                                                       peak_bytes=1).to_dict()))
    abandoned.write_text("tuner1")
    long_ago = time.time() - spread.REUSE_WINDOW_SECONDS - 100
    os.utime(old_result, (long_ago, long_ago))
    os.utime(abandoned, (long_ago, long_ago))
    asked = []
    got = spread.spread_measure(recording_measure(asked), tmp_path, "f", "chief", timeout_seconds=1)(None, CONFIGS, 16)
    assert asked == CONFIGS
    assert [g.peak_bytes for g in got] == [8000, 64000]


def test_a_live_claim_is_waited_for(tmp_path, monkeypatch):
    result, claim = paths(tmp_path, CONFIGS[0])
    claim.parent.mkdir(parents=True)
    claim.write_text("tuner1")
    waits = []

    def sleep(seconds):  # the other process finishes while this one waits
        waits.append(seconds)
        result.write_text(json.dumps(ConfigMeasurement(values=CONFIGS[0], batch_size=16, status="oom",
                                                       extra={"measured_by": "tuner1"}).to_dict()))

    monkeypatch.setattr(spread.time, "sleep", sleep)
    asked = []
    got = spread.spread_measure(recording_measure(asked), tmp_path, "f", "chief")(None, CONFIGS[:1], 16)
    assert asked == [] and len(waits) == 1
    assert got[0].status == "oom" and got[0].extra["measured_by"] == "tuner1"


def test_only_keras_tuners_distributed_mode_spreads(monkeypatch):
    for name in ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner0")
    assert spread.tuner_id() is None  # no oracle address: a lone process
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "8000")
    assert spread.tuner_id() == "tuner0"
