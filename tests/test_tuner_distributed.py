"""keras-tuner's distributed search with `preflight.guard` on the chief and on two workers, on loopback
(issue 25): a configuration that does not fit the workers' budget is skipped by the worker it reaches,
the chief's oracle records it as failed with the reason, the search finishes and no worker is lost; and the
search check's dry runs shared out over the same three processes."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_chief_and_workers(script: str, tmp_path: Path) -> dict[str, subprocess.Popen]:
    """The chief and two workers of keras-tuner's distributed mode on loopback, each running `script` with the
    shared folder and its own output file."""
    port = _free_port()
    processes = {}
    for tuner_id in ("chief", "tuner0", "tuner1"):
        env = {**os.environ, "KERASTUNER_TUNER_ID": tuner_id, "KERASTUNER_ORACLE_IP": "127.0.0.1",
               "KERASTUNER_ORACLE_PORT": str(port), "PYTHONPATH": str(HERE.parent), "CUDA_VISIBLE_DEVICES": "",
               "TF_CPP_MIN_LOG_LEVEL": "3"}
        processes[tuner_id] = subprocess.Popen(
            [sys.executable, str(HERE / script), str(tmp_path / "search"), str(tmp_path / f"{tuner_id}.json")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return processes


@pytest.mark.slow  # a whole search in three processes (about 35 s)
def test_a_configuration_over_the_workers_budget_is_skipped_and_the_search_finishes(tmp_path):
    processes = _start_chief_and_workers("distributed_tuner_process.py", tmp_path)
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


@pytest.mark.slow
def test_the_search_checks_dry_runs_are_shared_out_over_the_chief_and_two_workers(tmp_path):
    """Each process of the distributed mode runs the search check; every configuration is measured by one
    of them, and all three hold every measurement."""
    # nothing listens on the oracle's port: the check reads keras-tuner's variables, it does not join the oracle
    processes = _start_chief_and_workers("spread_search_process.py", tmp_path)
    try:
        for name, process in processes.items():
            output = process.communicate(timeout=300)[0].decode(errors="replace")
            assert process.returncode == 0, f"{name} exited {process.returncode}:\n{output[-3000:]}"
    finally:
        for p in processes.values():
            if p.poll() is None:
                p.kill()
    written = {name: json.loads((tmp_path / f"{name}.json").read_text()) for name in processes}
    sections = {name: w["search"] for name, w in written.items()}
    rows = {name: s["measurements"] for name, s in sections.items()}
    chosen = [[(r["values"], r["batch_size"]) for r in rows[name]] for name in processes]
    assert chosen[0] == chosen[1] == chosen[2] and len(chosen[0]) >= 3
    # one measurer per configuration, the same figures everywhere
    for index in range(len(chosen[0])):
        seen = {(r[index]["measured_by"], r[index]["peak_bytes"], r[index]["status"]) for r in rows.values()}
        assert len(seen) == 1, seen
    measurers = [r["measured_by"] for r in rows["chief"]]
    assert all(r["status"] == "ok" and r["peak_bytes"] > 0 for r in rows["chief"])
    assert len(set(measurers)) >= 2, measurers  # the work was shared, not done three times
    for name, section in sections.items():
        assert section["spread"]["tuner_id"] == name
        assert section["spread"]["measured_here"] == measurers.count(name)
        said = f"{name} measured {measurers.count(name)} of {len(measurers)} dry-run configurations"
        assert said in written[name]["markdown"] and said in written[name]["html"]
    assert len(list((tmp_path / "search" / "preflight-dry-runs").glob("*.json"))) == len(chosen[0])
