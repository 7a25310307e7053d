"""peak_profile: a real profiler trace of a small CNN (BFC allocator, in a child) and its peak composition."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from preflight.engine.peak_profile import phase_of_op, sample_timeline

ROOT = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent("""
    import glob, json, sys
    import numpy as np
    import keras
    from preflight.engine.peak_profile import profile_training_step

    inputs = keras.Input((32, 32, 3))
    h = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv_a")(inputs)
    h = keras.layers.MaxPooling2D(name="pool_a")(h)
    h = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv_b")(h)
    h = keras.layers.Flatten(name="flat")(h)
    outputs = keras.layers.Dense(10, activation="softmax", name="head")(h)
    model = keras.Model(inputs, outputs, name="small_cnn")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = np.random.rand(16, 32, 32, 3).astype("float32")
    y = np.random.randint(0, 10, 16)
    model.train_on_batch(x, y)  # warm-up outside the trace
    composition = profile_training_step(model, x, y, logdir=sys.argv[1])
    composition["xplane"] = glob.glob(sys.argv[1] + "/plugins/profile/*/*.xplane.pb")[0]
    composition["weight_bytes"] = sum(int(np.prod(w.shape)) * 4 for w in model.weights)
    print("RESULT " + json.dumps(composition))
""")


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("profile")
    env = dict(os.environ, TF_CPU_ALLOCATOR_USE_BFC="true", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", CHILD, str(logdir)], env=env, capture_output=True, text=True,
                          timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stderr[-3000:]
    return logdir, json.loads(lines[-1][len("RESULT "):])


def test_trace_names_the_op_holding_most_memory_at_the_peak(traced):
    _, composition = traced
    assert composition["allocator"] == "bfc_cpu_allocator_for_gpu"
    assert composition["attributed"] is True
    top = composition["top_allocations"][0]
    # A real TF op of this model's step (forward, gradient or optimizer scope), with its shape.
    # Keras suffixes the model's name scope (small_cnn_1) when a model of that name was built before.
    assert top["op"].split("/")[0].rstrip("_0123456789") in {"small_cnn", "gradient_tape", "adam", "compile_loss"}, top
    assert top["shape"].startswith("[") and top["bytes"] > 0
    assert top["bytes"] == max(entry["bytes"] for entry in composition["top_allocations"])
    assert composition["phase"] in {"forward", "loss", "backward", "optimizer"}
    assert composition["phase"] == phase_of_op(composition["peak_op"], ("adam",))


def test_preallocated_memory_holds_weights_and_slots_and_the_parts_fit_the_peak(traced):
    _, composition = traced
    # Weights and Adam's two slots existed before the trace started: about 3x the weight bytes.
    assert composition["preallocated_bytes"] >= 2 * composition["weight_bytes"]
    live = sum(entry["bytes"] for entry in composition["top_allocations"]) + composition["preallocated_bytes"]
    assert live <= composition["peak_bytes"] * 1.01


def test_timeline_is_sampled_and_keeps_the_peak(traced):
    _, composition = traced
    timeline = composition["timeline"]
    assert 2 <= len(timeline) <= 200
    assert [p["time_ms"] for p in timeline] == sorted(p["time_ms"] for p in timeline)
    assert max(p["bytes_in_use"] for p in timeline) == composition["peak_bytes"]


def test_tensorboard_profile_plugin_lists_the_run(traced):
    logdir, composition = traced
    from xprof.profile_plugin import ProfilePlugin

    context = types.SimpleNamespace(logdir=str(logdir), data_provider=None,
                                    flags=types.SimpleNamespace(master_tpu_unsecure_channel=""))
    plugin = ProfilePlugin(context)
    runs = list(plugin.generate_runs())
    assert runs == [Path(composition["xplane"]).parent.name]
    tools = list(plugin.generate_tools_of_run(runs[0], str(Path(composition["xplane"]).parent)))
    assert "memory_profile" in tools


def test_phase_of_op_reads_the_name_scope():
    assert phase_of_op("gradient_tape/model/dense/MatMul/MatMul_1") == "backward"
    assert phase_of_op("adam/Sqrt_13") == "optimizer"
    assert phase_of_op("my_opt/Mul", ("my_opt",)) == "optimizer"
    assert phase_of_op("compile_loss/sparse_categorical_crossentropy/Sum") == "loss"
    assert phase_of_op("cnn_1/conv2d_1_2/Relu") == "forward"
    assert phase_of_op("AssignVariableOp") == "unknown"


def test_sample_timeline_keeps_each_buckets_maximum():
    events = [{"timeOffsetPs": str(i * 10**9), "aggregationStats": {"heapAllocatedBytes": str(b)}}
              for i, b in enumerate([5] * 500 + [999] + [7] * 499)]
    points = sample_timeline(events, max_points=200)
    assert len(points) <= 200
    assert max(p["bytes_in_use"] for p in points) == 999
    assert points[0]["time_ms"] == 0.0


def test_unattributed_profile_says_so_instead_of_inventing_a_table():
    from preflight.engine.peak_profile import peak_composition_from_profile

    profile = {"memoryProfilePerAllocator": {"bfc_cpu_allocator_for_gpu": {
        "profileSummary": {"peakStats": {"peakBytesInUse": "1000", "heapAllocatedBytes": "1000"},
                           "peakStatsTimePs": "2000000000"},
        "memoryProfileSnapshots": [],
        "activeAllocations": [{"snapshotIndex": "-1", "specialIndex": "0", "numOccurrences": "1"}],
        "specialAllocations": [{"tfOpName": "unused preallocated device memory", "allocationBytes": "1000"}],
        "sampledTimelineSnapshots": [
            {"timeOffsetPs": "1000000000", "aggregationStats": {"heapAllocatedBytes": "10"},
             "activityMetadata": {"tfOpName": "model/dense/MatMul"}},
            {"timeOffsetPs": "2000000000", "aggregationStats": {"heapAllocatedBytes": "1000"},
             "activityMetadata": {"tfOpName": "gradient_tape/model/dense/MatMul"}}]}}}
    composition = peak_composition_from_profile(profile)
    assert composition["attributed"] is False and composition["top_allocations"] == []
    assert composition["preallocated_bytes"] == 1000
    assert composition["phase"] == "backward" and composition["peak_time_ms"] == 1.0
