"""Issue 23 items 4-6 on a real keras-hub model (preflight[hub]): a tiny GPT-2 causal LM fine-tuned with
rank-4 LoRA, as tests/models/hub_gpt2_lora.py builds it. Its token ids have no fixed length: the report names
the axis and measures the planned batch at several sequence lengths, up to the 128 positions the model has;
the fine-tuning what-ifs are each measured in their own child. Skipped where keras-hub is not installed."""
from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("keras_hub")

MODELS = Path(__file__).parent / "models"
GPT2 = MODELS / "hub_gpt2_lora.py"
MIB = 2**20


def test_the_gpt2_length_curve_is_real_steps_and_the_footprint_shows_the_frozen_base():
    import preflight

    report = preflight.check(str(GPT2), seq_len=64, budget="64MiB", steps=1, progress=False, max_batch_time=0,
                             whatif=False)
    document = report.document
    section = document["length_curve"]
    assert section["max_model_length"] == 128 and section["batch_size"] == 4
    peaks = {p["length"]: p["peak_bytes"] for p in section["probes"] if p["status"] == "ok"}
    assert sorted(peaks) == [16, 32, 64, 128]  # nothing past the position embedding's 128
    assert peaks[16] < peaks[32] < peaks[64] < peaks[128]
    assert section["max_length"] == 128
    # rank-4 LoRA: a few KiB train, the base weights are frozen
    footprint = document["footprint"]
    assert footprint["frozen_parameters"] > 20 * footprint["parameters"] > 0
    assert footprint["gradients"] == footprint["parameters"]
    from preflight.render.terminal import render_text

    printed = " ".join(render_text(document).split())
    assert "Sequence length: input 'padding_mask' axis 1, input 'token_ids' axis 1; planned 64 (--seq-len)" in printed
    assert "at batch 4 the longest that fits is 128 (measured), the longest the model accepts" in printed
    assert "Non-trainable parameters" in printed and "Trainable parameters" in printed


def test_the_gpt2_fine_tuning_what_ifs_are_measured_against_rank_4_lora():
    from preflight.engine.runner import ProbeJob
    from preflight.whatif.recommend import measure_variants

    job = ProbeJob(source={"kind": "file", "path": str(GPT2)}, batch_sizes=[4], planned_batch_size=4,
                   measured_steps=1, memory_limit_bytes=1024 * MIB, backend="tensorflow", seq_len=64)
    specs = [{"kind": "finetune", "args": {"mode": "full"}},
             {"kind": "finetune", "args": {"mode": "freeze_backbone"}},
             {"kind": "finetune", "args": {"mode": "lora", "rank": 8}}]
    full, frozen, lora8 = measure_variants(job, specs)
    assert full["peak_bytes"] and lora8["peak_bytes"]
    # full fine-tuning trains the 0.12M weights the adapters left frozen: gradients and Adam's two slots
    assert full["details"]["trainable_bytes"] > 40 * full["details"]["baseline_trainable_bytes"]
    assert full["peak_bytes"] > lora8["peak_bytes"]
    assert frozen["status"] == "not_applicable" and "nothing is left to train" in frozen["message"]
