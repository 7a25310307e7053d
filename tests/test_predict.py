"""Unit tests of preflight.analysis.predict on hand-made ProbeResults (no TensorFlow)."""
from __future__ import annotations

import pytest

from preflight.analysis.devices import get_target
from preflight.common.measurements import ProbeResult
from preflight.analysis.predict import (
    MEASURED_SPREAD_RUN_MARGIN,
    MIN_RUN_MARGIN,
    STATIC_BUFFERS_RUN_MARGIN,
    PeakModel,
    next_probe_batch_sizes,
    per_replica_batch_size,
    project_to_target,
    run_margin_floor,
)

MIB = 1024**2


def probe(batch_size: int, *runs_mib: float, status: str = "ok") -> ProbeResult:
    runs = [int(r * MIB) for r in runs_mib]
    return ProbeResult(batch_size, status, peak_bytes=max(runs) if runs else None, peak_bytes_runs=runs)


# Shapes from the notes (§1), MiB per run.
LINEAR_CNN = [probe(8, 125, 110), probe(16, 156, 150), probe(32, 204, 204), probe(64, 289, 288)]
FLAT_MLP = [probe(4, 184, 180), probe(16, 183, 180), probe(32, 163, 150), probe(64, 163, 149)]
ERRATIC_LSTM = [probe(4, 63, 40), probe(8, 77, 50), probe(16, 43, 41), probe(32, 80, 50), probe(64, 128, 100)]


@pytest.mark.parametrize("probes", [LINEAR_CNN, FLAT_MLP, ERRATIC_LSTM], ids=["linear", "flat", "erratic"])
def test_upper_bound_covers_every_measured_run_and_every_smaller_probe(probes):
    model = PeakModel(probes)
    for measured in probes:
        predicted = model.predict_peak(measured.batch_size)
        assert predicted.source == "measured"
        assert predicted.peak_bytes >= max(measured.peak_bytes_runs) * (1 + MIN_RUN_MARGIN) - 1
        # A larger batch never promises less than any smaller measured batch needed.
        for bigger in (measured.batch_size + 1, measured.batch_size * 3):
            assert model.predict_peak(bigger).peak_bytes >= measured.peak_bytes


def test_flat_mlp_uses_the_max_of_measured_points_as_a_floor():
    model = PeakModel(FLAT_MLP)
    at_48 = model.predict_peak(48)
    assert at_48.source == "predicted"
    assert at_48.peak_bytes >= 184 * MIB   # not the 163 MiB a line through the last two points gives
    # The fall from 184 to 163 MiB must not become a negative slope: 4096 does not predict less than 64.
    assert model.predict_peak(4096).peak_bytes >= model.predict_peak(64).peak_bytes


def test_linear_cnn_extrapolation_follows_the_slope_of_the_largest_probes():
    model = PeakModel(LINEAR_CNN)
    slope_mib = (289 - 204) / 32
    at_128 = model.predict_peak(128)
    line_value = 289 + slope_mib * 64
    assert at_128.peak_bytes >= line_value * MIB
    assert at_128.peak_bytes <= line_value * MIB * 1.25   # a bound, not a wild overshoot
    assert at_128.margin_fraction > model.predict_peak(64).margin_fraction
    assert "extrapolated" in at_128.method


def test_erratic_lstm_interpolation_stays_on_the_upper_envelope():
    model = PeakModel(ERRATIC_LSTM)
    # Batch 16 measured 43 MiB but batch 8 needed 77: anything between 8 and 32 is bounded by >= 77.
    for batch_size in (10, 12, 20, 24):
        assert model.predict_peak(batch_size).peak_bytes >= 77 * MIB
    # the spread one process's steps showed is the margin beside that batch (and between it and its neighbours)
    assert model.predict_peak(4).margin_fraction >= (63 - 40) / 63 - 1e-3
    assert model.predict_peak(6).margin_fraction >= (63 - 40) / 63 - 1e-3
    # margins that differ from batch to batch (37, 35, 5, 38, 22 %) still make a bound that never falls
    bounds = [model.predict_peak(size).peak_bytes for size in range(1, 300)]
    assert all(later >= earlier for earlier, later in zip(bounds, bounds[1:]))


def test_min_bytes_per_sample_keeps_a_flat_curve_from_promising_huge_batches():
    flat = PeakModel(FLAT_MLP)
    with_floor = PeakModel(FLAT_MLP, min_bytes_per_sample=100_000)
    assert with_floor.predict_peak(8192).peak_bytes > flat.predict_peak(8192).peak_bytes
    assert with_floor.predict_peak(8192).peak_bytes >= 184 * MIB + 100_000 * (8192 - 64)


def test_graph_estimates_set_a_slope_floor():
    graph = {32: 150 * MIB, 64: 150 * MIB + 64 * 200_000}
    model = PeakModel(FLAT_MLP, graph_estimates=graph)
    assert model.slope_bytes_per_sample >= 200_000 * 32 / 32 - 1


@pytest.mark.parametrize("probes", [LINEAR_CNN, FLAT_MLP, ERRATIC_LSTM], ids=["linear", "flat", "erratic"])
def test_max_batch_is_monotone_in_budget_and_fits(probes):
    model = PeakModel(probes, min_bytes_per_sample=50_000)
    previous = 0
    for budget_mib in (50, 100, 150, 200, 300, 500, 1000, 4000, 16000):
        budget = budget_mib * MIB
        best = model.max_batch_size(budget)
        if best is None:
            assert model.predict_peak(1).peak_bytes > budget
            continue
        assert best >= previous
        previous = best
        assert model.predict_peak(best).peak_bytes <= budget
        assert model.predict_peak(best + 1).peak_bytes > budget
        recommended = model.recommended_batch_size(best, budget)
        if recommended is not None:
            assert recommended <= best
            assert recommended in (1, 2, 4) or recommended % 8 == 0
            assert model.predict_peak(recommended).peak_bytes <= 0.9 * budget
            if recommended >= 8:   # the largest friendly value: the next multiple of 8 is out of bounds
                bigger = recommended + 8
                assert bigger > best or model.predict_peak(bigger).peak_bytes > 0.9 * budget


def test_curve_marks_measured_and_predicted_points():
    model = PeakModel(LINEAR_CNN)
    rows = model.curve([24, 48, 128])
    sources = {row["batch_size"]: row["source"] for row in rows}
    assert sources == {8: "measured", 16: "measured", 24: "predicted", 32: "measured", 48: "predicted",
                       64: "measured", 128: "predicted"}
    peaks = [row["peak_bytes"] for row in rows]
    assert peaks == sorted(peaks)


def test_oom_probe_caps_the_batch_under_that_limit():
    probes = LINEAR_CNN + [probe(256, status="oom")]
    model = PeakModel(probes, memory_limit_bytes=600 * MIB)
    assert model.predict_peak(256).peak_bytes > 600 * MIB
    assert model.max_batch_size(600 * MIB) < 256


def test_no_successful_probe_is_an_error():
    with pytest.raises(ValueError):
        PeakModel([probe(8, status="oom")])


def test_probe_plan_starts_at_planned_batch_and_halves():
    assert next_probe_batch_sizes(64) == [16, 32, 64]
    assert next_probe_batch_sizes(1) == [1]


def test_probe_plan_adds_double_the_planned_batch_and_the_predicted_max():
    first = [probe(16, 156), probe(32, 204), probe(64, 289)]
    plan = next_probe_batch_sizes(64, first, local_usable_bytes=20 * 1024 * MIB,
                                  target_usable_bytes=1024 * MIB)
    assert 128 in plan
    predicted_max = PeakModel(first).max_batch_size(1024 * MIB)
    assert any(abs(size - predicted_max) <= 8 for size in plan)
    # Nothing new is worth probing when the local machine cannot hold 2B and no target is given.
    assert next_probe_batch_sizes(64, first, local_usable_bytes=300 * MIB) == []


def test_probe_plan_after_all_ooms_goes_smaller():
    assert next_probe_batch_sizes(64, [probe(16, status="oom"), probe(32, status="oom")]) == [4]


def test_projection_to_a_gpu_states_xla_and_allocator():
    prediction = PeakModel(LINEAR_CNN).predict_peak(64)
    t4 = get_target("t4")
    plain = project_to_target(prediction, t4, "CPU")
    assert plain.peak_bytes == prediction.peak_bytes
    assert any("XLA" in caveat for caveat in plain.caveats)
    assert any("BFC" in adjustment for adjustment in plain.adjustments)
    with_xla = project_to_target(prediction, t4, "CPU", xla_total_bytes=600 * MIB)
    assert with_xla.peak_bytes > 600 * MIB and with_xla.peak_bytes > prediction.peak_bytes
    no_jit = project_to_target(prediction, t4, "CPU", jit_compile=False)
    assert not any("XLA" in caveat for caveat in no_jit.caveats)


def test_per_replica_batch():
    assert per_replica_batch_size(256, 8) == 32
    assert per_replica_batch_size(100, 8) == 13
    with pytest.raises(ValueError):
        per_replica_batch_size(64, 0)


def test_a_statically_assigned_step_without_spread_gets_the_small_floor_and_nothing_else_does():
    """XLA (jit_compile=True, the JAX backend) assigns buffers statically: the same peak in every process."""
    steady = [probe(1, 40, 40, 40), probe(32, 400, 400, 400)]
    assert run_margin_floor(True, steady) == STATIC_BUFFERS_RUN_MARGIN
    assert run_margin_floor(False, steady) == MIN_RUN_MARGIN            # op scheduling varies between processes
    assert run_margin_floor(True, [probe(1, 40, 40), probe(32, 400, 380)]) == MIN_RUN_MARGIN  # it did vary here
    model = PeakModel(steady, min_run_margin=run_margin_floor(True, steady))
    assert model.predict_peak(16).peak_bytes == pytest.approx((40 + (400 - 40) * 15 / 31) * MIB * 1.02, rel=1e-6)


def test_once_a_step_ran_in_several_processes_the_margin_is_their_spread_over_a_small_floor():
    one_process = [probe(8, 100, 98), probe(32, 400, 396)]
    two_processes = [probe(8, 100, 98),
                     ProbeResult(32, "ok", peak_bytes=int(420 * MIB), peak_bytes_runs=[int(400 * MIB), int(420 * MIB)],
                                 processes=2, process_peaks=[int(400 * MIB), int(420 * MIB)])]
    assert run_margin_floor(False, one_process) == MIN_RUN_MARGIN         # nothing seen between processes
    assert run_margin_floor(False, two_processes) == MEASURED_SPREAD_RUN_MARGIN
    assert run_margin_floor(False, two_processes, recurrent=True) == MIN_RUN_MARGIN  # bimodal: two may agree
    model = PeakModel(two_processes, min_run_margin=run_margin_floor(False, two_processes))
    spread = (420 - 400) / 420
    assert model.run_margin == pytest.approx(spread)                        # the measured spread, over the floor
    assert model.predict_peak(32).peak_bytes == pytest.approx(420 * MIB * (1 + spread), rel=1e-6)
    # A repeat that failed adds a process but no peak: no spread was measured.
    failed_repeat = [probe(8, 100, 98), ProbeResult(32, "ok", peak_bytes=int(400 * MIB),
                                                    peak_bytes_runs=[int(400 * MIB)], processes=2)]
    assert run_margin_floor(False, failed_repeat) == MIN_RUN_MARGIN


def test_the_margin_covers_how_far_the_processes_peaks_moved_not_the_steps_below_a_peak():
    # BERT at batch 16 (MiB): steps 364, 373, 367 in one process, 393, 388 in the next: 7.4 % between steps,
    # 5.1 % between the two processes' peaks, which is what a third process's peak may move by.
    steps = [363.7, 373.0, 366.7, 393.0, 387.9]
    bert_16 = ProbeResult(16, "ok", peak_bytes=int(393.0 * MIB), peak_bytes_runs=[int(s * MIB) for s in steps],
                          processes=2, process_peaks=[int(373.0 * MIB), int(393.0 * MIB)])
    points = [probe(1, 85.6, 85.5, 84.2), probe(8, 218.1, 217.2, 218.1), bert_16]
    model = PeakModel(points, min_run_margin=run_margin_floor(False, points))
    assert bert_16.spread == pytest.approx((393.0 - 363.7) / 393.0, abs=1e-3)
    assert model.run_margin == pytest.approx((393.0 - 373.0) / 393.0, abs=1e-3)
    # one process: its steps are all there is to go by, beside that batch
    single = [probe(1, 85.6, 85.5, 84.2), probe(16, 363.7, 373.0, 393.0)]
    at_16 = PeakModel(single, min_run_margin=0.0).predict_peak(16)
    assert at_16.margin_fraction == pytest.approx((393.0 - 363.7) / 393.0, abs=1e-3)


def test_a_spread_between_one_processs_steps_holds_beside_that_batch_the_spread_between_processes_everywhere():
    # The VAE (MiB): batch 32's three steps in one process 13.5 to 16.1 (16 %); batch 128 in two processes 48.7
    # and 49.9; model.fit under the budget at 538 (one process) and 639 (two, 201.4 both). Truth at 592: 199.9.
    vae = [probe(1, 2.3, 2.3, 2.3), probe(32, 13.5, 13.7, 16.1), probe(64, 27.2, 26.4, 27.3),
           ProbeResult(128, "ok", peak_bytes=int(49.9 * MIB), peak_bytes_runs=[int(v * MIB) for v in
                                                                                (48.7, 48.7, 48.3, 48.8, 49.9)],
                       processes=2, process_peaks=[int(48.7 * MIB), int(49.9 * MIB)]),
           probe(538, 193.3), ProbeResult(639, "ok", peak_bytes=int(201.4 * MIB), peak_bytes_runs=[int(201.4 * MIB)] * 2,
                                          processes=2, process_peaks=[int(201.4 * MIB)] * 2)]
    model = PeakModel(vae, min_run_margin=run_margin_floor(False, vae))
    assert model.run_margin == MEASURED_SPREAD_RUN_MARGIN             # between processes: 2.4 % and 0 %
    assert model.predict_peak(32).margin_fraction == pytest.approx((16.1 - 13.5) / 16.1, abs=1e-3)
    assert model.predict_peak(48).margin_fraction >= (16.1 - 13.5) / 16.1 - 1e-3   # beside it, too
    at_592 = model.predict_peak(592)
    assert 199.9 * MIB <= at_592.peak_bytes <= 199.9 * MIB * 1.05          # was +15 % with 16 % everywhere
    # the bound still never falls as the batch grows, across the change of margin
    sizes = range(1, 700)
    bounds = [model.predict_peak(size).peak_bytes for size in sizes]
    assert all(later >= earlier for earlier, later in zip(bounds, bounds[1:]))


def test_a_curve_whose_probes_lost_its_growth_in_their_noise_grows_at_least_by_its_largest_layer_output():
    from preflight.analysis.document import curve_model
    from preflight.analysis.predict import MAX_SEARCH_BATCH

    # The recommender (RMSprop over a 200,000 x 64 table) at 1, 256, 512 and 1,024, MiB: the fixed optimizer cost
    # dwarfs the growth, and batch 256 happened to peak highest: a flat envelope.
    probes = [probe(1, 293.5, 293.3, 281.4), probe(256, 306.7, 294.2, 306.7), probe(512, 289.2, 283.4, 289.0),
              probe(1024, 283.0, 298.2, 305.9)]
    budget = 1024 * MIB
    flat = curve_model(probes, input_bytes_per_sample=12)
    assert flat.max_batch_size(budget) == MAX_SEARCH_BATCH       # what the report said before
    largest_output = 1024   # Dense(256) in float32, bytes per sample
    bounded = curve_model(probes, input_bytes_per_sample=12, largest_output_bytes_per_sample=largest_output)
    best = bounded.max_batch_size(budget)
    # at that batch the one output tensor plus what batch 1,024 measured must still fit the budget
    assert best * largest_output + 305.9 * MIB <= budget
    assert bounded.predict_peak(best + 1).peak_bytes > budget
    # where the probes show growth of their own, the bound changes nothing
    growing = [probe(8, 100, 98), probe(16, 160, 158), probe(32, 280, 276)]
    assert (curve_model(growing, largest_output_bytes_per_sample=largest_output).max_batch_size(budget)
            == curve_model(growing).max_batch_size(budget))


def test_between_far_points_a_curve_that_bends_down_is_bounded_by_the_segment_below_continued():
    """The recommender: optimizer slots over a 200,000-row table grow fast at first, then saturate; the chord
    from batch 1,024 to a point 100 times larger passes far under the curve."""
    def concave(b):  # MiB: steep, then flattening
        return 300 + 0.02 * b if b <= 20_000 else 700 + 0.004 * (b - 20_000)

    probes = [probe(b, concave(b)) for b in (256, 512, 1024, 99_000)]
    model = PeakModel(probes, min_run_margin=0.0)
    for size in (4096, 32_768, 65_536):
        assert model.predict_peak(size).peak_bytes >= concave(size) * MIB * (1 - 1e-6)
        assert model.predict_peak(size).peak_bytes <= concave(99_000) * MIB   # never over the next point
    assert "bend down" in model.predict_peak(32_768).method
    # a straight or convex curve keeps its chord
    linear = PeakModel([probe(b, 10 + b) for b in (1, 8, 16, 32)], min_run_margin=0.0)
    assert linear.predict_peak(24).peak_bytes == pytest.approx(34 * MIB, rel=1e-6)
    # so does a curve that bends between near points (MobileNetV2 under 512 MiB: 24 peaks at 331 MiB)
    near = PeakModel([probe(b, mib) for b, mib in ((1, 51), (8, 136), (16, 250), (32, 416))], min_run_margin=0.0)
    assert near.predict_peak(24).peak_bytes == pytest.approx(333 * MIB, rel=1e-6)


def test_a_size_the_search_ran_squeezed_against_the_limit_is_a_lower_bound_and_its_spread_is_in_the_margin():
    from preflight.analysis.document import curve_model, split_search_runs

    # The timeseries Transformer under 1 GiB (MiB): probes at 1 and 16 (one process each), model.fit under the
    # budget at 8 in two processes, and at 12 in three (squeezed: over 90 % of the limit); 13 ran once at 1,010
    # before a process ran out of memory. Unlimited, three other processes at 12 peaked up to 986.
    limit = 1024 * MIB
    confirmation = {"limit_bytes": limit, "runs": {"8": [int(591.7 * MIB)] * 2,
                                                   "12": [int(981.1 * MIB), int(943.5 * MIB), int(931.5 * MIB)]},
                    "near_limit": {"13": int(1010.0 * MIB)}}
    confirmations = {"largest": confirmation, "recommended": None}
    fresh, squeezed = split_search_runs(confirmations)
    assert [p.batch_size for p in fresh] == [8] and [p.batch_size for p in squeezed] == [12, 13]
    probes = [probe(1, 78.1, 77.2, 76.3), probe(16, 1224.3, 1178.4, 1208.7)]
    without = curve_model(probes, fresh)
    model = curve_model(probes, fresh, squeezed)
    at_12, at_13 = int(981.1 * MIB), int(1010.0 * MIB)
    assert without.predict_peak(12).peak_bytes < at_12                    # under what was measured there
    assert model.predict_peak(12).peak_bytes >= at_12
    assert model.predict_peak(13).peak_bytes >= at_13                     # a refused size's peak bounds it too
    assert model.run_margin >= (981.1 - 931.5) / 981.1 - 1e-3             # the squeezed processes' spread
    # a lower bound never makes the curve fall, and does not move it where it is already higher
    bounds = [model.predict_peak(size).peak_bytes for size in range(1, 40)]
    assert all(later >= earlier for earlier, later in zip(bounds, bounds[1:]))
    assert model.predict_peak(16).peak_bytes == PeakModel(
        [*probes, *fresh], min_run_margin=model.run_margin).predict_peak(16).peak_bytes


def test_a_lower_bound_carries_the_run_margin_a_measured_point_would():
    from preflight.analysis.document import curve_model, split_search_runs

    # The ninth zoo draw's timeseries Transformer under 1 GiB (MiB): the search's three model.fit processes at
    # 12 read 932.6, 943.0 and 942.9 (squeezed: over 90 % of the limit), all in the step's low mode; three
    # unlimited processes at 12 then read 986.0, 931.7 and 931.5. The chord from 8 to 16 says 919.
    limit = 1024 * MIB
    confirmation = {"limit_bytes": limit, "runs": {"8": [int(598.8 * MIB), int(590.7 * MIB)],
                                                   "12": [int(932.6 * MIB), int(943.0 * MIB), int(942.9 * MIB)]}}
    fresh, squeezed = split_search_runs({"largest": confirmation, "recommended": None})
    probes = [probe(1, 75.8, 75.1, 74.8), probe(16, 1239.7, 1192.5, 1220.0)]
    model = curve_model(probes, fresh, squeezed)
    at_12 = model.predict_peak(12)
    assert at_12.peak_bytes >= int(943.0 * MIB * (1 + model.run_margin))
    assert at_12.peak_bytes >= 0.98 * 986.0 * MIB                       # not below the truth by more than 2 %
    assert "reached against a limit" in at_12.method


def test_a_recurrent_steps_processes_differ_by_bytes_that_hold_at_small_batches():
    from dataclasses import replace

    from preflight.analysis.document import curve_model

    # The eleventh zoo draw's bidirectional LSTM (MiB): batches 1 and 8 read 58.2 and 59.3 in the first process,
    # 32 read 102.7 there and 115.0 in a second; model.fit at 4 then read 61.4, 70.1 and 59.7 in three fresh
    # processes (the step's upper mode in one). Its 10.6 % spread at 32, as a fraction at 4, said 64.9.
    at_32 = replace(probe(32, 102.7, 102.7, 102.6, 115.0, 111.2), process_peaks=[int(102.7 * MIB), int(115.0 * MIB)])
    probes = [probe(1, 58.2, 58.2, 58.2), probe(8, 58.5, 59.3, 58.1), probe(16, 73.5, 73.6, 73.4), at_32]
    at_4 = curve_model(probes, recurrent=True).predict_peak(4)
    assert at_4.peak_bytes >= 70.1 * MIB and "recurrent" in at_4.method
    assert curve_model(probes, recurrent=False).predict_peak(4).peak_bytes < 70.1 * MIB  # a fraction alone: short
    # Where the fraction gives more bytes than the gap, the fraction stands.
    assert "recurrent" not in curve_model(probes, recurrent=True).predict_peak(64).method


def test_a_squeezed_size_bounds_the_sizes_just_below_it():
    from dataclasses import replace

    from preflight.analysis.document import curve_model, split_search_runs

    # The eleventh zoo draw's recommender under 1 GiB (bytes as reported): the search ran 24,232 and 96,928 well
    # under the limit and 109,044 squeezed near it in three processes (946 MiB each). The curve said 995 MiB at
    # 109,043, its own largest batch, where three unlimited processes read 1023.4, 1023.0 and 947.5 MiB.
    confirmation = {"limit_bytes": 1024 * MIB, "runs": {"24232": [432887552], "96928": [862314752, 760480256],
                                                       "109044": [991927040, 991570944, 991949312]}}
    fresh, squeezed = split_search_runs({"largest": confirmation, "recommended": None})
    at_1024 = replace(probe(1024, 293.8, 298.5, 306.3), process_peaks=[int(298.5 * MIB), int(306.3 * MIB)])
    probes = [probe(1, 290.2, 290.4, 290.4), probe(256, 291.6, 291.7), probe(512, 293.8, 295.9), at_1024]
    model = curve_model(probes, fresh, squeezed)
    just_below = model.predict_peak(109_043)
    assert just_below.peak_bytes >= 0.98 * 1023.4 * MIB and "below it" in just_below.method
    # More than 2 % below, the chord from the measured point below (96,928) holds the curve, not the bound less
    # the curve's growth per sample.
    assert "chord" in model.predict_peak(106_000).method
    assert "below it" in model.predict_peak(107_000).method  # 1.9 % below


def test_a_squeezed_size_bounds_a_size_two_percent_below_it():
    from preflight.analysis.document import curve_model_of_report

    # The twelfth zoo draw's recommender under 1 GiB, its report's own measurements (bytes as reported): the search
    # ran 10,109 and 40,436 well under the limit, 109,246 and 122,902 squeezed near it in three processes each; the
    # recommended batch, 93,792, in two. The curve said 913 MiB at 108,152 (1.001 % under 109,246), where three
    # unlimited model.fit processes read 948, 1023 and 974 MiB.
    def runs(size, *peaks):
        return {"batch_size": size, "status": "ok", "peak_bytes": max(peaks), "peak_bytes_runs": list(peaks)}

    report = {"model": {"input_bytes_per_sample": 12}, "device": {"memory_limit_bytes": 1536 * MIB},
              "layers": [{"type": "Embedding", "activation_bytes_per_sample": 256},
                         {"type": "Dense", "activation_bytes_per_sample": 1024}],
              "probes": [runs(1, 304605440, 304610816), runs(256, 306066688, 305800192),
                         runs(512, 303463424, 304193536, 321021184),
                         {**runs(1024, 320777984, 310565888, 320107520, 320794368, 312721408), "processes": 2,
                          "process_peaks": [320777984, 320794368]}],
              "max_batch_confirmation": {"limit_bytes": 1024 * MIB, "near_limit": {"129730": 1063554816,
                                                                                   "129048": 1014660608},
                                         "runs": {"10109": [356923136], "40436": [549927424],
                                                  "109246": [1018205440, 1019858688, 1018205440],
                                                  "122902": [985236736, 1016622848, 1016180992]}},
              "confirmation": {"limit_bytes": 1024 * MIB, "runs": {"93792": [808425728, 827212032]}}}
    model = curve_model_of_report(report)
    just_below = model.predict_peak(108_152)
    assert just_below.peak_bytes >= 0.98 * 1072973056 and "below it" in just_below.method


def test_a_replayed_report_counts_the_largest_batchs_runs_once_when_they_confirmed_the_recommendation():
    from preflight.analysis.document import curve_model, curve_model_of_report, split_search_runs

    # The recommender's rerun of the twelfth draw (bytes as reported): the largest batch's runs confirmed the
    # recommendation, so the report's "confirmation" is the same record. Its 18,671 ran in one process; the
    # report was made from that one process, and so must its replay be.
    largest = {"limit_bytes": 1024 * MIB, "status": "ok", "batch_size": 97171,
               "runs": {"18671": [404058368], "79730": [736066816, 746501888],
                        "97171": [858634752, 820829440, 837182720, 834381824]}}
    probes = [{"batch_size": 1, "status": "ok", "peak_bytes": 304664832, "peak_bytes_runs": [304664832]},
              {"batch_size": 1024, "status": "ok", "peak_bytes": 321603072, "processes": 2,
               "peak_bytes_runs": [321603072, 320691456], "process_peaks": [321603072, 320691456]}]
    report = {"model": {}, "device": {}, "layers": [], "probes": probes,
              "max_batch_confirmation": largest, "confirmation": dict(largest)}
    replayed = curve_model_of_report(report)
    as_made = curve_model([ProbeResult.from_dict(p) for p in probes],
                          *split_search_runs({"largest": largest, "recommended": None}))
    point = next(p for p in replayed.points if p.batch_size == 18671)
    assert not point.across_processes                       # one process, not two that agreed
    assert [replayed.predict_peak(b).peak_bytes for b in (18671, 32768, 90000)] == [
        as_made.predict_peak(b).peak_bytes for b in (18671, 32768, 90000)]


def test_below_a_squeezed_size_the_curve_holds_the_chord_from_the_measured_point_below_without_a_cliff():
    from preflight.analysis.document import curve_model_of_report
    from preflight.analysis.predict import LOWER_BOUND_REACH

    # The thirteenth zoo draw's recommender under 1 GiB, its report's own measurements (bytes as reported): the
    # search ran 21,571 and 86,284 well under the limit, 112,204 squeezed near it in three processes; the
    # recommended batch, 109,952, squeezed in three. The curve said 835 MiB at 107,752 (its own recommended
    # batch, 2.0 % under 109,952, where the bound's reach ended), 983 one sample above; three unlimited
    # model.fit processes read 948, 949 and 974 MiB at 107,752.
    def runs(size, *peaks, **extra):
        return {"batch_size": size, "status": "ok", "peak_bytes": max(peaks), "peak_bytes_runs": list(peaks), **extra}

    report = {"model": {"input_bytes_per_sample": 12}, "device": {"memory_limit_bytes": 1536 * MIB},
              "layers": [{"type": "Embedding", "activation_bytes_per_sample": 256},
                         {"type": "Dense", "activation_bytes_per_sample": 1024}],
              "probes": [runs(1, 291800576, 304669696), runs(256, 309162496, 305833472),
                         runs(512, 300722432, 293023744, 293229056),
                         runs(1024, 321599744, 321611008, 321188608, 312888064, 320453376, processes=2,
                              process_peaks=[321611008, 320453376])],
              "max_batch_confirmation": {"limit_bytes": 1024 * MIB, "near_limit": {"125164": 1016092672,
                                                                                   "118684": 1063830528},
                                         "runs": {"21571": [414969344], "86284": [733040640],
                                                  "112204": [989328128, 990514432, 990478848]}},
              "confirmation": {"limit_bytes": 1024 * MIB, "runs": {"109952": [991450368, 996176896, 991100416]}}}
    model = curve_model_of_report(report)
    at_107752 = model.predict_peak(107_752)
    assert at_107752.peak_bytes >= 0.98 * 1021760000 and "chord" in at_107752.method
    edge = int(109_952 * (1 - LOWER_BOUND_REACH))
    below, above = model.predict_peak(edge - 1).peak_bytes, model.predict_peak(edge + 1).peak_bytes
    assert above - below <= 0.02 * above                     # no cliff where the reach ends (it was 15 %)
    # Below the measured point under the squeezed sizes the curve is its points' own.
    assert "against a limit" not in model.predict_peak(80_000).method
    bounds = [model.predict_peak(size).peak_bytes for size in range(80_000, 112_205, 97)]
    assert all(later >= earlier for earlier, later in zip(bounds, bounds[1:]))
