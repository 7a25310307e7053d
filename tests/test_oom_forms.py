"""Every form of out-of-memory is a memory verdict, decided from the allocator and the process rather than the
exception's class or text (issue 21); and no probe inherits the state of a step that failed.

The forms: TF's ResourceExhaustedError (tests/test_edges.py, by type), the node-only "Graph execution error"
that a failed temporary allocation raises (here, after a real out-of-memory under a 96 MiB limit), MemoryError
raised in a step (here, in a real dry run), and SIGKILL from the kernel's OOM killer
(tests/test_bad_inputs.py::test_child_killed_mid_probe_is_a_result_not_a_crash).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from preflight.cli import main

ROOT = Path(__file__).parent.parent


def test_a_node_only_error_after_a_real_out_of_memory_is_read_from_the_allocator(tmp_path):
    log = tmp_path / "child.log"
    env = {**os.environ, "TF_CPU_ALLOCATOR_USE_BFC": "true", "TF_CPU_BFC_MEM_LIMIT_IN_MB": "96",
           "PREFLIGHT_CHILD_LOG": str(log), "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "1",
           "TF_ENABLE_ONEDNN_OPTS": "0"}  # oneDNN's kernels may abort on an allocator failure; not the form tested
    with open(log, "wb") as stderr:
        done = subprocess.run([sys.executable, str(ROOT / "tests" / "oom_evidence_probe.py")], env=env,
                              stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=300)
    assert done.returncode == 0, log.read_text()[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["big_step"] == "oom"
    # The bare node error carries no type to go by: the allocator's peak and its own record tell.
    assert result["peak_fraction"] >= 0.9
    assert result["by_peak"].startswith("the allocator's peak reached")
    assert result["by_record"] == "the allocator recorded a failed allocation"
    # A failure at a low peak with no allocator record since the step began is the model's own error.
    assert result["not_memory"] == ""
    assert result["memory_error"] == "the backend's out-of-memory error"


def _run(tmp_path, monkeypatch, *extra: str) -> tuple[int, dict, list[tuple[int, int]]]:
    traces = tmp_path / "traces.txt"
    monkeypatch.setenv("PREFLIGHT_TEST_TRACES", str(traces))
    code = main(["tests/models/memory_error_step.py", "--budget", "1GiB", "--json", str(tmp_path / "r.json"),
                 "--html", "none", "--quiet", "--no-whatif", "--steps", "1", *extra])
    seen = [tuple(int(v) for v in line.split()) for line in traces.read_text().splitlines() if "None" not in line]
    return code, json.loads((tmp_path / "r.json").read_text()), seen


# "1": as a user's check runs, the verdict's children new interpreters; "all": forked, as the other tests run
@pytest.mark.parametrize("fork_server", ["1", "all"], ids=["fresh-interpreters", "forked"])
def test_memory_error_in_a_step_is_out_of_memory_and_the_next_batch_runs_in_a_fresh_process(tmp_path, monkeypatch,
                                                                                         fork_server):
    monkeypatch.setenv("PREFLIGHT_FORK_SERVER", fork_server)
    code, document, traces = _run(tmp_path, monkeypatch, "--max-batch-time", "120")  # the search finds <= 16
    probes = {p["batch_size"]: p for p in document["probes"]}
    assert probes[32]["status"] == "oom"
    assert "out of memory in the probe" in probes[32]["message"] and "scratch buffer" in probes[32]["message"]
    assert probes[16]["status"] == "ok" and probes[8]["status"] == "ok"
    pid_of: dict[int, int] = {}
    for pid, batch in traces:       # the process that first traced each batch: the probe child (later ones confirm)
        pid_of.setdefault(batch, pid)
    assert pid_of[16] != pid_of[32]          # after the failed step, a fresh process
    assert pid_of[8] == pid_of[16]           # steps that ran fine share one
    assert document["max_batch_size"] is not None and document["max_batch_size"] <= 16
    assert code == 1                          # the planned batch 32 does not fit


def test_a_failure_that_is_not_memory_after_an_out_of_memory_keeps_the_models_own_message(tmp_path, monkeypatch,
                                                                                         capsys):
    monkeypatch.setenv("PREFLIGHT_TEST_NOT_MEMORY_OVER_8", "1")
    monkeypatch.setenv("PREFLIGHT_TEST_TRACES", str(tmp_path / "traces.txt"))
    code = main(["tests/models/memory_error_step.py", "--budget", "1GiB", "--json", str(tmp_path / "r.json"),
                 "--html", "none", "--no-whatif", "--steps", "1"])
    err = capsys.readouterr().err
    assert code == 3
    assert "the layer's own bug at this batch size" in err and "at batch 16" in err
    assert "Traceback" not in err and not (tmp_path / "r.json").exists()


def test_without_a_measured_peak_the_what_ifs_are_not_said_to_be_out_of_reach():
    from preflight.analysis.assemble import CheckFacts
    from preflight.analysis.checks import CheckContext
    from preflight.analysis.report_checks import whatifs_skipped

    facts = CheckFacts(outcome=None, settings=None, model_name="m")  # no what-if measured, --whatif not given
    document = {"fits": False, "peak_bytes": None, "budget_bytes": 2**30, "findings": []}
    skipped = whatifs_skipped(CheckContext(document, None, facts))
    assert skipped.id == "whatifs-skipped"
    assert "twice the budget" not in skipped.message and "no training step finished" in skipped.message
    document = {"fits": False, "peak_bytes": 3 * 2**30, "budget_bytes": 2**30, "findings": []}
    assert "twice the budget" in whatifs_skipped(CheckContext(document, None, facts)).message


def _attempts_against(true_max: int):
    """An attempt function whose batch runs when it is at most `true_max`, and the sizes it was asked."""
    asked: list[int] = []

    def attempt(size: int) -> str:
        asked.append(size)
        return "ok" if size <= true_max else "oom"
    return attempt, asked


def test_the_largest_batch_search_lands_within_10_percent_below_the_truth_from_either_side():
    from preflight.whatif.recommend import MAX_BATCH_RESOLUTION, _bisect, _search

    # Upward from a prediction that ran (the README's MLP: 30,616 predicted, about 47,000 runs).
    attempt, asked = _attempts_against(47_000)
    _search(30_616, None, attempt)
    best = max(s for s in asked if s <= 47_000)
    assert 47_000 / MAX_BATCH_RESOLUTION <= best <= 47_000
    # Down from a prediction two orders of magnitude off (the recommender: 235,032 failed, a probe of 2,048 fit).
    attempt, asked = _attempts_against(61_000)
    _bisect(2_048, 235_032, attempt)
    best = max(s for s in asked if s <= 61_000)
    assert 61_000 / MAX_BATCH_RESOLUTION <= best <= 61_000 and len(asked) <= 8
    # The probe's own batch does not run under fit: the search goes below it.
    attempt, asked = _attempts_against(1_500)
    _bisect(2_048, 2_100, attempt)
    assert max(s for s in asked if s <= 1_500) >= 1_500 / 2


def test_a_step_down_that_runs_is_followed_back_up_toward_the_failure_above_it():
    from preflight.whatif.recommend import MAX_BATCH_RESOLUTION, MAX_BATCH_STEP_DOWN, search_from

    def step_down(size: int) -> int:
        return int(size * MAX_BATCH_STEP_DOWN)

    # MobileNetV2 under 512 MiB: the predicted 37 failed, 33 ran, 36 runs under model.fit.
    attempt, asked = _attempts_against(36)
    assert search_from(37, step_down, attempt, lambda size: False, True, lambda refused: 0) is True
    best = max(s for s in asked if s <= 36)
    assert asked[:2] == [37, 33]
    # the answer is closed in from both sides: the smallest failure above it lies within the resolution
    assert min(s for s in asked if s > best) <= best * MAX_BATCH_RESOLUTION
    # The recommended batch is not searched: its step down stands.
    attempt, asked = _attempts_against(36)
    search_from(37, step_down, attempt, lambda size: False, False, lambda refused: 0)
    assert asked == [37, 33]
    # Out of time on the first try: no answer.
    assert search_from(37, step_down, lambda size: None, lambda size: False, True, lambda refused: 0) is False


def test_the_search_up_goes_where_the_measured_peaks_point_not_a_fixed_step_at_a_time():
    from preflight.whatif.recommend import MAX_BATCH_LEAP, MAX_BATCH_RESOLUTION, _search

    # The recommender under 1 GiB: predicted 17,140, about 120,000 runs under model.fit.
    attempt, asked = _attempts_against(120_000)
    aims: list[int] = []

    def aim(low: int) -> int:   # the line through what ran points at 125,000
        aims.append(low)
        return 125_000

    _search(17_140, None, attempt, aim=aim)
    best = max(s for s in asked if s <= 120_000)
    assert aims and asked[0] == int(17_140 * MAX_BATCH_LEAP)            # a leap, capped
    assert 120_000 / MAX_BATCH_RESOLUTION <= best <= 120_000 and len(asked) <= 6
    # Without an aim the 1.25x steps end well short in as many tries.
    attempt, asked = _attempts_against(120_000)
    _search(17_140, None, attempt)
    assert max(asked) < 120_000 / MAX_BATCH_RESOLUTION


def test_the_largest_batch_leaves_room_for_the_spread_fresh_processes_showed():
    from preflight.whatif.recommend import NEAR_LIMIT_FILL, cross_process_spread, sizes_without_room

    mib = 1 << 20
    limit = 256 * mib
    # The bidirectional LSTM: the planned batch read 80 and 88 MiB in two processes (10 % apart); the search
    # ran 75 once and 94 twice, 94 at 236 MiB, which one process of model.fit then could not run.
    document = {"probes": [{"batch_size": 32, "status": "ok", "process_peaks": [80 * mib, 88 * mib]},
                           {"batch_size": 16, "status": "oom", "process_peaks": [1, 100]}]}
    ran = {75: [190 * mib], 94: [236 * mib, 230 * mib]}
    spread = cross_process_spread(document, ran)
    assert abs(spread - 0.10) < 1e-9
    assert sizes_without_room(ran, spread, lambda size: limit) == [94]
    # Without a spread the same answer stands (it is under NEAR_LIMIT_FILL of the limit) ...
    assert 236 * mib < NEAR_LIMIT_FILL * limit and sizes_without_room(ran, 0.0, lambda size: limit) == []
    # ... and the smallest size that ran is kept even when it too lacks room: nothing smaller was run.
    assert sizes_without_room({75: [250 * mib], 94: [255 * mib]}, spread, lambda size: limit) == [94]
    # ... but not by the largest batch's search, which bisects below a size without room instead.
    assert sizes_without_room({75: [250 * mib], 94: [255 * mib]}, spread, lambda size: limit,
                              keep_smallest=False) == [94, 75]
    assert sizes_without_room({75: [190 * mib], 94: [255 * mib]}, spread, lambda size: limit,
                              keep_smallest=False) == [94]
    assert cross_process_spread({"probes": []}, {94: [236 * mib]}) == 0.0


def test_a_size_just_under_a_jump_in_the_peak_gets_more_processes_and_a_cut_short_peak_is_no_spread():
    from preflight.whatif.recommend import JUMP_MIN_EXCESS, cross_process_spread, jumps_above

    mib = 1 << 20
    limit = 1024 * mib
    # ConvNeXtTiny under 1 GiB (fifth zoo draw): 78 read 878 and 886 MiB, 84 read 1022 (model.fit at 78 then
    # read 1017, 1019 and 889 in three processes).
    assert jumps_above(78, 886 * mib, {84: 1022 * mib, 94: 1019 * mib}, spread=0.009)
    # No jump: the recommender's 97,339 (868 MiB) under 105,154 (973): 3.8 % over in proportion, and its
    # processes differ by 8.6 % anyway ...
    assert not jumps_above(97_339, 868 * mib, {105_154: 973 * mib}, spread=0.086)
    assert not jumps_above(97_339, 868 * mib, {105_154: 973 * mib}, spread=0.0)
    # ... ResNet50V2's 96 (919) under 102 (987): 1.1 %; a refusal past MAX_BATCH_RESOLUTION says nothing.
    assert not jumps_above(96, 919 * mib, {102: 987 * mib}, spread=0.0)
    assert not jumps_above(78, 886 * mib, {94: 1019 * mib}, spread=0.0)
    assert not jumps_above(78, 886 * mib, {}, spread=0.0)
    # A spread wider than the excess explains it.
    assert not jumps_above(78, 886 * mib, {84: 1022 * mib}, spread=JUMP_MIN_EXCESS + 0.03)
    # A process the limit cut short (over NEAR_LIMIT_FILL of it) is not a measure of the spread ...
    seen = {73: [866 * mib], 78: [878 * mib, 886 * mib, 1019 * mib]}
    assert cross_process_spread({"probes": []}, seen, lambda size: limit) < 0.01
    # ... without the limits every peak counts, as before.
    assert cross_process_spread({"probes": []}, seen) > 0.15


def _search_on_readings(monkeypatch, reading, predicted: int,
                        probed: tuple[tuple[int, list[int]], ...] = ((8, [600]), (16, [640]))
                        ) -> tuple[dict, dict[int, int]]:
    """The real largest-batch search (1 GiB, a non-deterministic CPU step) where each fresh process's peak at
    a batch is `reading(batch, nth process at that batch)` in MiB, None for out of memory, after probes at
    `probed` (batch, each of its processes' peaks in MiB). Returns the answer and the processes each size
    ran in."""
    from types import SimpleNamespace

    import preflight.whatif.recommend as recommend

    mib = 1 << 20
    processes: dict[int, int] = {}

    def run_in_fresh_processes(job, batch, budget, on_progress, bytes_per_sample, count, prefetched):
        peaks = []
        for _ in range(count):
            processes[batch] = processes.get(batch, 0) + 1
            peak = reading(batch, processes[batch])
            if peak is None:
                return ("near_limit" if peaks else "oom"), peaks
            peaks.append(peak * mib)
            if peak * mib > recommend.NEAR_LIMIT_FILL * budget:
                return "near_limit", peaks
        return "ok", peaks

    monkeypatch.setattr(recommend, "_run_in_fresh_processes", run_in_fresh_processes)
    probes = [{"batch_size": size, "status": "ok", "peak_bytes": max(peaks) * mib, "step_seconds": 0.1 + size / 1e6,
               "process_peaks": [peak * mib for peak in peaks]} for size, peaks in probed]
    document = {"budget_bytes": 1024 * mib, "probes": probes, "device": {"deterministic": False},
                "model": {"input_bytes_per_sample": 150_528}, "host": {}, "data": {}}
    answer = recommend.confirm_under_budget(document, SimpleNamespace(backend="tensorflow"), 1 << 40, predicted,
                                            lambda b: int(b * 0.9), search_up=True)
    return answer, processes


def test_the_largest_batch_search_steps_under_a_step_that_jumps_between_processes(monkeypatch):
    from preflight.whatif.recommend import CONFIRM_PROCESSES, JUMP_PROCESSES, MAX_BATCH_RESOLUTION

    # ConvNeXtTiny's readings under 1 GiB: 78 reads 878 and 886 MiB, then 1019 in a third process (cut short
    # by the limit); above it only the high mode; 73 and below the low mode only.
    low = {51: 781, 65: 835, 70: 858, 73: 866, 75: 879}

    def convnext(batch: int, nth: int) -> int:
        if batch == 78:
            return [878, 886, 1019][min(nth, 3) - 1]
        return 1022 if batch > 78 else low.get(batch, 870)

    answer, processes = _search_on_readings(monkeypatch, convnext, 78)
    # 78 is refused by its third process; the size under the jump at 78 ran in JUMP_PROCESSES processes, and
    # the cut-short 1019 did not widen the room every size needs.
    assert answer["status"] == "ok" and 78 / MAX_BATCH_RESOLUTION <= answer["batch_size"] < 78
    assert len(answer["process_peaks"]) == JUMP_PROCESSES and processes[78] == 3
    assert answer["process_spread"] < 0.01

    # One mode that runs out of memory above the answer (the VAE: 649 at 208 MiB of 256, 703 out of memory):
    # no jump, the usual processes.
    def one_mode(batch: int, nth: int) -> int | None:
        return None if batch > 80 else 700 + batch

    answer, processes = _search_on_readings(monkeypatch, one_mode, 70)
    assert 80 / MAX_BATCH_RESOLUTION <= answer["batch_size"] <= 80
    assert len(answer["process_peaks"]) == CONFIRM_PROCESSES


def test_an_answer_leaves_room_for_a_spread_its_few_processes_did_not_show(monkeypatch):
    from preflight.whatif.recommend import MAX_BATCH_RESOLUTION, MIN_ROOM_SPREAD, NEAR_LIMIT_FILL

    # Hub BERT under 1 GiB (seventh zoo draw): 46 read 945, 937 and 952 MiB in preflight's three processes
    # (1.6 % apart), then 986 in one of three model.fit processes, over NEAR_LIMIT_FILL; 47 runs out of memory.
    def bert(batch: int, nth: int) -> int | None:
        if batch >= 47:
            return None
        return [945, 937, 952, 986][nth - 1] if batch == 46 else 20 * batch + 30

    answer, processes = _search_on_readings(monkeypatch, bert, 46)
    assert processes[46] == 3 and answer["process_spread"] < MIN_ROOM_SPREAD   # 46 ran three times ...
    assert 46 / MAX_BATCH_RESOLUTION <= answer["batch_size"] < 46               # ... and lacked the floor's room
    assert max(answer["process_peaks"]) * (1 + MIN_ROOM_SPREAD) <= NEAR_LIMIT_FILL * 1024 * 2**20


RECOMMENDER_PROBES = ((1024, [306]), (2048, [311]), (16_384, [350, 420]))


def _recommender_readings(spread: float, first_oom: int | None = None):
    """The recommender under 1 GiB, MiB per process: below 105,000 every other process reads `spread` higher;
    from 105,000 to 124,000 every process runs at 941-973 (the limit absorbs the spread); above, out of memory,
    and at `first_oom` in its first process only."""
    def reading(batch: int, nth: int) -> int | None:
        if batch > 124_000 or (batch == first_oom and nth == 1):
            return None
        if batch >= 105_000:
            return [946, 973, 941, 968][nth % 4]
        return round((300 + 5.4 * batch / 1000) * (1 + spread if nth % 2 == 0 else 1.0))
    return reading


def test_a_larger_size_that_ran_everywhere_shows_the_room_a_spread_below_would_ask(monkeypatch):
    from preflight.whatif.recommend import COVER_MIN_STEP, covered_by_larger, sizes_without_room

    # The recommender under 1 GiB: below 100,000 its processes differ by up to 23 % (here 20 %), but from
    # 105,000 to 123,035 every fit process ran at 940-975 MiB (the limit absorbs the spread); 124,345 ran out
    # of memory. The room rule alone refused every size over about 70,000.
    answer, processes = _search_on_readings(monkeypatch, _recommender_readings(spread=0.2), 100_000,
                                            RECOMMENDER_PROBES)
    assert answer["process_spread"] >= 0.2 and answer["status"] == "ok"
    assert 112_000 <= answer["batch_size"] <= 124_000 and len(answer["process_peaks"]) == 3
    assert any(size >= answer["batch_size"] * COVER_MIN_STEP for size in processes)
    # A size covers another only from COVER_MIN_STEP up, and only if it ran in every process it was given.
    assert covered_by_larger(100, {105}) and not covered_by_larger(100, {104, 99})
    mib = 1 << 20
    ran = {90: [800 * mib], 100: [950 * mib]}
    assert sizes_without_room(ran, 0.2, lambda size: 1024 * mib, keep_smallest=False,
                              covered=lambda size: covered_by_larger(size, {110})) == []
    assert sizes_without_room(ran, 0.2, lambda size: 1024 * mib, keep_smallest=False,
                              covered=lambda size: covered_by_larger(size, {100})) == [100]


def test_a_size_refused_only_for_room_gets_one_try_at_the_size_that_would_cover_it(monkeypatch):
    from preflight.whatif.recommend import CONFIRM_PROCESSES, COVER_MIN_STEP

    # The eighth zoo draw's recommender: the search's one process at the size above its top ran out of memory
    # (123,013, where model.fit runs 123,035 in three of three), so the top, which read 971 MiB of 1 GiB, had
    # no cover and no room. Here 118,750 runs out of memory in its first process only; 124,000 is the truth.
    answer, processes = _search_on_readings(monkeypatch, _recommender_readings(spread=0.1, first_oom=118_750),
                                            100_000, RECOMMENDER_PROBES)
    assert answer["status"] == "ok" and len(answer["process_peaks"]) == 3
    assert 0.9 * 124_000 <= answer["batch_size"] <= 124_000
    # the size that covers it: tried COVER_MIN_STEP above, under the refusal at 118,750, in CONFIRM_PROCESSES
    covering = [size for size in processes if answer["batch_size"] * COVER_MIN_STEP <= size < 118_750]
    assert covering and all(processes[size] == CONFIRM_PROCESSES for size in covering)


def test_a_size_covers_another_only_once_it_ran_in_more_than_one_process(monkeypatch):
    from preflight.whatif.recommend import NEAR_LIMIT_FILL

    # The tenth zoo draw's EfficientNetB0 (here in 1 GiB, its MiB doubled): 55 read 490.4 MiB of 512 in its one
    # process, just under the 96 % line, and covered 52 (471.5, 489.6 and 470.4), which then read 508 and 500
    # in two of three model.fit processes. A second process at 55 reads over the line: no cover.
    def efficientnet(batch: int, nth: int) -> float | None:
        if batch >= 58:
            return None
        if batch == 55:
            return [980.8, 1020.0][min(nth, 2) - 1]
        if batch == 52:
            return [943.0, 979.2, 940.8, 1016.0][min(nth, 4) - 1]
        return round(2 * (9.0 * batch - 12) * (1.02 if nth % 2 == 0 else 1.0), 1)

    answer, processes = _search_on_readings(monkeypatch, efficientnet, 58, ((16, [380]), (32, [600, 612])))
    assert processes[55] == 2 and answer["batch_size"] < 52
    assert max(answer["process_peaks"]) <= NEAR_LIMIT_FILL * 1024 * 2**20


def test_the_search_stops_when_the_processes_still_owed_would_overrun_its_time_limit():
    from preflight.whatif.recommend import SearchClock

    # 180 s; the next size and the answer's second process are owed.
    clock = SearchClock(deadline=180.0, owed_processes=2)
    assert clock.allows_another(now=0.0)            # the pace is not known before the first process
    clock.record(30.0)                              # the README's MLP: 30 s a process at 40,000 samples
    assert clock.allows_another(now=120.0)          # 120 + 2 x 30 = 180: both end in time
    assert not clock.allows_another(now=151.0)      # it once started a size at 151 s and ended at 208 s
    clock.record(10.0)                              # smaller sizes, faster: the last pace counts
    assert clock.allows_another(now=151.0)
    assert SearchClock(deadline=None, owed_processes=2).allows_another(now=1e9)


def test_a_steps_fixed_cost_does_not_make_a_large_batch_look_too_slow_to_confirm():
    from preflight.engine.plan import estimated_step_seconds
    from preflight.common.measurements import ProbeResult

    # A recommender whose optimizer updates a 200,000-row table every step: 0.20 s at 512, 0.21 s at 1,024.
    probes = [ProbeResult(512, "ok", peak_bytes=1, step_seconds=0.20), ProbeResult(1024, "ok", peak_bytes=1,
                                                                                step_seconds=0.21)]
    assert abs(estimated_step_seconds(probes, 125_000) - (0.21 + 0.01 / 512 * (125_000 - 1024))) < 1e-9
    assert estimated_step_seconds(probes, 125_000) < 20   # scaled with the batch it would read 25.6 s
    assert estimated_step_seconds(probes, 256) == 0.21 * 256 / 1024


def _probe(batch_size, status, message=""):
    return {"batch_size": batch_size, "status": status, "message": message}


def test_out_of_memory_above_the_planned_batch_is_information_and_any_other_failure_an_error():
    from preflight.analysis.checks import CheckContext, probe_failed

    document = {"batch_size": 16, "device": {"memory_limit_bytes": 2**30},
                "probes": [_probe(16, "ok"), _probe(32, "ok"), _probe(4096, "oom", "out of memory in the probe")]}
    above = probe_failed(CheckContext(document, None))
    assert (above.id, above.severity) == ("probe-oom", "info") and "4096" in above.message
    document["probes"].insert(0, _probe(16, "oom", "out of memory"))
    at_planned = probe_failed(CheckContext(document, None))
    assert (at_planned.id, at_planned.severity) == ("probe-oom", "error") and "batch 16 " in at_planned.message
    document["probes"] = [_probe(16, "ok"), _probe(64, "timeout", "no result within 15 s")]
    assert probe_failed(CheckContext(document, None)).severity == "error"


def test_the_decision_round_counts_the_fresh_memory_a_huge_batch_would_touch():
    """A tiny MLP planned for a T4 (15 GiB): its step times are flat at small batches, so by step time alone
    its predicted largest batch (millions of samples) looks free to probe; the memory it would touch for
    the first time does not (it took 43 s of a 10 s verdict)."""
    from preflight.common.measurements import ProbeResult
    from preflight.engine.plan import FRESH_MEMORY_BYTES_PER_SECOND, decision_round

    mib = 2**20
    probes = [ProbeResult(b, "ok", peak_bytes=mib + b * 3000, peak_bytes_runs=[mib + b * 3000], step_seconds=0.002)
              for b in (32, 16, 8, 4)]
    arguments = dict(local_limit_bytes=15 * 2**30, usable_bytes=15 * 2**30, min_bytes_per_sample=256,
                     measured_steps=3)
    roomy = decision_round(16, probes, time_allowance_seconds=60.0, **arguments)
    assert len(roomy) == 2 and max(roomy) > 1_000_000  # the recommended and the largest batch, 5-6 GB each
    assert all(size * 3000 / FRESH_MEMORY_BYTES_PER_SECOND > 3.0 for size in roomy)
    # By step time alone each would cost 4 x 2 ms; the fresh memory makes each over a 3 s allowance.
    assert decision_round(16, probes, time_allowance_seconds=3.0, **arguments) == []


def test_a_recommended_batch_refused_as_too_near_the_limit_is_lowered_to_what_ran():
    from preflight.analysis.document import confirmation_record
    from preflight.analysis.recommendations import apply_recommended

    mib = 1 << 20
    # The cnn fixture under 256 MiB: 752 ran once, then too near the limit in its second process; 688 ran twice.
    confirmation = confirmation_record(688, "ok", 200 * mib, 256 * mib, [], process_peaks=[200 * mib, 198 * mib],
                                       near_limit={752: 250 * mib})
    document = {"recommended_batch_size": 752, "max_batch_size": 800}
    apply_recommended(document, confirmation)
    assert document["recommended_batch_size"] == 688 and document["confirmation"] is confirmation
    document = {"recommended_batch_size": 688, "max_batch_size": 800}
    apply_recommended(document, confirmation_record(688, "ok", 200 * mib, 256 * mib, [], process_peaks=[200 * mib]))
    assert document["recommended_batch_size"] == 688
    # The confirmation's own runs moved the curve's recommendation (888 confirmed, the curve then said 880):
    # the report recommends what ran.
    document = {"recommended_batch_size": 880, "max_batch_size": 900}
    apply_recommended(document, confirmation_record(888, "ok", 230 * mib, 256 * mib, [], process_peaks=[230 * mib]))
    assert document["recommended_batch_size"] == 888
