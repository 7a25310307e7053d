"""What-if "shard the weights" (issue 25 item 2): the proposed layout from a floor built by hand (no TF), and a
real measurement of it under JAX on two host devices, whose snippet runs as given."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from preflight.whatif.shard import measure_sharded, propose_layout, snippet

MODELS = Path(__file__).parent / "models"
MIB = 2**20
# tests/models/big_embedding.py from its shapes: float32 weights, gradients and two Adam slots.
PARAMS = {"token_embedding": ("Embedding", 8192 * 128), "wide_dense": ("Dense", 128 * 2048 + 2048),
          "head": ("Dense", 2048 * 8 + 8)}
TOTAL = sum(p for _, p in PARAMS.values())
FLOOR = {"parameter_bytes": 4 * TOTAL, "gradient_bytes": 4 * TOTAL, "optimizer_bytes": 8 * TOTAL,
         "total_bytes": 16 * TOTAL,
         "largest_layers": [{"name": n, "class_name": c, "parameter_bytes": 4 * p} for n, (c, p) in PARAMS.items()]}
BUDGET = 16 * MIB  # one device; the floor is 20.3 MiB


def test_the_largest_kernels_are_split_over_the_fewest_devices_whose_share_fits():
    assert FLOOR["total_bytes"] > BUDGET
    proposal = propose_layout(FLOOR, BUDGET)
    assert proposal["devices"] == 2 and proposal["layers"] == ["token_embedding", "wide_dense"]  # not the head
    assert proposal["estimated_floor_bytes"] < BUDGET
    assert propose_layout(FLOOR, 4 * MIB)["devices"] == 8
    assert propose_layout(FLOOR, 2 * MIB) is None  # the replicated rest alone is over one device
    lines = snippet(proposal)
    assert "layout_map['(.*/)?token_embedding/embeddings'] = (None, 'model')" in lines
    assert "ModelParallel(layout_map=layout_map" in lines
    assert propose_layout({**FLOOR, "largest_layers": [{"name": "c", "class_name": "Conv2D",
                                                        "parameter_bytes": 1}]}, BUDGET) is None


def test_a_kernel_whose_split_axis_does_not_divide_by_the_devices_stays_replicated():
    odd = {**FLOOR, "largest_layers": [{**row, "split_axis_size": 129 if row["name"] == "token_embedding" else 2048}
                                       for row in FLOOR["largest_layers"]]}
    assert propose_layout(odd, BUDGET) is None  # the Dense kernel alone, even over 8, leaves 16.8 MiB
    proposal = propose_layout(odd, 17 * MIB)
    assert proposal["devices"] == 8 and proposal["layers"] == ["wide_dense"]
    assert not any("token_embedding" in key for key in proposal["layout"])


def test_the_floor_gives_each_kernels_split_axis():
    import keras

    from preflight.engine.static_floor import static_floor

    model = keras.Sequential([keras.Input((4,), dtype="int32"), keras.layers.Embedding(50, 6, name="e"),
                              keras.layers.Flatten(), keras.layers.Dense(7, name="d")])
    model.compile("adam", "mse")
    model.optimizer.build(model.trainable_variables)
    sizes = {row["name"]: row.get("split_axis_size") for row in static_floor(model)["largest_layers"]}
    assert sizes == {"e": 6, "d": 7}


def test_sharding_the_weights_is_measured_under_jax_and_its_snippet_runs(tmp_path):
    entry = measure_sharded(MODELS / "big_embedding.py", FLOOR, BUDGET, 32, user_backend="tensorflow")
    assert entry["status"] == "ok", entry
    assert entry["peak_bytes"] < BUDGET < FLOOR["total_bytes"] and entry["fits"]
    assert entry["measured_under"] == "jax" and "KERAS_BACKEND=jax" in entry["note"]
    script = tmp_path / "run_snippet.py"
    script.write_text("\n".join([
        "import runpy", entry["snippet"],
        f"names = runpy.run_path({str(MODELS / 'big_embedding.py')!r})",
        "model = names['model']",
        "model.fit(names['x'], names['y'], batch_size=32, epochs=1, steps_per_epoch=1, verbose=0)",
        "print('SPEC', [tuple(w.value.sharding.spec) for w in model.weights if 'embeddings' in w.path])"]))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "KERAS_BACKEND": "jax",
                               "XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "SPEC [(None, 'model')]" in done.stdout


def test_a_run_whose_floor_is_over_the_device_gets_the_what_if_and_it_leads():
    """The item a run's measured what-ifs get (the floor read from the built model: the layers from the run)."""
    from types import SimpleNamespace

    from preflight.analysis.recommendations import rank_recommendations
    from preflight.whatif.shard import shard_whatif

    document = {"budget_bytes": BUDGET, "floor": {**FLOOR, "largest_layers": []}, "model": {"params_total": TOTAL},
                "layers": [{"name": n, "type": c, "params": p} for n, (c, p) in PARAMS.items()]
                + [{"name": "global_average_pooling1d", "type": "GlobalAveragePooling1D", "params": 0}],
                "batch_size": 32, "backend": {"name": "tensorflow"}}
    job = SimpleNamespace(source={"kind": "file", "path": str(MODELS / "big_embedding.py")}, backend="tensorflow")
    item = shard_whatif(document, job)
    assert item["kind"] == "shard_weights" and "KERAS_BACKEND=jax" in item["tradeoff"]
    ranked = rank_recommendations(30 * MIB, [item], BUDGET, 0.02, planned_batch_size=32)
    assert ranked[0]["lead"] and ranked[0]["fits"] and "LayoutMap" in ranked[0]["snippet"]
    assert shard_whatif({**document, "budget_bytes": 64 * MIB}, job) is None  # the floor fits one device
