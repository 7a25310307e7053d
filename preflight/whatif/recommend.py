"""Measured what-ifs: each variant of the model (preflight.whatif) is dry-run in its own child at the
planned batch, under the same memory limit as the baseline, and ranked (preflight.analysis.recommendations).

Each variant gets a fresh child, as the baseline's planned batch did, so the two peaks are taken from
the same allocator state. A variant that runs out of memory under the limit is reported as "does not fit
either"; one that cannot be built for this model says why.
"""
from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any, Callable

from preflight.analysis.document import UNSQUEEZED_FILL, confirmation_record
from preflight.errors import PreflightError
from preflight.engine.runner import ProbeJob, ProbeOutcome, run_probes
from preflight.analysis.recommendations import largest_probe_under, unmeasured_entry

# Beyond this factor over the budget no single what-if is likely to make the run fit (measured savings
# were 7-43 % for mixed precision, remat and shrinking): only the batch-size recommendation is given.
WHATIF_REACH = 2.0
VARIANT_STEPS = 2


def should_measure_whatifs(document: dict[str, Any]) -> bool:
    """When it does not fit and a what-if could make it fit: the peak is within reach of one change, or
    no batch fits at all (then only a change to the model can help, however far over the budget)."""
    budget, peak = document.get("budget_bytes"), document.get("peak_bytes")
    if document.get("fits") is not False or budget is None:
        return False
    if (document.get("host") or {}).get("pipeline_is_cause"):
        return False  # the input pipeline holds most of it: no change to the model is the remedy
    return bool(document.get("fits_at_no_batch")) or (peak is not None and peak <= WHATIF_REACH * budget)


def measure_variants(baseline_job: ProbeJob, specs: list[dict], on_progress=None,
                     document: dict[str, Any] | None = None,
                     variant_floors: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One measured-list item per spec (see whatif.rank): description + peak/step time, or why not.

    When no batch fits the baseline, each variant is tried at the planned batch and at batch 1 (a change
    that makes batch 1 fit is still the way forward). A variant whose static floor alone is over the
    budget is not run: its floor says why it cannot fit.
    """
    from preflight.whatif.variants import spec_label

    document = document or {}
    planned = baseline_job.planned_batch_size
    no_batch_fits = bool(document.get("fits_at_no_batch"))
    sizes = [planned, 1] if no_batch_fits and planned > 1 else [planned]
    budget = document.get("budget_bytes")
    from_shapes = bool(budget and (document.get("load_oom") or document["floor"]["total_bytes"] > budget))
    measured = []
    for spec in specs:
        floor = (variant_floors or {}).get(spec_label(spec)) or {}
        if budget and floor.get("total_bytes", 0) > budget:
            measured.append({**unmeasured_entry(spec, "floor_over_budget", _floor_message(floor, budget)),
                             "details": {"floor": floor}})
            continue
        job = replace(baseline_job, batch_sizes=sizes, adaptive=False, measured_steps=VARIANT_STEPS,
                      variant=spec, list_variants=False, profile_dir=None, prior_probes=[], readiness=False,
                      variant_from_shapes=from_shapes, length_curve=False)
        try:
            outcome = run_probes(job, on_progress)
        except PreflightError as exc:
            measured.append(unmeasured_entry(spec, "error", exc.message))
            continue
        measured.append(_measured_item(spec, outcome, sizes))
    return measured


def _floor_message(floor: dict[str, Any], budget: int) -> str:
    from preflight.common.units import format_bytes

    return (f"does not fit either: its static floor (parameters {format_bytes(floor['parameter_bytes'])} + "
            f"gradients {format_bytes(floor['gradient_bytes'])} + optimizer state "
            f"{format_bytes(floor['optimizer_bytes'])} = {format_bytes(floor['total_bytes'])}) is over the "
            f"budget of {format_bytes(budget)} before any activation")


def _measured_item(spec: dict, outcome: ProbeOutcome, batch_sizes: list[int]) -> dict[str, Any]:
    """The variant's peak at the first of `batch_sizes` that ran (the planned batch, else batch 1)."""
    variant = outcome.variant or {}
    description = variant.get("description")
    if description is None:
        if outcome.load_oom:
            return unmeasured_entry(spec, "oom", f"does not fit either: {outcome.load_oom}")
        return unmeasured_entry(spec, "not_applicable", variant.get("message") or "could not be built")
    probes = {p.batch_size: p for p in outcome.probes}
    probe = next((probes[b] for b in batch_sizes if b in probes and probes[b].status == "ok"), None)
    if probe is None:
        failed = probes.get(batch_sizes[0])
        status = failed.status if failed is not None else ("oom" if outcome.load_oom else "error")
        message = failed.message if failed is not None else (outcome.load_oom or "no probe result")
        if status == "oom":
            message = f"does not fit either{' at batch 1' if len(batch_sizes) > 1 else ''}: {message}"
        return {**unmeasured_entry(spec, status, message), **{k: description[k] for k in
                                                               ("kind", "title", "snippet", "tradeoff")}}
    return {**description, "peak_bytes": probe.peak_bytes, "step_seconds": probe.step_seconds,
            "batch_size": probe.batch_size}


CONFIRM_ATTEMPTS = 3         # batch sizes tried downward from the prediction
CONFIRM_UP_ATTEMPTS = 4      # ... and upward from a prediction that ran: geometric steps, then bisection
CONFIRM_PROCESSES = 2        # fresh processes that must each run the batch under the budget
# ... and where the size just above the answer read far over what the answer's own peak scaled up to it allows:
# a step that changes mode near the limit between processes (ConvNeXtTiny under 1 GiB: 78 read 878 and 886 MiB
# in the search's two processes, 84 read 1022; model.fit at 78 then read 1017, 1019 and 889 in three).
JUMP_PROCESSES = 4
JUMP_MIN_EXCESS = 0.05       # ... far over: by more than this and more than the processes' measured spread
NEAR_LIMIT_FILL = 0.96       # a peak above this share of the limit was squeezed against it: not a fit
# The room an answer leaves for processes it did not run: at least this spread, since two or three processes
# rarely show the widest (hub BERT's 46 read 945, 937 and 952 MiB of 1 GiB in preflight's three, 1.6 % apart,
# then 986 in one of three model.fit processes; a quarter of the zoo's 131 three-process groups spread over 4 %).
MIN_ROOM_SPREAD = 0.04
# ... unless a size this much larger ran in every process it was given: its larger step ran where another
# process's would have to, so the room is shown, not assumed (the recommender under 1 GiB: processes up to
# 23 % apart below 100,000, yet every size from 105,000 to 123,035 ran at 940-975 MiB in 30 of 30 processes,
# the limit absorbing the spread; the room alone answered 83,122); in at least CONFIRM_PROCESSES of them, since
# one process just under the line covered sizes that then read over it (the tenth draw's EfficientNetB0, 52).
COVER_MIN_STEP = 1.05
PREFETCHED_BATCHES = 2       # batches model.fit's tf.data pipeline holds beside a probe's step (not under fit)
# ... and beside fit's step on one batch repeated, when fit slices NumPy arrays under TensorFlow: 1-3 batches past
# the step and the arrays at batch 64 (benchmarks/array_copy.py), 3.5 at 7,580 under a 64 MiB limit
ARRAY_PREFETCHED_BATCHES = 4
MAX_BATCH_STEP_DOWN = 0.9    # the largest batch is stepped down finely: it is the number reported
MAX_BATCH_STEP_UP = 1.25     # upward, until a batch fails: at least this step ...
MAX_BATCH_LEAP = 4.0         # ... at most this one, aimed where the measured peaks reach AIM_FILL of the limit
# Aimed under NEAR_LIMIT_FILL, so a straight line that misses the curve's bend up still lands on a size that runs
# (0.88, under the curve's unsqueezed fill, brought no closer answer on the VAE or the recommender).
AIM_FILL = 0.92
MAX_BATCH_RESOLUTION = 1.1   # ... then bisected until the failure is within 10 % of the largest that ran
RECOMMENDED_STEP_DOWN = 0.85
CONFIRM_MAX_STEP_SECONDS = 20.0
PIPELINE_SHARE_OFF_BUDGET = 0.1  # on a CPU, an input pipeline over this share of the budget: the step gets the rest
FIT_STEPS = 3                # model.fit steps per confirming process (TensorFlow)
SETTLE_ROUNDS = 3            # searches again below an answer its own repeats refused


def confirm_under_budget(document: dict[str, Any], baseline_job: ProbeJob, host_limit_bytes: int,
                        batch: int | None, step_down: Callable[[int], int],
                        on_progress=None, search_up: bool = False,
                        deadline: float | None = None) -> dict[str, Any] | None:
    """Run `batch` in fresh children whose allocator is limited to the budget itself, stepping down on OOM;
    with `search_up`, a batch that ran on the first try is followed upward until one fails, so the result
    lies within MAX_BATCH_RESOLUTION of the largest batch that runs (never above it).

    Under a hard limit BFC fails before its unlimited in-use peak reaches the limit (a CNN's predicted
    max of 88 ran out of memory under 512 MiB; the true max was 68), so a batch size preflight reports is
    proven the way the real device would test it: under TensorFlow by `model.fit` itself, FIT_STEPS steps
    (engine.probe.fit_probe). Each size tried runs in one fresh process; the answer must run in
    CONFIRM_PROCESSES (one for a deterministic figure: XLA's buffer assignment on a JAX CPU run), each
    peaking under NEAR_LIMIT_FILL of the limit; one that fits only sometimes, or only squeezed against the
    limit, is "near_limit" and counts as not fitting. None when it cannot be tried here (no budget, a budget
    larger than this machine can hold, or steps too slow). No size is tried once the processes still owed (this
    one and the answer's second) would not end by `deadline` at the last process's pace: the time limit is
    the whole search's, not only its start's.
    """
    from preflight.common.measurements import ProbeResult
    from preflight.engine.plan import estimated_step_seconds

    budget = document.get("budget_bytes")
    if not budget or not batch or budget > host_limit_bytes:
        return None
    budget, prefetched = _step_share(document, budget)
    if budget < 1:
        return None
    probes = [ProbeResult.from_dict(p) for p in document["probes"]]
    if estimated_step_seconds(probes, batch) > CONFIRM_MAX_STEP_SECONDS:
        return None
    failed: list[int] = []
    near_limit: dict[int, int] = {}
    ran: dict[int, list[int]] = {}   # batch -> the peak of each fresh process that ran it under the budget
    seen: dict[int, list[int]] = {}  # ... and every peak a process reached, kept when its size is refused
    ran_everywhere: set[int] = set()  # sizes every process of which ran (kept when refused for room)

    deterministic = bool((document.get("device") or {}).get("deterministic"))
    needed = 1 if deterministic else CONFIRM_PROCESSES

    clock = SearchClock(deadline, owed_processes=needed)

    def run(size: int, processes: int) -> str | None:
        started = time.monotonic()
        status, peaks = _run_in_fresh_processes(baseline_job, size, budget, on_progress,
                                                (document.get("model") or {}).get("input_bytes_per_sample"),
                                                processes, prefetched)
        clock.record((time.monotonic() - started) / max(1, len(peaks)))
        if status == "ok" and (size not in seen or size in ran_everywhere):
            ran_everywhere.add(size)
        else:
            ran_everywhere.discard(size)
        seen[size] = seen.get(size, []) + peaks
        if status == "ok":
            ran[size] = ran.get(size, []) + peaks
        elif status == "near_limit":
            near_limit[size] = max(peaks)
        elif status == "oom":
            failed.append(size)
        return status

    def too_slow(size: int) -> bool:
        return estimated_step_seconds(probes, size) > CONFIRM_MAX_STEP_SECONDS

    def attempt(size: int) -> str | None:
        """One fresh process per size while searching; the answer gets its second process at the end."""
        if not clock.allows_another():
            return None  # out of time: what ran so far stands
        return run(size, 1)

    input_bytes_per_sample = (document.get("model") or {}).get("input_bytes_per_sample")

    def limit_of(size: int) -> int:
        return _fresh_process_limit(baseline_job, budget, size, input_bytes_per_sample, prefetched)

    def aim(low: int, fill: float = AIM_FILL, runs: dict[int, list[int]] | None = None) -> int | None:
        """Where the straight line through the two largest sizes up to `low` measured (fit `runs` under the
        budget, by default those that ran; else the probes below them) reaches `fill` of the limit; None where
        it does not rise."""
        measured = {p.batch_size: p.peak_bytes for p in probes if p.status == "ok" and p.peak_bytes}
        measured.update({size: max(peaks) for size, peaks in (ran if runs is None else runs).items() if peaks})
        sizes = sorted(size for size in measured if size <= low)[-2:]
        if len(sizes) < 2 or measured[sizes[1]] <= measured[sizes[0]]:
            return None
        slope = (measured[sizes[1]] - measured[sizes[0]]) / (sizes[1] - sizes[0])
        return int(sizes[1] + (fill * limit_of(low) - measured[sizes[1]]) / slope)

    if not search_from(batch, step_down, attempt, too_slow, search_up,
                       lambda refused: largest_probe_under(document, refused), aim):
        return None

    def processes_for(size: int) -> int:
        """A peak the limit squeezed (over UNSQUEEZED_FILL of it) hides what the step would take unlimited,
        which may vary between processes by more than the processes showed (the recommender's 124,345 ran
        at 95 % of 1 GiB in two processes and ran out of memory in one of two `fit` runs after): one more.
        A size just under a jump (jumps_above) gets JUMP_PROCESSES: two processes that both drew the low
        mode cannot tell."""
        if deterministic:
            return needed
        squeezed = max(ran[size]) > UNSQUEEZED_FILL * limit_of(size)
        # Only sizes that read a peak: under a hard limit a step runs out of memory before its free peak
        # reaches the limit (the sixth zoo draw's VAE: 649 at 208 MiB of 256, 703 out of memory, one mode).
        readings = {above: max(seen[above]) for above in near_limit if seen.get(above)}
        if jumps_above(size, max(ran[size]), readings, spread()):
            return JUMP_PROCESSES
        return needed + (1 if squeezed else 0)

    def spread() -> float:
        return cross_process_spread(document, seen, limit_of)

    def room_spread() -> float:
        return spread() if deterministic else max(spread(), MIN_ROOM_SPREAD)

    def covered(size: int) -> bool:
        """covered_by_larger, by a size that ran in each of at least `needed` processes: a larger size that ran
        in one gets more here (the tenth zoo draw: EfficientNetB0's 55 read 490.4 MiB of 512 in its one process
        and covered 52, which then read 508 and 500 in two of three model.fit processes; the recommender's
        134,590 read 979.6 of 1024 in one and covered 127,506, which read 1014 in one of three)."""
        for other in sorted(s for s in ran_everywhere if s >= size * COVER_MIN_STEP):
            running = other in ran
            for _ in range(needed):
                if other not in ran_everywhere or len(seen[other]) >= needed or not clock.allows_another():
                    break
                run(other, 1)
            # refused for room before, or by the process just run: out of the running, its peaks counted
            if other in ran and (not running or other not in ran_everywhere):
                near_limit[other] = max(near_limit.get(other, 0), *ran.pop(other))
            if covered_by_larger(size, {s for s in ran_everywhere if len(seen[s]) >= needed}):
                return True
        return False

    def settle() -> None:
        while ran:   # the answer must run in every one of its fresh processes, with room for their spread
            for size in sizes_without_room(ran, room_spread(), limit_of, keep_smallest=not search_up,
                                           covered=covered):
                if size in ran:   # covered() may have taken out a size a process refused
                    near_limit[size] = max(ran.pop(size))
            if not ran:
                return   # every size lacked room: the rounds below bisect under the smallest
            top = max(ran)
            if len(ran[top]) >= processes_for(top):
                return
            if run(top, 1) != "ok":   # one at a time: each process may change the room and the count
                del ran[top]

    def refusal_above(size: int) -> int | None:
        return min((other for other in [*failed, *near_limit] if other > size), default=None)

    def cover(size: int) -> bool:
        """One try at the size COVER_MIN_STEP above `size`, which ran in every process it was given and was
        refused only for room, when that size is under the next refusal: if it runs, `size` needs no room and
        is back in the running. A single process's refusal near the limit is a draw (the eighth zoo draw's
        recommender: 112,386 read 971 MiB of 1 GiB, then 123,013 ran out of memory in the one process it got,
        where model.fit runs 123,035 in three of three; the answer fell to 103,864)."""
        larger = math.ceil(size * COVER_MIN_STEP)
        refusal = refusal_above(size)
        if larger in seen or (refusal is not None and larger >= refusal) or too_slow(larger):
            return False
        if attempt(larger) != "ok" or not covered(size):
            return False
        ran[size] = list(seen[size])
        del near_limit[size]
        return True

    for _ in range(SETTLE_ROUNDS):
        settle()
        # An answer its repeats refused leaves a gap below the refusal: close in on it again.
        top = max(ran, default=0)
        above = refusal_above(top)
        if (search_up and above in near_limit and above in ran_everywhere and clock.allows_another()
                and cover(above)):
            continue
        if (not search_up or above is None or (top and above <= top * MAX_BATCH_RESOLUTION)
                or not clock.allows_another()):
            break
        if top:
            _search(top, above, attempt, too_slow)
            continue
        # Every size that ran lacked room for the processes' spread: first where the line through what they
        # reached leaves that room (DenseNet121's only size, 35, read 488 MiB of 512, 2.1 % apart), else bisect.
        roomy = aim(above, NEAR_LIMIT_FILL / (1 + room_spread()), seen)
        if roomy is not None and 0 < roomy < above and not too_slow(roomy) and attempt(roomy) == "ok":
            continue
        _bisect(largest_probe_under(document, above), above, attempt, too_slow)
    settle()
    method = f"model.fit, {FIT_STEPS} steps" if baseline_job.backend == "tensorflow" else "training steps"
    if not ran:
        return {**confirmation_record(None, "oom", None, budget, failed, near_limit=near_limit), "method": method}
    top = max(ran)
    return {**confirmation_record(top, "ok", max(ran[top]), budget, sorted(failed), process_peaks=ran[top],
                                  near_limit=near_limit), "method": method,
            "process_spread": round(spread(), 4),
            # every size that ran with room, each process's peak: measured points of the report's curve
            "runs": {str(size): list(peaks) for size, peaks in sorted(ran.items())}}


class SearchClock:
    """Whether the search may try one more size before `deadline` (time.monotonic(); None: no limit): the
    processes owed once it has (that one and the answer's second) must end by then at the last process's
    pace. Not the slowest's: a recommender's first sizes, far above what fits, took 30 s a process, and
    reserving that pace for the bisection's smaller sizes ended the search at the largest probe (2,048).
    Not owed: the third process an answer squeezed over UNSQUEEZED_FILL of the limit gets, and the third and
    fourth an answer under a jump gets (processes_for), so such an answer may end a process or two past the
    deadline; without them the answer would stand on two processes that cannot show its spread or its mode."""

    def __init__(self, deadline: float | None, owed_processes: int):
        self.deadline, self.owed_processes = deadline, owed_processes
        self.last_process_seconds = 0.0

    def record(self, process_seconds: float) -> None:
        self.last_process_seconds = process_seconds

    def allows_another(self, now: float | None = None) -> bool:
        if self.deadline is None:
            return True
        now = time.monotonic() if now is None else now
        return now + self.owed_processes * self.last_process_seconds <= self.deadline


def search_from(batch: int, step_down: Callable[[int], int], attempt: Callable[[int], str | None],
                too_slow: Callable[[int], bool], search_up: bool,
                probe_under: Callable[[int], int],
                aim: Callable[[int], int | None] = lambda low: None) -> bool:
    """The order in which the confirmation tries sizes, each by `attempt` ("ok", or why not; None: out of
    time): the prediction, stepped down on failure up to CONFIRM_ATTEMPTS times. With `search_up` (the largest
    batch, whose figure is the answer) the search then closes in from both sides: up from a first try that
    ran, and from a step down that ran, back up between it and the failure above it, which may be up to
    1/MAX_BATCH_STEP_DOWN wide (MobileNetV2's predicted 37 failed under 512 MiB, 33 ran, 36 runs in three
    `fit` processes). False when the first try could not be run (out of time): nothing to report."""
    outcomes: dict[int, str] = {}

    def tried(size: int) -> str | None:
        outcomes[size] = attempt(size)
        return outcomes[size]

    for _ in range(CONFIRM_ATTEMPTS):
        status = tried(batch)
        if status is None:
            return False
        if status == "ok":
            break
        smaller = step_down(batch)
        if smaller < 1 or smaller >= batch:
            break
        batch = smaller
        if search_up and len(outcomes) >= 2:
            # Two steps down did not reach it: the prediction is far off (a recommender's predicted 290,164
            # failed, and so did 261,147 and 235,032); bisect between the largest probe within the budget
            # and the smallest failure instead of stepping down 10 % at a time.
            smallest_refused = min(outcomes)
            _bisect(probe_under(smallest_refused), smallest_refused, tried, too_slow)
            break
    ran = [size for size, status in outcomes.items() if status == "ok"]
    if ran and search_up:
        refused_above = [size for size, status in outcomes.items() if status != "ok" and size > max(ran)]
        _search(max(ran), min(refused_above, default=None), tried, too_slow, aim)
    return True


def _search(low: int, high: int | None, attempt: Callable[[int], str | None],
            too_slow: Callable[[int], bool] = lambda size: False,
            aim: Callable[[int], int | None] = lambda low: None) -> None:
    """From a batch that ran (`low`): up until one does not, then bisect between the two until they are within
    MAX_BATCH_RESOLUTION (the prediction's margin may leave a quarter of the memory unused). Each step up
    goes where the measured peaks point (`aim`), at least MAX_BATCH_STEP_UP and at most MAX_BATCH_LEAP times
    `low`: a recommender predicted at 17,140 runs 118,909 under fit, and 1.25x steps ended 2.4x up with
    nothing refused. With `high` (a batch that did not run) it bisects at once."""
    for _ in range(CONFIRM_UP_ATTEMPTS + 2):
        if high is None:
            aimed = aim(low)
            size = int(low * MAX_BATCH_STEP_UP) + 1
            if aimed is not None:
                size = max(size, min(aimed, int(low * MAX_BATCH_LEAP)))
        else:
            size = (low + high) // 2
        if high is not None and high <= low * MAX_BATCH_RESOLUTION or size <= low:
            return
        if too_slow(size):
            return
        status = attempt(size)
        if status is None:
            return
        if status == "ok":
            low = size
        else:
            high = size


def _bisect(low: int, high: int, attempt: Callable[[int], str | None],
            too_slow: Callable[[int], bool] = lambda size: False) -> None:
    """Between `low` (a probe within the budget, not yet run under it; 0 when none) and `high` (a batch that
    did not run): geometric midpoints, since the two may be orders of magnitude apart, until they are within
    MAX_BATCH_RESOLUTION; then `low` itself is run if no midpoint did."""
    low_ran = False
    for _ in range(CONFIRM_UP_ATTEMPTS + 2):
        if low and high <= low * MAX_BATCH_RESOLUTION:
            if low_ran:
                return
            size = low
        else:
            size = max(int((low * high) ** 0.5), low + 1) if low else max(1, high // 2)
        if size >= high or too_slow(size):
            return
        status = attempt(size)
        if status is None:
            return
        if status == "ok":
            low, low_ran = size, True
        else:
            high = size
            if size == low:   # the probe's batch does not run under fit either
                low, low_ran = 0, False


def _step_share(document: dict[str, Any], budget: int) -> tuple[int, bool]:
    """(the budget a confirming step runs under, whether fit's prefetched batches come off it per size).

    Where the input pipeline takes a large share of the same memory (analysis.host: a CPU run), the step gets
    what the pipeline leaves, and for NumPy arrays under TensorFlow also less the batches fit prefetches,
    which its one batch repeated does not hold (20,000 samples of 256 floats under 64 MiB: the largest batch
    from the step alone, 16,194, crashed model.fit(x, y) in 3 of 3 processes: benchmarks/array_copy.py). Under that share the whole budget stands: the
    pipeline is within the margins (a zoo model's arrays: up to 5 % of its budget)."""
    host = document.get("host") or {}
    held = host["pipeline_bytes"] if host.get("step_on_host") else 0
    if held < PIPELINE_SHARE_OFF_BUDGET * budget:
        return budget, False
    return budget - held, (document.get("data") or {}).get("kind") == "numpy"


def _run_in_fresh_processes(baseline_job: ProbeJob, batch: int, budget: int, on_progress=None,
                            document_input_bytes_per_sample: int | None = None,
                            processes: int = CONFIRM_PROCESSES,
                            prefetched: bool = False) -> tuple[str | None, list[int]]:
    """("ok" | "oom" | "near_limit" | None, peaks): `batch` in `processes` fresh children under the
    budget. A peak past NEAR_LIMIT_FILL of the limit is "near_limit": under a hard limit the allocator
    squeezes a step that would peak above it (the README's MLP ran 55,208 samples at 99.8 % of 1 GiB in
    three processes, where the same step peaks at about 1.06 GiB unlimited), and an MLP batch that peaked at
    99.4 % of 256 MiB in two processes ran out of memory in a third: such a batch does not count as fitting.
    None: it could not be run."""
    peaks: list[int] = []
    as_fit = baseline_job.backend == "tensorflow"
    # Under TensorFlow model.fit runs with its own pipeline in the allocator. Elsewhere the probe hands over
    # one batch while fit's pipeline holds the next ones in the same memory: those are left out of the limit
    # (an MLP batch of 2,134 ran in the probe under 256 MiB and failed twice under model.fit).
    limit = _fresh_process_limit(baseline_job, budget, batch, document_input_bytes_per_sample, prefetched)
    while len(peaks) < processes:
        job = replace(baseline_job, batch_sizes=[batch], adaptive=False,
                      measured_steps=FIT_STEPS if as_fit else VARIANT_STEPS, as_fit=as_fit,
                      memory_limit_bytes=limit, list_variants=False, profile_dir=None, prior_probes=[],
                      readiness=False, length_curve=False)
        try:
            probe = next(p for p in run_probes(job, on_progress).probes if p.batch_size == batch)
        except (PreflightError, StopIteration):
            return None, peaks
        if probe.status == "oom":
            return ("near_limit" if peaks else "oom"), peaks
        if probe.status != "ok":
            return None, peaks
        peaks.append(probe.peak_bytes)
        if probe.peak_bytes > NEAR_LIMIT_FILL * limit:
            return "near_limit", peaks
    return "ok", peaks


def _fresh_process_limit(baseline_job: ProbeJob, budget: int, batch: int,
                         input_bytes_per_sample: int | None, prefetched: bool = False) -> int:
    """The allocator limit a confirming process runs `batch` under: the budget, less (off TensorFlow, or with
    `prefetched`) the batches model.fit's pipeline holds beside the step (see _run_in_fresh_processes)."""
    if baseline_job.backend == "tensorflow" and not prefetched:
        return budget
    batches = ARRAY_PREFETCHED_BATCHES if prefetched else PREFETCHED_BATCHES
    return max(1, budget - (input_bytes_per_sample or 0) * batch * batches)


def cross_process_spread(document: dict[str, Any], ran: dict[int, list[int]],
                         limit_of: Callable[[int], int] | None = None) -> float:
    """The widest relative spread seen between fresh processes running the same step: the planned batch's
    processes (engine.processes) and each size the confirmation ran more than once. 0.0 when no step ran
    twice. A bidirectional LSTM's two search processes at batch 89 peaked at 245 and 248 MiB, yet the answer
    94, which ran twice under 256 MiB, ran out of memory in one of two processes of model.fit afterwards:
    recurrent steps are bimodal between processes, so the answer must leave room for what they showed.
    With `limit_of` (batch -> its allocator limit), a peak past NEAR_LIMIT_FILL of the limit is left out: the
    limit cut it short, so it measures where that size stopped, not how far the step's processes differ (a
    ConvNeXtTiny process at 78 that read 1019 MiB of 1 GiB beside 878 and 886 would have refused every size
    below 66; those near the jump get more processes instead: jumps_above)."""
    groups = [p.get("process_peaks") or [] for p in document.get("probes") or [] if p.get("status") == "ok"]
    for size, peaks in ran.items():
        groups.append([peak for peak in peaks if limit_of is None or peak <= NEAR_LIMIT_FILL * limit_of(size)])
    return max(((max(g) - min(g)) / min(g) for g in groups if len(g) >= 2 and min(g) > 0), default=0.0)


def jumps_above(size: int, peak: int, refused: dict[int, int], spread: float) -> bool:
    """Whether the smallest refused size above `size` that read a peak (`refused`: batch -> the highest peak a
    process reached there), within MAX_BATCH_RESOLUTION of it, read more than `size`'s `peak` scaled up in
    proportion to the batch (the most a step with a fixed part can grow) by more than `spread` and
    JUMP_MIN_EXCESS. Such a step has two modes near the limit, not one line: ConvNeXtTiny's 78 (886 MiB; 84
    read 1022, 7 % over 886 x 84 / 78). Of the fifth zoo draw's other answers only hub GPT-2's 42 is one
    (835 MiB; 44 read 984)."""
    above = min((refused_size for refused_size in refused if refused_size > size), default=None)
    if above is None or above > size * MAX_BATCH_RESOLUTION or peak <= 0:
        return False
    excess = refused[above] / (peak * above / size) - 1
    return excess > max(spread, JUMP_MIN_EXCESS)


def sizes_without_room(ran: dict[int, list[int]], spread: float, limit_of: Callable[[int], int],
                       keep_smallest: bool = True, covered: Callable[[int], bool] = lambda size: False
                       ) -> list[int]:
    """The largest sizes of `ran` (batch -> its processes' peaks) whose highest peak, raised by `spread`,
    would pass NEAR_LIMIT_FILL of their limit, and not `covered` (covered_by_larger): another process may not
    fit them. With `keep_smallest` (the recommended batch, which has no search below it) the smallest size is
    kept: it ran. The largest batch's search drops it too and bisects below it: EfficientNetB0's only size,
    52, ran at 489, 476 and 489 MiB under 512 (2.7 % apart, so another process may need 502) and peaked at
    508 and 500 in two of three `fit` processes after."""
    dropped = []
    for size in sorted(ran, reverse=True)[:-1 if keep_smallest else None]:
        if max(ran[size]) * (1 + spread) <= NEAR_LIMIT_FILL * limit_of(size) or covered(size):
            break
        dropped.append(size)
    return dropped


def covered_by_larger(size: int, ran_everywhere: set[int]) -> bool:
    """Whether a size at least COVER_MIN_STEP times `size` ran in every fresh process it was given (each under
    NEAR_LIMIT_FILL of its limit; `ran_everywhere` holds only sizes given enough processes, CONFIRM_PROCESSES
    where the step is not deterministic): then `size` needs no room for a spread its processes may show."""
    return any(other >= size * COVER_MIN_STEP for other in ran_everywhere)


def confirm_largest_batch(document: dict[str, Any], baseline_job: ProbeJob, host_limit_bytes: int,
                          on_progress=None, deadline: float | None = None) -> dict[str, Any] | None:
    """The largest batch, searched under the budget (confirm_under_budget); no new batch size is tried after
    `deadline` (time.monotonic()). preflight.analysis.recommendations applies the record to the report."""
    return confirm_under_budget(document, baseline_job, host_limit_bytes, document.get("max_batch_size"),
                                lambda b: int(b * MAX_BATCH_STEP_DOWN), on_progress, search_up=True,
                                deadline=deadline)


def confirm_recommended_batch(document: dict[str, Any], largest: dict[str, Any] | None, baseline_job: ProbeJob,
                              host_limit_bytes: int, on_progress=None,
                              deadline: float | None = None) -> dict[str, Any] | None:
    """The recommended batch of `document`, run under the budget; failures lower it. `document` is the report
    assembled with the `largest` batch's record, whose runs are measured points of the curve the
    recommendation comes from: so the size confirmed is the one the report shows (a CNN's curve before them
    recommended 624 and the report, after them, 840). None when the largest batch's own runs confirm it."""
    from preflight.analysis.predict import friendly_at_most

    recommended = document.get("recommended_batch_size")
    if largest is not None and largest["status"] == "ok" and recommended == largest["batch_size"]:
        return None
    return confirm_under_budget(document, baseline_job, host_limit_bytes, recommended,
                                lambda b: friendly_at_most(int(b * RECOMMENDED_STEP_DOWN)), on_progress,
                                deadline=deadline)
