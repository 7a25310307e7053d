"""graph_estimate against the measured BFC peak of three tiny models, each in a fresh process.

Measured on this machine (estimate / max of 3 measured steps): MLP 0.93-0.94; BatchNorm CNN 0.57-1.24
(the graph counts BatchNorm's unfused moments); a two-conv CNN 0.47 at batch 16 and 0.78 at 64, because
oneDNN's scratch (~37 MiB, constant in batch) is invisible to the graph while the per-sample slope
matches within 2 %. The bands below are those observations with room for run-to-run spread.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from preflight.engine.graph_estimate import parse_buffer_assignment_total

REPO_ROOT = Path(__file__).resolve().parent.parent
HELPER = Path(__file__).resolve().parent / "graph_estimate_probe.py"


def run_probe(model: str, batch_size: int, xla_dump_dir: str | None = None) -> dict:
    env = dict(os.environ, TF_CPU_ALLOCATOR_USE_BFC="true", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    extra = []
    if xla_dump_dir:
        env["XLA_FLAGS"] = f"--xla_dump_to={xla_dump_dir}"
        extra = [xla_dump_dir]
    completed = subprocess.run([sys.executable, str(HELPER), model, str(batch_size), *extra], env=env,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("model,low,high", [("mlp", 0.80, 1.10), ("bn", 0.45, 1.40)])
def test_estimate_is_within_the_stated_band_of_the_measured_peak(model, low, high):
    result = run_probe(model, 32)
    ratio = result["peak_bytes"] / result["measured_peak_bytes"]
    assert low <= ratio <= high, result
    assert result["peak_bytes"] == result["persistent_bytes"] + result["transient_peak_bytes"]
    assert result["peak_op"]
    assert result["unknown_shape_outputs"] == 0


def test_cnn_per_sample_slope_matches_the_measured_slope():
    small, large = run_probe("cnn", 16), run_probe("cnn", 64)
    for result in (small, large):
        # One process's measured peak varies by up to 25 % between fresh processes (README, "More than one
        # fresh process"): an estimate above it by less than that is within what a real run may meet.
        assert 0.35 <= result["peak_bytes"] / result["measured_peak_bytes"] <= 1.25, result
    # The measured slope, over the spread of each batch's peaks (a step lands in its high mode in some runs,
    # a small batch's high mode against a large one's low would read a slope 30 % short).
    estimated_slope = (large["peak_bytes"] - small["peak_bytes"]) / 48
    lowest = (large["measured_min_bytes"] - small["measured_peak_bytes"]) / 48
    highest = (large["measured_peak_bytes"] - small["measured_min_bytes"]) / 48
    assert 0.75 * lowest <= estimated_slope <= 1.33 * highest, (estimated_slope, lowest, highest)
    assert large["persistent_bytes"] == small["persistent_bytes"]   # weights and slots do not scale


def test_parse_buffer_assignment_total():
    assert parse_buffer_assignment_total("...\nTotal bytes used: 444.44MiB (466037063B)\n") == int(444.44 * 2**20)
    assert parse_buffer_assignment_total("Total bytes used: 1024B") == 1024
    assert parse_buffer_assignment_total("Total bytes used:    466037063 (444.44MiB)") == 466037063
    assert parse_buffer_assignment_total("no such line") is None


def test_xla_buffer_assignment_total_is_read_without_running(tmp_path):
    small = run_probe("mlp", 16, xla_dump_dir=str(tmp_path / "small"))
    large = run_probe("mlp", 512, xla_dump_dir=str(tmp_path / "large"))
    for result in (small, large):
        assert result["xla_total_bytes"] is not None
        # Parameters (weights, slots) are inside XLA's total; activations come on top.
        assert result["xla_total_bytes"] >= result["persistent_bytes"]
    assert large["xla_total_bytes"] > small["xla_total_bytes"]
