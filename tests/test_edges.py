"""Verdicts at the edges: a model too big before any activation, one that runs out of memory while being
built, and one that fits at no batch size. Each is a memory verdict (exit 1) with the numbers and, where a
change to the model could help, measured what-ifs; never a "broken model" (exit 3)."""
from __future__ import annotations

import json
import time

import pytest

from preflight.cli import main
from preflight.errors import is_out_of_memory
from preflight.analysis.recommendations import rank_recommendations

GIB, MIB = 2**30, 2**20


def _run(model_file: str, budget: str, tmp_path, *extra: str) -> tuple[int, dict]:
    code = main([f"tests/models/{model_file}", "--budget", budget, "--json", str(tmp_path / "r.json"),
                 "--html", str(tmp_path / "r.html"), "--quiet", *extra])
    return code, json.loads((tmp_path / "r.json").read_text())


def test_weights_over_the_budget_give_the_static_floor_and_exit_1_without_a_probe(tmp_path):
    started = time.monotonic()
    code, document = _run("huge_dense.py", "8GiB", tmp_path)
    assert code == 1
    assert document["fits"] is False and document["fits_at_no_batch"] is True
    floor = document["floor"]
    # 1.6e9 float32 weights, their gradients and Adam's two slots, exact from the shapes.
    assert floor["parameter_bytes"] == 1_600_060_000 * 4
    assert floor["gradient_bytes"] == floor["parameter_bytes"]
    assert floor["optimizer_bytes"] >= 2 * floor["parameter_bytes"]
    assert floor["total_bytes"] > 8 * GIB
    assert floor["largest_layers"][0]["name"] == "huge"
    assert document["probes"] == []  # nothing was allocated to find that out
    finding = next(f for f in document["findings"] if f["id"] == "floor-over-budget")
    assert "before any activation" in finding["message"] and "huge" in finding["message"]
    # Every what-if leaves a floor over 8 GiB: each says so, none is recommended.
    entries = document["recommendations"]
    assert entries and all(e["status"] == "floor_over_budget" and not e["recommended"] for e in entries)
    assert {e["kind"] for e in entries} >= {"optimizer", "shrink"}
    assert "static floor" in document["gate"]["reasons"][0]
    html = (tmp_path / "r.html").read_text()
    assert "No batch size fits" in html
    assert time.monotonic() - started < 120  # no probe of a 24 GiB step: seconds, not minutes


def test_out_of_memory_while_the_file_builds_the_model_is_a_memory_verdict(tmp_path):
    code, document = _run("built_at_import.py", "256MiB", tmp_path, "--no-whatif")
    assert code == 1
    assert document["fits"] is False
    assert "out of memory while building the model" in document["load_oom"]
    assert any(f["id"] == "load-oom" for f in document["findings"])
    # The floor comes from running the file again with shapes only.
    assert document["floor"]["parameter_bytes"] == (20000 * 20000 + 20000) * 4


def test_out_of_memory_is_recognised_by_type_not_by_text():
    import tensorflow as tf

    bare = tf.errors.ResourceExhaustedError(None, None, "Graph execution error:\n\n[[{{node dense/MatMul}}]]")
    assert is_out_of_memory(bare)
    try:
        try:
            raise bare
        except tf.errors.ResourceExhaustedError as inner:
            raise ValueError("Exception encountered when calling Dense.call()") from inner
    except ValueError as wrapped:
        assert is_out_of_memory(wrapped)
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(ValueError("OOM when allocating tensor"))  # text alone is not a type


def test_ranking_without_a_baseline_peak_puts_what_fits_at_the_planned_batch_first():
    measured = [
        {"kind": "shrink", "title": "half resolution", "peak_bytes": 50 * MIB, "batch_size": 1,
         "details": {"change": "half_resolution"}},
        {"kind": "shrink", "title": "gap", "peak_bytes": 90 * MIB, "batch_size": 64,
         "details": {"change": "flatten_to_gap"}},
        {"kind": "mixed_precision", "title": "bf16", "peak_bytes": 300 * MIB, "batch_size": 64},
        {"kind": "optimizer", "title": "sgd", "peak_bytes": None, "status": "oom", "message": "does not fit either"},
    ]
    ranked = rank_recommendations(None, measured, 100 * MIB, None, planned_batch_size=64)
    assert [e["title"] for e in ranked] == ["gap", "half resolution", "bf16", "sgd"]
    assert ranked[0]["lead"] and ranked[0]["recommended"] and ranked[1]["recommended"]
    assert not ranked[2]["recommended"] and ranked[2]["saving_bytes"] is None


def test_no_batch_fits_gets_measured_what_ifs_and_no_smaller_batch_advice(tmp_path):
    code, document = _run("big_activations.py", "80MiB", tmp_path)
    assert code == 1 and document["fits"] is False and document["fits_at_no_batch"] is True
    batch_one = next(p for p in document["probes"] if p["batch_size"] == 1)
    assert batch_one["status"] == "oom" or batch_one["peak_bytes"] > 80 * MIB
    assert any(f["id"] == "no-batch-fits" for f in document["findings"])
    recommendations = document["recommendations"]
    assert all(r["kind"] != "batch_size" for r in recommendations)
    lead = next(r for r in recommendations if r["lead"])
    assert lead["kind"] == "shrink" and lead["fits"] and lead["peak_bytes"] <= 80 * MIB
    assert "smaller batch is the change" not in json.dumps(document["findings"])


@pytest.mark.slow
def test_flatten_cnn_fits_at_no_batch_and_a_measured_shrink_leads(tmp_path):
    code, document = _run("flatten_cnn.py", "2GiB", tmp_path)
    assert code == 1 and document["fits"] is False
    assert document["floor"]["total_bytes"] > 2 * GIB and document["probes"] == []
    lead = next(r for r in document["recommendations"] if r["lead"])
    assert lead["kind"] == "shrink" and lead["status"] == "ok"
    assert lead["peak_bytes"] is not None and lead["peak_bytes"] <= 2 * GIB  # measured, under the budget
    assert "smaller batch" not in json.dumps(document["findings"])
