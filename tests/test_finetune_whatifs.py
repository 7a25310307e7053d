"""Issue 23 item 5: for a model that fine-tunes (frozen layers, LoRA) the what-ifs "full fine-tuning",
"freeze the backbone" and "LoRA rank r" are built (preflight.whatif.variants.finetune), each dry-run in its
own child like every what-if (preflight.whatif.recommend.measure_variants), and the footprint separates the
trainable from the frozen weights. Real TensorFlow on tiny models."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from preflight.analysis.footprint import footprint
from preflight.engine.runner import ProbeJob
from preflight.common.measurements import ModelInfo
from preflight.whatif.recommend import measure_variants

MODELS = Path(__file__).parent / "models"
MIB = 2**20


def frozen_base_model():
    import keras

    base = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, name="d1"),
                             keras.layers.Dense(32, name="d2")], name="base")
    base.trainable = False
    inputs = keras.Input((16,))
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(base(inputs)))
    model.compile("adam", "mse")
    return model


def test_the_footprint_puts_frozen_weights_apart_from_the_trainable_ones():
    info = ModelInfo(name="m", params_total=0, params_trainable=0, params_non_trainable=0, param_bytes=10 * MIB,
                     trainable_param_bytes=1 * MIB, param_bytes_by_dtype={}, optimizer="Adam", optimizer_bytes=2 * MIB,
                     optimizer_slots_per_weight=2.0, input_bytes_per_sample=0, jit_compile=False, dtype_policy="float32")
    parts, sources = footprint(info, 8, 20 * MIB)
    assert parts["parameters"] == 1 * MIB and parts["frozen_parameters"] == 9 * MIB
    assert parts["gradients"] == 1 * MIB and parts["other"] == 20 * MIB - 13 * MIB
    assert "frozen layers" in sources["frozen_parameters"]
    every_weight_trains = ModelInfo(**{**info.__dict__, "trainable_param_bytes": 10 * MIB, "layers": []})
    assert "frozen_parameters" not in footprint(every_weight_trains, 8, 30 * MIB)[0]


def test_a_model_that_fine_tunes_lists_the_three_what_ifs_and_one_that_does_not_lists_none():
    import keras

    from preflight.whatif.variants import finetune_specs, list_variants

    model = frozen_base_model()
    assert finetune_specs(model) == [{"kind": "finetune", "args": {"mode": "full"}},
                                     {"kind": "finetune", "args": {"mode": "lora", "rank": 4}}]  # base frozen already
    assert [s for s in list_variants(model) if s["kind"] == "finetune"] == finetune_specs(model)
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    plain.compile("adam", "mse")
    assert finetune_specs(plain) == []


@pytest.mark.parametrize("mode, rank, trains", [
    ("full", None, {"base/d1/kernel", "head/kernel"}),
    ("lora", 4, {"head/kernel", "base/d1/lora_kernel_a", "base/d2/lora_kernel_b"}),
])
def test_each_fine_tuning_what_if_trains_the_weights_it_names_and_still_steps(mode, rank, trains):
    from preflight.whatif.variants import apply_variant

    model, description = apply_variant(frozen_base_model(), {"kind": "finetune", "args": {"mode": mode, "rank": rank}})
    trainable = {w.path for w in model.trainable_weights}
    assert trains <= trainable
    if mode == "lora":
        assert "base/d1/kernel" not in trainable  # the base kernel is frozen under its adapter
        assert description["title"] == "LoRA rank 4"
    assert description["details"]["trainable_bytes"] > description["details"]["baseline_trainable_bytes"]
    loss = model.train_on_batch(np.ones((2, 16), "float32"), np.ones((2, 3), "float32"))
    assert np.isfinite(loss)


def test_the_fine_tuning_what_ifs_are_measured_by_real_steps_in_their_own_children():
    job = ProbeJob(source={"kind": "file", "path": str(MODELS / "frozen_base.py")}, batch_sizes=[16],
                   planned_batch_size=16, measured_steps=1, memory_limit_bytes=2048 * MIB, backend="tensorflow")
    specs = [{"kind": "finetune", "args": {"mode": "full"}}, {"kind": "finetune", "args": {"mode": "lora", "rank": 4}}]
    full, lora = measure_variants(job, specs)
    assert full["title"] == "Full fine-tuning (every weight trains)" and full["peak_bytes"]
    assert lora["title"] == "LoRA rank 4" and lora["peak_bytes"]
    # Full fine-tuning adds gradients and two Adam slots for the 0.3M frozen weights (about 3.2 MiB); the
    # rank-4 adapters add a few KiB. Not all of it is live at the peak: measured 1.9 to 2.1 MiB apart.
    assert full["peak_bytes"] - lora["peak_bytes"] > 1 * MIB


def test_every_renderer_shows_the_fine_tuning_what_ifs_whether_they_save_or_cost():
    import json

    from preflight.render.html import render_html
    from preflight.render.markdown import render_markdown
    from preflight.render.terminal import render_text

    document = json.loads((Path(__file__).parent / "data" / "sample_report.json").read_text(encoding="utf-8"))
    document["recommendations"] = (document.get("recommendations") or []) + [
        {"kind": "finetune", "title": "Full fine-tuning (every weight trains)", "peak_bytes": 8 * MIB,
         "saving_bytes": -6 * MIB, "saving_fraction": -3.0, "fits": False, "recommended": False, "status": "ok"},
        {"kind": "finetune", "title": "Freeze the backbone (train the head only)", "peak_bytes": None,
         "status": "not_applicable", "message": "with the backbone <b>frozen</b> nothing is left to train"}]
    text = " ".join(render_text(document).split())
    assert "Fine-tuning what-ifs (measured at batch" in text
    assert "Full fine-tuning (every weight trains): peak 8.0 MiB (+6.0 MiB against now), does not fit" in text
    assert "Freeze the backbone (train the head only): not applicable: with the backbone" in text
    assert "- Full fine-tuning (every weight trains): peak 8.0 MiB (+6.0 MiB against now), does not fit" in \
        render_markdown(document)
    html = render_html(document)
    assert "Fine-tuning: which weights train" in html and "uses 6.0 MiB more" in html
    assert "<b>frozen</b>" not in html and "&lt;b&gt;frozen&lt;/b&gt;" in html
