"""keras-tuner's distributed search with `preflight.guard` on the chief and on two workers, on loopback
(issue 25): a configuration that does not fit the workers' budget is skipped by the worker it reaches,
the chief's oracle records it as failed with the reason, the search finishes and no worker is lost."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_configuration_over_the_workers_budget_is_skipped_and_the_search_finishes(tmp_path):
    port = _free_port()
    processes = {}
    for tuner_id in ("chief", "tuner0", "tuner1"):
        env = {**os.environ, "KERASTUNER_TUNER_ID": tuner_id, "KERASTUNER_ORACLE_IP": "127.0.0.1",
               "KERASTUNER_ORACLE_PORT": str(port), "PYTHONPATH": str(HERE.parent), "CUDA_VISIBLE_DEVICES": "",
               "TF_CPP_MIN_LOG_LEVEL": "3"}
        processes[tuner_id] = subprocess.Popen(
            [sys.executable, str(HERE / "distributed_tuner_process.py"), str(tmp_path / "search"),
             str(tmp_path / f"{tuner_id}.json")], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    outputs = {}
    try:  # the workers first: if one dies, the chief would wait for it
        for name in ("tuner0", "tuner1", "chief"):
            outputs[name] = processes[name].communicate(timeout=150)[0].decode(errors="replace")
            code = processes[name].returncode
            assert code == 0, f"{name} exited {code}:\n{outputs[name][-3000:]}"
    finally:
        for p in processes.values():
            if p.poll() is None:
                p.kill()
    chief = json.loads((tmp_path / "chief.json").read_text())
    workers = [json.loads((tmp_path / f"tuner{i}.json").read_text()) for i in (0, 1)]
    assert chief["role"] == "chief" and {w["role"] for w in workers} == {"worker"}
    by_units = {t["values"]["units"]: t for t in chief["oracle_trials"]}
    assert set(by_units) == {4, 8, 16, 4096}  # the whole grid was handed out: the search finished
    assert by_units[4096]["status"] == "FAILED"
    assert "predicted peak 4.0 GiB > budget 100.0 MiB" in by_units[4096]["message"]
    assert "preflight/skipped" not in by_units[4096]["values"]
    assert all(by_units[u]["status"] == "COMPLETED" for u in (4, 8, 16))
    # Skipped by the worker it reached, run by none; the chief's guard holds the reason.
    skips = [s for w in workers for s in w["skipped"]]
    assert [s["values"]["units"] for s in skips] == [4096]
    ran = [t["values"]["units"] for w in workers for t in w["trials"] if t["status"] == "COMPLETED"]
    assert sorted(ran) == [4, 8, 16]
    assert [s["values"]["units"] for s in chief["skipped"]] == [4096]
