"""benchmarks.replay_zoo rebuilds a report's curve from its stored measurements: it must rebuild exactly what the
report holds, or a replayed change to the prediction would be judged against the wrong baseline."""
from benchmarks.replay_zoo import rebuilt_curve, replay
from preflight.analysis.assemble import CheckFacts, assemble_check
from preflight.analysis.document import RunSettings, confirmation_record
from preflight.common.measurements import DeviceInfo, ProbeOutcome, ProbeResult

MIB = 2**20


def _report() -> dict:
    def ok(size: int, *peaks_mib: int, processes: bool = False) -> ProbeResult:
        runs = [p * MIB for p in peaks_mib]
        return ProbeResult(size, "ok", peak_bytes=max(runs), peak_bytes_runs=runs, step_seconds=0.01,
                           processes=len(runs) if processes else 1, process_peaks=runs if processes else [])

    outcome = ProbeOutcome(device=DeviceInfo("CPU", "cpu", "BFC", memory_limit_bytes=2048 * MIB),
                           probes=[ok(1, 40, 38), ok(8, 110), ok(16, 180, 171), ok(32, 330, 340, processes=True)])
    largest = {**confirmation_record(88, "ok", 950 * MIB, 1024 * MIB, [100], process_peaks=[940 * MIB, 950 * MIB]),
               "method": "model.fit, 3 steps",
               "runs": {"64": [700 * MIB], "80": [820 * MIB, 830 * MIB], "88": [940 * MIB, 950 * MIB]}}
    facts = CheckFacts(outcome, RunSettings(batch_size=32, budget_bytes=1024 * MIB), "by hand")
    facts.confirmations = {"largest": largest, "recommended": None}
    return assemble_check(facts)


def test_the_replay_rebuilds_the_reports_own_curve():
    report = _report()
    stored = {row["batch_size"]: row["peak_bytes"] for row in report["curve"]}
    assert len(stored) >= 6 and rebuilt_curve(report) == stored


def test_a_replayed_point_is_compared_with_the_truth_the_zoo_measured():
    report = _report()
    at_4 = next(row["peak_bytes"] for row in report["curve"] if row["batch_size"] == 4)
    truth = int(at_4 / 1.05)
    row = {"case": "by hand", "report": report,
           "predictions": [{"batch_size": 4, "truth_bytes": truth, "error": 0.05}]}
    points, curve_differs = replay([row])
    assert curve_differs == [] and points[0]["error"] == round(at_4 / truth - 1, 4)
    # a curve that no longer matches its report is named, not silently replayed
    report["curve"][0]["peak_bytes"] += 1
    assert replay([row])[1] == ["by hand"]


def test_the_largest_batch_check_runs_the_smallest_batch_the_answer_is_under_ninety_percent_of():
    from benchmarks.external_zoo import past_ninety_percent, rescore

    for largest in (1, 12, 83, 99_859):
        past = past_ninety_percent(largest)
        assert largest / past < 0.9 <= largest / (past - 1)
    # a stored check that failed at a smaller batch stands (a larger one needs more); none is measured again
    row = {"case": "benchmarks/external/recommender.py:1GiB", "preflight_max": 99_859,
           "past_10_percent": {"batch_size": 109_845, "fits": False, "statuses": ["oom"], "peaks": []}}
    rescore(row, processes=3)
    assert row["past_10_percent"]["batch_size"] == 109_845 and "past_checked_before" not in row


def test_the_draws_history_lists_every_stored_draw_in_the_order_run_with_its_goals(tmp_path):
    import json

    from benchmarks.external_zoo import history

    def draw(errors: list[float], fits: bool) -> dict:
        row = {"case": "m.py:1GiB", "predictions": [{"batch_size": 8, "error": e} for e in errors],
               "at_max": {"fits": fits}, "past_10_percent": {"fits": False},
               "timing": {"verdict_seconds": 30.0}, "base_seconds": 10.0}
        return {"rows": [row, {"case": "broken.py:1GiB", "error": "ValueError: x", "predictions": []}]}

    (tmp_path / "external_zoo_fourth.json").write_text(json.dumps(draw([0.04, -0.05], True)))
    (tmp_path / "external_zoo_third.json").write_text(json.dumps(draw([0.10, 0.02, 0.03], False)))
    (tmp_path / "external_zoo_third_rerun.json").write_text(json.dumps(draw([0.01], True)))
    (tmp_path / "external_zoo_fits.json").write_text("{}")   # the fit cache is not a draw
    lines = history(tmp_path).splitlines()[2:]
    assert [line.split(" | ")[0] for line in lines] == ["| third", "| third (rerun)", "| fourth"]
    # third: median of +10/+2/+3 %, worst +10 %, none below -2 %, its largest batch did not run; a failed row
    # (broken.py) is not a model measured
    assert lines[0] == "| third | 1 | 3 | +3.00% | +10.0% | +2.0% | 0 | 0 | 0 | 3.0x |"
    assert lines[2] == "| fourth | 1 | 2 | -0.50% | +4.0% | -5.0% | 1 | 1 | 1 | 3.0x |"
    # without one model: the fourth draw's goals from the other model alone; draws of that model alone left out
    fourth = json.loads((tmp_path / "external_zoo_fourth.json").read_text())
    fourth["rows"].append({**fourth["rows"][0], "case": "other.py:1GiB",
                           "predictions": [{"batch_size": 8, "error": 0.03}]})
    (tmp_path / "external_zoo_fourth.json").write_text(json.dumps(fourth))
    assert history(tmp_path).splitlines()[-1].startswith("| fourth | 2 | 3 |")
    assert history(tmp_path, exclude=("m.py",)).splitlines()[2:] == \
        ["| fourth | 1 | 1 | +3.00% | +3.0% | +3.0% | 0 | 1 | 1 | 3.0x |"]


def test_the_largest_tensor_margin_is_the_largest_layer_output_at_most_what_bfc_leaves_unsplit():
    from benchmarks.replay_zoo import BFC_UNSPLIT_BYTES, largest_tensor_bytes, replay

    report = _report()
    report["layers"] = [{"activation_bytes_per_sample": 1024}, {"activation_bytes_per_sample": 256},
                        {"activation_bytes_per_sample": None}]
    assert largest_tensor_bytes(report, 1000) == 1024 * 1000
    assert largest_tensor_bytes(report, 10**6) == BFC_UNSPLIT_BYTES == 128 * MIB
    at_4 = next(row["peak_bytes"] for row in report["curve"] if row["batch_size"] == 4)
    row = {"case": "by hand", "report": report, "predictions": [{"batch_size": 4, "truth_bytes": at_4, "error": 0.0}]}
    point = replay([row], largest_tensor_margin=True)[0][0]
    assert point["error"] == 0.0 and point["error_with_margin"] == round(4096 / at_4, 4)


def _entries(limit: int, results: dict[int, dict]) -> dict[str, dict]:
    return {f"m.py:abc:{size}:{limit}:3:tf2.21.0": result for size, result in results.items()}


def test_the_truths_spread_is_read_from_the_unlimited_fit_runs_of_three_processes_only():
    from benchmarks.external_zoo import TRUTH_LIMIT_BYTES, truth_spread

    entries = {**_entries(TRUTH_LIMIT_BYTES, {8: {"peaks": [100, 110, 120]}, 16: {"peaks": [200, 200, 200]},
                                              64: {"peaks": [900], "statuses": ["ok", "oom"]}}),
               **_entries(1024 * MIB, {32: {"peaks": [100, 300, 300]}})}      # under the budget: not a truth
    rows = truth_spread(entries).splitlines()[2:]
    # spreads 20 % and 0 %: median 10 %, largest 20 %; the truth over the median process: 120/110 - 1 and 0
    assert rows == ["| m.py | 2 | 10.0% | 20.0% | 4.5% | 9.1% |"]


def test_the_oracle_predicts_each_truth_from_its_neighbours_truths_and_counts_those_within_the_goals():
    from benchmarks.external_zoo import TRUTH_LIMIT_BYTES, oracle_interpolation

    # a straight line whose processes agree: the chord is the truth, so the error is the margin itself
    straight = _entries(TRUTH_LIMIT_BYTES, {size: {"peaks": [10 * size] * 3} for size in (8, 16, 24, 32)})
    assert oracle_interpolation(straight, margins=(0.04, 0.16)).splitlines()[2] == \
        "| m.py | 2 | 100% (+4.0% to +4.0%) | 0% (+16.0% to +16.0%) |"
    # the middle size's largest process (128) lies under its neighbours' line (160 there): +25 %, all pairs
    dip = _entries(TRUTH_LIMIT_BYTES, {8: {"peaks": [80] * 3}, 16: {"peaks": [128, 120, 100]}, 24: {"peaks": [240] * 3}})
    assert oracle_interpolation(dip, margins=(0.0,)).splitlines()[2] == "| m.py | 1 | 0% (+25.0% to +25.0%) |"
    # two of three processes per neighbour: the chord from 80 to (200 or 240) against 100: +40 % or +60 %
    mixed = _entries(TRUTH_LIMIT_BYTES, {8: {"peaks": [80] * 3}, 16: {"peaks": [100] * 3},
                                         24: {"peaks": [200, 200, 240]}})
    assert oracle_interpolation(mixed, margins=(0.0,)).splitlines()[2] == "| m.py | 1 | 0% (+40.0% to +60.0%) |"


def test_the_fit_scatter_names_the_sizes_under_the_largest_that_fits_which_do_not():
    from benchmarks.external_zoo import TRUTH_LIMIT_BYTES, fit_scatter

    three, one = {"peaks": [1, 2, 3]}, {"peaks": [1]}
    entries = {**_entries(1024 * MIB, {10: {"fits": True, **three}, 12: {"fits": False, **three},   # over the line
                                       14: {"fits": True, **three}, 16: {"fits": False, **one},     # then OOM
                                       18: {"fits": False, **three}}),
               **_entries(TRUTH_LIMIT_BYTES, {99: {"fits": False}})}   # unlimited: a prediction's truth, not a fit
    # under the 96 % line 14 is the largest and 12 under it is not; ran in all three: 18, with 16 under it
    assert fit_scatter(entries).splitlines()[2:] == ["| m.py | 1024 MiB | 5 | 14 | 12 | 18 | 16 |"]


def test_the_replay_per_model_counts_the_points_outside_the_goals():
    from benchmarks.replay_zoo import by_model

    points = [{"case": "benchmarks/external/m.py:1GiB", "error": e} for e in (-0.03, 0.05, 0.16, 0.10)]
    points.append({"case": "benchmarks/external/other.py:1GiB", "error": 0.02})
    rows = by_model(points).splitlines()[2:]
    # median of -3/+5/+10/+16 %: +7.5 %; one below -2 %, one over +15 %; no largest-tensor margin replayed
    assert rows == ["| m.py:1GiB | 4 | +7.5% | -3.0% | +16.0% | 1 | 1 | n/a | n/a |",
                    "| other.py:1GiB | 1 | +2.0% | +2.0% | +2.0% | 0 | 0 | n/a | n/a |"]
