"""rank_recommendations: pure ranking of measured what-ifs (no TensorFlow)."""
from __future__ import annotations

import pytest

from preflight.analysis.recommendations import MIN_SAVING_FRACTION, rank_recommendations

MiB = 2**20


def _measured(kind, peak_mib, step=1.0, title=None):
    return {"kind": kind, "title": title or kind, "peak_bytes": None if peak_mib is None else int(peak_mib * MiB),
            "step_seconds": step, "params": 1000, "snippet": "x = 1", "tradeoff": "t"}


def test_savings_and_ratios_are_computed_from_the_baseline():
    [entry] = rank_recommendations(400 * MiB, [_measured("remat", 300, step=1.5)], None, 1.0)
    assert entry["saving_bytes"] == 100 * MiB
    assert entry["saving_fraction"] == 0.25
    assert entry["step_ratio"] == 1.5
    assert entry["fits"] is None  # no budget given
    assert entry["recommended"] is True


def test_least_intrusive_fitting_change_leads_even_if_another_saves_more():
    measured = [_measured("shrink", 100), _measured("mixed_precision", 280), _measured("optimizer", 350)]
    ranked = rank_recommendations(400 * MiB, measured, budget_bytes=300 * MiB, baseline_step_seconds=1.0)
    assert [e["kind"] for e in ranked] == ["mixed_precision", "shrink", "optimizer"]
    assert ranked[0]["lead"] and ranked[0]["fits"]
    assert not ranked[1]["lead"]
    assert ranked[2]["fits"] is False and ranked[2]["recommended"] is True


def test_without_a_fitting_variant_order_is_by_saving():
    measured = [_measured("mixed_precision", 380), _measured("shrink", 350), _measured("remat", 360)]
    ranked = rank_recommendations(400 * MiB, measured, budget_bytes=100 * MiB, baseline_step_seconds=1.0)
    assert [e["kind"] for e in ranked] == ["shrink", "remat", "mixed_precision"]
    assert not any(e["lead"] for e in ranked)


def test_variant_that_saves_too_little_is_kept_but_not_recommended():
    tiny = 400 * (1 - MIN_SAVING_FRACTION / 2)
    measured = [_measured("optimizer", tiny), _measured("remat", 420), _measured("shrink", 300)]
    ranked = rank_recommendations(400 * MiB, measured, budget_bytes=350 * MiB, baseline_step_seconds=1.0)
    by_kind = {e["kind"]: e for e in ranked}
    assert by_kind["optimizer"]["recommended"] is False and by_kind["optimizer"]["fits"] is False
    assert by_kind["remat"]["recommended"] is False and by_kind["remat"]["saving_bytes"] < 0
    assert ranked[0]["kind"] == "shrink" and ranked[0]["lead"]
    assert [e["kind"] for e in ranked[1:]] == ["optimizer", "remat"]  # non-recommended, by saving


def test_failed_variant_is_kept_last_with_its_message():
    failed = {"kind": "mixed_precision", "title": "Mixed precision", "peak_bytes": None,
              "status": "not_applicable", "message": "subclassed model"}
    ranked = rank_recommendations(400 * MiB, [failed, _measured("remat", 200)], None, None)
    assert ranked[-1]["status"] == "not_applicable" and ranked[-1]["message"] == "subclassed model"
    assert ranked[-1]["recommended"] is False and ranked[-1]["saving_bytes"] is None
    assert ranked[0]["step_ratio"] is None  # no baseline step time


def test_batch_size_leads_when_it_fits():
    measured = [_measured("remat", 250), _measured("batch_size", 290), _measured("mixed_precision", 310)]
    ranked = rank_recommendations(400 * MiB, measured, budget_bytes=300 * MiB, baseline_step_seconds=1.0)
    assert ranked[0]["kind"] == "batch_size" and ranked[0]["lead"]


def test_rejects_a_missing_baseline():
    with pytest.raises(ValueError):
        rank_recommendations(0, [], None, None)


def test_batch_size_and_unmeasured_entries_rank_like_measured_ones():
    import ast

    from preflight.analysis.recommendations import batch_size_entry, unmeasured_entry

    smaller = batch_size_entry(64, 16, 250 * MiB, 1000, source="predicted")
    ast.parse(smaller["snippet"])
    assert "gradient_accumulation_steps=4" in smaller["tradeoff"]
    skipped = unmeasured_entry({"kind": "remat", "args": {}}, "not_applicable", "subclassed model")
    ranked = rank_recommendations(400 * MiB, [skipped, smaller], 300 * MiB, 1.0)
    assert ranked[0]["kind"] == "batch_size" and ranked[0]["lead"] and ranked[0]["fits"]
    assert ranked[1]["status"] == "not_applicable" and ranked[1]["recommended"] is False


def test_no_lead_when_the_baseline_already_fits():
    ranked = rank_recommendations(200 * MiB, [_measured("optimizer", 180), _measured("shrink", 120)],
                                  budget_bytes=256 * MiB, baseline_step_seconds=1.0)
    assert [e["kind"] for e in ranked] == ["shrink", "optimizer"]
    assert not any(e["lead"] for e in ranked)


def test_within_shrink_pooling_leads_over_a_lower_resolution():
    resolution = {**_measured("shrink", 70, title="half resolution"), "details": {"change": "half_resolution"}}
    pooling = {**_measured("shrink", 130, title="pooling"), "details": {"change": "flatten_to_gap"}}
    ranked = rank_recommendations(210 * MiB, [resolution, pooling], 160 * MiB, 1.0)
    assert [e["title"] for e in ranked] == ["pooling", "half resolution"]
    assert ranked[0]["lead"]


def test_a_largest_batch_that_ran_with_headroom_becomes_the_recommendation():
    """Measured where measured (issue 21): the MNIST example's largest batch ran under model.fit at 541 MiB of
    1 GiB, while the curve's extrapolation margin had recommended 10,560 (confirmed at 207 MiB)."""
    from preflight.analysis.recommendations import apply_largest

    mib = 2**20
    def document():
        return {"max_batch_size": 28_456, "recommended_batch_size": 10_560, "budget_bytes": 1024 * mib,
                "probes": []}

    def largest(peaks):
        return {"batch_size": 28_456, "status": "ok", "measured_peak_bytes": max(peaks), "limit_bytes": 1024 * mib,
                "failed_batch_sizes": [], "process_peaks": peaks, "near_limit": {}}

    roomy = document()
    assert apply_largest(roomy, largest([540 * mib, 541 * mib])) == 28_456
    assert roomy["recommended_batch_size"] == 28_456 and roomy["confirmation"]["batch_size"] == 28_456
    tight = document()  # one process over 90 % of the limit: the predicted recommendation stays
    assert apply_largest(tight, largest([900 * mib, 930 * mib])) == 10_560 and "confirmation" not in tight
    refused = {**document(), "probes": [{"batch_size": 512, "status": "ok", "peak_bytes": 46 * mib}]}
    assert apply_largest(refused, {**largest([540 * mib]), "status": "oom", "failed_batch_sizes": [28_456]}) == 512
    assert refused["max_batch_size"] == 512 and "confirmation" not in refused  # what ran, nothing else
