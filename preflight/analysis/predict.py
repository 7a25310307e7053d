"""Peak memory as a function of batch size, from measured probes: upper bounds, max and recommended batch,
the next batch sizes worth probing, and the projection from the measured device to a target.

Pure Python, no TensorFlow. Why it is shaped this way (notes §1, §3):

- A straight line through tiny batches fails: an MLP's peak is flat (Adam's temporaries), an LSTM's is
  non-monotonic, a CNN's near-linear. So the curve is an **upper envelope**: the running maximum of the
  measured peaks (a larger batch never predicts less than a smaller measured one, which makes the MLP's
  flat peak a floor), interpolated between probes, and extrapolated past the largest probe with the
  steepest credible slope (the last two envelope segments, and any
  per-sample lower bound the caller knows, e.g. from the graph estimate or the input bytes).
- The allocator peak of the same step moves from run to run (±15 % CNN, ±50 % LSTM across processes),
  so every figure carries a margin: the spread between fresh processes at every batch (at least a floor,
  `run_margin_floor`; for a recurrent step at least the bytes its processes differed by, since its modes
  differ by buffers that do not shrink with the batch), the spread between one process's steps beside the batch that showed it, plus, on the
  growth extrapolated past the largest probe, `EXTRAPOLATION_MARGIN_PER_DOUBLING` per doubling.
- A size that ran squeezed against a limit is a lower bound: the curve never promises less than it reached,
  raised by the run margin as a measured point is (the timeseries Transformer's 12 read 933-943 MiB in the
  search's three processes, all in the low mode; one of three unlimited processes read 986).

Entry points: `PeakModel(probes, ...)` with `predict_peak`, `curve`, `max_batch_size`,
`recommended_batch_size`; `next_probe_batch_sizes` (the adaptive probe plan); `project_to_target`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

from preflight.analysis.devices import Target
from preflight.common.measurements import ProbeResult
from preflight.common.units import format_bytes

MIN_RUN_MARGIN = 0.10                    # floor for the cross-process spread one process cannot see (zoo: up to 20 %)
# Once the same step ran in more than one fresh process, the spread between them is measured and the margin is
# that spread over a floor for what two processes may not show and for interpolating between measured points
# (held-out zoo, 3 fresh model.fit processes per size: 0-6 % apart on 10 of 12 models).
MEASURED_SPREAD_RUN_MARGIN = 0.04
# Recurrent steps are bimodal between processes (a bidirectional LSTM at batch 4: 60, 70 and 60 MiB in three;
# the LSTM fixture's upper mode in 31 % of children): two processes in the lower mode show no spread at all.
RECURRENT_LAYER_TYPES = ("LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional", "ConvLSTM1D", "ConvLSTM2D",
                         "ConvLSTM3D")
# An XLA-compiled step (jit_compile=True, or the JAX backend) has its buffers assigned statically: the same
# peak in every process (small Xception, 3 processes at batch 8 and 22: equal to the byte). Its floor covers
# the interpolation between probes only (measured there: under 2 %), when every probe's steps agreed.
STATIC_BUFFERS_RUN_MARGIN = 0.02
STATIC_BUFFERS_MAX_SPREAD = 0.01
# Within 2 % below a size that ran squeezed the step is that size's, for what the search can tell: over 2 % of the
# batch the peak grows by at most 2 % (its share per sample does not grow with the batch), less than fresh
# processes of the same step differ near a limit (the recommender's: 3.4 % at 122,902 under 1 GiB, 7.4 % at
# 108,152 unlimited). At 1 % the twelfth zoo draw's recommender read -10.8 % at 108,152, 1.001 % under the
# 109,246 its search ran squeezed at 971 MiB in three processes (now -1.8 %; over the eleven stored draws four
# other points rise, by 0.4 to 5.1 points, none past 11 %).
LOWER_BOUND_REACH = 0.02
FAR_APART_RATIO = 3                       # two measured points this far apart may hide a bend between them
EXTRAPOLATION_MARGIN_PER_DOUBLING = 0.10  # on extrapolated growth, per doubling past the largest probe (peaks grow convexly)
RECOMMEND_FRACTION = 0.90                # recommended batch keeps 10 % headroom under usable memory
MAX_SEARCH_BATCH = 1 << 24               # max_batch_size stops looking here (a flat curve never crosses)


def run_margin_floor(static_buffers: bool, probes: Iterable[ProbeResult], recurrent: bool = False) -> float:
    """The margin's floor: STATIC_BUFFERS_RUN_MARGIN for a step whose buffers XLA assigns statically and whose
    probes showed no spread between steps (what static assignment promises); MEASURED_SPREAD_RUN_MARGIN once
    a step ran in several fresh processes (the spread they showed is then in the margin itself), unless the
    model is recurrent; else MIN_RUN_MARGIN."""
    ok = [p for p in probes if p.status == "ok"]
    spreads = [p.spread for p in ok]
    if static_buffers and spreads and max(spreads) <= STATIC_BUFFERS_MAX_SPREAD:
        return STATIC_BUFFERS_RUN_MARGIN
    if not recurrent and any(len(p.process_peaks) >= 2 for p in ok):
        return MEASURED_SPREAD_RUN_MARGIN
    return MIN_RUN_MARGIN


def peak_spread(probe: ProbeResult) -> float:
    """How far the same step's peak moved where it was measured, (max - min) / max: between its processes'
    peaks when it ran in several, else between its steps. A peak is the max over a process's steps, so a step
    below that max does not widen what another process may reach (BERT at batch 16: steps 364 to 393 MiB,
    7.4 % apart, in two processes that peaked at 373 and 393, 5.1 %)."""
    peaks = probe.process_peaks
    if len(peaks) >= 2 and max(peaks) > 0:
        return (max(peaks) - min(peaks)) / max(peaks)
    return probe.spread


def is_recurrent(layer_types: Iterable[str]) -> bool:
    return any(kind in RECURRENT_LAYER_TYPES for kind in layer_types)


@dataclass(frozen=True)
class Prediction:
    """The peak at one batch size. `peak_bytes` is an upper bound (measured max plus margin)."""

    batch_size: int
    peak_bytes: int
    source: str                      # "measured" | "predicted"
    margin_fraction: float           # included in peak_bytes
    method: str                      # how the figure was obtained, in words
    measured_bytes: int | None = None  # max over the measured steps, when this batch was probed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Point:
    batch_size: int
    peak_bytes: int      # max over the measured steps
    spread: float
    across_processes: bool = False  # the spread is between fresh processes' peaks (peak_spread), not steps


class PeakModel:
    """Upper-bound peak(batch) from probes. Build once per report, query many times.

    probes: ProbeResults; only status "ok" with peaks shape the curve; an "oom" probe under
      `memory_limit_bytes` raises every batch at or above it to more than that limit.
    min_bytes_per_sample: a known lower bound on the slope (e.g. input bytes per sample); it keeps a
      flat small-batch curve from promising that huge batches fit.
    graph_estimates: {batch_size: graph_estimate peak_bytes}; the slope between the two largest is
      taken as another lower bound on the per-sample slope.
    convex: past the largest probe, growth the last three probes show to be quadratic stays quadratic (a
      sequence length: attention scores grow with its square; analysis.lengths); the batch axis is linear.
    lower_bounds: sizes that ran squeezed against a limit (ProbeResults): the curve is never under what they
      reached plus the run margin, at their batch or above (below it, less the curve's growth over the
      distance), and their processes' spread (which squeezing only narrows) is in that margin; they do not shape
      the curve, since a squeezed peak is not what the step takes unlimited.
    recurrent: the spread between processes holds in bytes as well as a fraction: a recurrent step's modes
      differ by buffers that do not shrink with the batch (a bidirectional LSTM's processes: 10.4 MiB apart at
      batch 4, 12.3 at 32, 6.6-7.2 at 72-85), so at small batches the fraction measured at large ones is short.
    """

    def __init__(self, probes: Iterable[ProbeResult], *, min_bytes_per_sample: float = 0.0,
                 graph_estimates: dict[int, int] | None = None,
                 memory_limit_bytes: int | None = None, min_run_margin: float = MIN_RUN_MARGIN,
                 convex: bool = False, lower_bounds: Iterable[ProbeResult] = (), recurrent: bool = False):
        probes = list(probes)
        lower_bounds = [p for p in lower_bounds if p.status == "ok" and p.peak_bytes]
        self.lower_bounds = sorted((p.batch_size, int(p.peak_bytes)) for p in lower_bounds)
        if graph_estimates and len(graph_estimates) >= 2:
            # The liveness estimate misses fragmentation and scratch, so its slope is a lower bound.
            sizes = sorted(graph_estimates)
            graph_slope = (graph_estimates[sizes[-1]] - graph_estimates[sizes[-2]]) / (sizes[-1] - sizes[-2])
            min_bytes_per_sample = max(min_bytes_per_sample, graph_slope)
        points = sorted(
            (_Point(p.batch_size, int(p.peak_bytes if p.peak_bytes is not None else max(p.peak_bytes_runs)),
                    peak_spread(p), len(p.process_peaks) >= 2)
             for p in probes if p.status == "ok" and (p.peak_bytes is not None or p.peak_bytes_runs)),
            key=lambda point: point.batch_size)
        if not points:
            raise ValueError("no successful probe with a measured peak: nothing to predict from")
        merged: dict[int, _Point] = {}
        for point in points:   # the same batch probed twice: keep the higher peak, the wider spread
            old = merged.get(point.batch_size)
            merged[point.batch_size] = point if old is None else _Point(
                point.batch_size, max(old.peak_bytes, point.peak_bytes), max(old.spread, point.spread),
                old.across_processes or point.across_processes)
        self.points = [merged[b] for b in sorted(merged)]
        # Between fresh processes a step's peak moves with the process (its allocator's and thread pools' start):
        # that spread holds at every batch. Between the steps of one process it moves with how that batch's ops
        # were scheduled: that spread holds beside that batch only (the VAE's batch 32 peaked 13.5 to 16.1 MiB in
        # one process, 16 %, where its 639 peaked 201.4 MiB in both of two: 16 % everywhere read +15 % at 592).
        self.run_margin = max(min_run_margin, max((point.spread for point in self.points if point.across_processes),
                                                  default=0.0),
                              max((peak_spread(p) for p in lower_bounds if len(p.process_peaks) >= 2), default=0.0))
        self.mode_gap_bytes = max((max(p.process_peaks) - min(p.process_peaks)
                                   for p in [*probes, *lower_bounds] if p.status == "ok" and len(p.process_peaks) >= 2),
                                  default=0) if recurrent else 0
        self.envelope: list[int] = []
        running = 0
        for point in self.points:
            running = max(running, point.peak_bytes)
            self.envelope.append(running)
        # The bound never falls as the batch grows: the bound at each measured point, and at the upper end of the
        # segment below it, carried to every larger batch.
        self._bound_floor: list[float] = []
        carried = 0.0
        for index, point in enumerate(self.points):
            carried = max(carried, self.envelope[index] * (1 + self._point_margin(index)))
            if index:
                carried = max(carried, self.envelope[index] * (1 + self._segment_margin(index - 1)))
            self._bound_floor.append(carried)
        self.slope_bytes_per_sample, self.slope_method = self._extrapolation_slope(min_bytes_per_sample)
        self.curvature = self._curvature() if convex else 0.0
        oom_sizes = [p.batch_size for p in probes if p.status == "oom"]
        self.oom_batch_size = min(oom_sizes) if oom_sizes and memory_limit_bytes else None
        self.memory_limit_bytes = memory_limit_bytes

    # -- the curve --------------------------------------------------------------------------------

    def _extrapolation_slope(self, min_bytes_per_sample: float) -> tuple[float, str]:
        candidates = [(max(float(min_bytes_per_sample), 0.0), "per-sample lower bound")]
        sizes = [point.batch_size for point in self.points]
        # The steepest of the last two envelope segments: a probe that happened to run with less
        # fragmentation than usual would flatten the last segment alone (seen on the CNN: 3.6 vs 5.3
        # MiB/sample across fresh processes).
        for back in (1, 2):
            if len(sizes) > back:
                segment = (self.envelope[-back] - self.envelope[-back - 1]) / (sizes[-back] - sizes[-back - 1])
                candidates.append((segment, f"envelope segment batch {sizes[-back - 1]}-{sizes[-back]}"))
        slope, method = max(candidates, key=lambda item: item[0])
        return slope, method

    def _curvature(self) -> float:
        """Bytes per sample squared: the second divided difference of the last three envelope points
        (0 when they do not bend upward), with the slope at the last point raised to the quadratic's."""
        if len(self.points) < 3:
            return 0.0
        (x1, x2, x3), (y1, y2, y3) = [p.batch_size for p in self.points[-3:]], self.envelope[-3:]
        last_slope = (y3 - y2) / (x3 - x2)
        curvature = (last_slope - (y2 - y1) / (x2 - x1)) / (x3 - x1)
        if curvature <= 0:
            return 0.0
        tangent = last_slope + curvature * (x3 - x2)
        if tangent > self.slope_bytes_per_sample:
            self.slope_bytes_per_sample = tangent
            self.slope_method = f"the quadratic through the last three probes ({x1}, {x2}, {x3})"
        return curvature

    def _point_margin(self, index: int) -> float:
        return max(self.run_margin, self.points[index].spread)

    def _segment_margin(self, lower_index: int) -> float:
        """Between measured points `lower_index` and the next: the wider of their margins."""
        return max(self._point_margin(lower_index), self._point_margin(lower_index + 1))

    def _margin_and_floor(self, batch_size: int) -> tuple[float, float]:
        """(the run-to-run margin at `batch_size`: the spread everywhere, or the nearest measured points' own;
        the bound carried from the measured points at or below it)."""
        sizes = [point.batch_size for point in self.points]
        if batch_size <= sizes[0]:
            return self._point_margin(0), 0.0
        below = max(i for i, size in enumerate(sizes) if size <= batch_size)
        if sizes[below] == batch_size:
            return self._point_margin(below), self._bound_floor[below]
        if below == len(sizes) - 1:   # past the largest: the last segment's margin, as its slope
            margin = self._segment_margin(below - 1) if below else self._point_margin(below)
            return margin, self._bound_floor[below]
        return self._segment_margin(below), self._bound_floor[below]

    def _envelope_at(self, batch_size: int) -> tuple[float, str, int | None]:
        """(envelope bytes without margin, how, measured bytes if probed)."""
        sizes = [point.batch_size for point in self.points]
        if batch_size in sizes:
            index = sizes.index(batch_size)
            return (float(self.envelope[index]), "measured", self.points[index].peak_bytes)
        if batch_size < sizes[0]:
            return (float(self.envelope[0]), f"at most the peak of the smallest probe (batch {sizes[0]})", None)
        if batch_size > sizes[-1]:
            beyond = batch_size - sizes[-1]
            extra = self.slope_bytes_per_sample * beyond + self.curvature * beyond ** 2
            return (self.envelope[-1] + extra,
                    f"extrapolated from batch {sizes[-1]} at {format_bytes(self.slope_bytes_per_sample)}/sample "
                    f"({self.slope_method})"
                    + (f", growing with the square of the distance ({self.curvature:.0f} bytes/sample²)"
                       if self.curvature else ""), None)
        upper = next(i for i, b in enumerate(sizes) if b > batch_size)
        b0, b1 = sizes[upper - 1], sizes[upper]
        p0, p1 = self.envelope[upper - 1], self.envelope[upper]
        value = p0 + (p1 - p0) * (batch_size - b0) / (b1 - b0)
        how = f"interpolated on the upper envelope between batch {b0} and {b1}"
        if upper >= 2 and b1 >= FAR_APART_RATIO * b0:
            # A curve that bends down between two far points lies above their chord (the recommender's
            # optimizer slots over a 200,000-row table: 505 MiB at batch 32,768, its chord from 1,024 to
            # 99,000 said 325): the segment below, continued, bounds it, and the next point's peak caps that.
            # Between near points (round 1's doubling) the chord stands: MobileNetV2's 16 to 32 took 24 to
            # 331 MiB, its chord 333, where the segment from 8 continued said 364.
            below = sizes[upper - 2]
            continued = p0 + (p0 - self.envelope[upper - 2]) / (b0 - below) * (batch_size - b0)
            if continued > value:
                value = min(continued, float(p1))
                how = (f"between batch {b0} and {b1}: the segment from batch {below} continued, at most batch "
                       f"{b1}'s peak (the curve may bend down between them)")
        return (value, how, None)

    def predict_peak(self, batch_size: int) -> Prediction:
        """Upper bound of the step's peak at `batch_size`, with its margin and how it was obtained.

        The run-to-run margin applies to the whole figure; past the largest probe, the extrapolation
        margin applies to the extrapolated growth only (the measured part is not less certain there).
        """
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        value, how, measured = self._envelope_at(batch_size)
        largest = self.points[-1].batch_size
        extrapolation = 0.0
        if batch_size > largest:
            extrapolation = EXTRAPOLATION_MARGIN_PER_DOUBLING * math.log2(batch_size / largest)
        growth = max(value - self.envelope[-1], 0.0) if batch_size > largest else 0.0
        run_margin, floor = self._margin_and_floor(batch_size)
        peak = int(math.ceil(max(value * (1 + run_margin), floor) + growth * extrapolation))
        method = (f"{how} + {(peak / value - 1 if value else 0.0):.0%} margin (run-to-run spread {run_margin:.0%}"
                  + (f", {extrapolation:.0%} of the extrapolated growth" if extrapolation else "") + ")")
        if value + self.mode_gap_bytes > peak:
            peak = math.ceil(value + self.mode_gap_bytes)
            method += (f"; at least the {format_bytes(self.mode_gap_bytes)} a recurrent step's processes differed "
                       "by (its modes differ by buffers that do not shrink with the batch)")
        raised = self._squeezed_bound(batch_size)
        if raised is not None and raised[0] > peak:
            peak = raised[0]
            method += raised[1]
        margin = peak / value - 1 if value else 0.0
        if self.oom_batch_size is not None and batch_size >= self.oom_batch_size:
            peak = max(peak, int(self.memory_limit_bytes) + 1)
            method += f"; batch {self.oom_batch_size} ran out of memory under {format_bytes(self.memory_limit_bytes)}"
        return Prediction(batch_size, peak, "measured" if measured is not None else "predicted",
                          round(margin, 4), method, measured)

    def _squeezed_bound(self, batch_size: int) -> tuple[int, str] | None:
        """(bytes, how) the sizes that ran squeezed against a limit hold `batch_size` to, or None. Such a size
        reached at least its bound; the curve is never under that + the run margin:
        - at its batch or above;
        - within LOWER_BOUND_REACH below it, less the curve's growth per sample over the distance (the
          recommender's curve said 995 MiB at 109,043 under a squeezed 109,044; unlimited, 109,043 read 1023
          MiB in two processes of three);
        - down to the largest measured point below it, on the chord from that point's peak to its bound (each
          + the margin). Without the chord the bound ended at the reach, and the curve's recommended batch sat
          just past that end, where only the measured points' line spoke: the thirteenth zoo draw's
          recommender, 835 MiB at 107,752, 2.0 % under a squeezed 109,952 (950 MiB), where three unlimited
          processes read 948 to 974."""
        sizes = [point.batch_size for point in self.points]
        best: tuple[int, str] | None = None
        for size, bound in self.lower_bounds:
            top = bound * (1 + self.run_margin)
            candidates = []
            if batch_size >= size * (1 - LOWER_BOUND_REACH):
                candidates.append((math.ceil(top - self.slope_bytes_per_sample * max(0, size - batch_size)),
                                   f"; raised to the {format_bytes(bound)} batch {size} reached against a limit "
                                   f"+ {self.run_margin:.0%}" + (f", less {format_bytes(self.slope_bytes_per_sample)}"
                                                                 f"/sample below it" if size > batch_size else "")))
            below = max((i for i, point_size in enumerate(sizes) if point_size < size), default=None)
            if below is not None and sizes[below] <= batch_size < size:
                start = self.envelope[below] * (1 + self.run_margin)
                chord = start + (top - start) * (batch_size - sizes[below]) / (size - sizes[below])
                candidates.append((math.ceil(chord), f"; raised to the chord from batch {sizes[below]} to the "
                                                     f"{format_bytes(bound)} batch {size} reached against a limit, "
                                                     f"+ {self.run_margin:.0%}"))
            for candidate in candidates:
                if best is None or candidate[0] > best[0]:
                    best = candidate
        return best

    def curve(self, batch_sizes: Iterable[int] | None = None) -> list[dict[str, Any]]:
        """[{"batch_size", "peak_bytes", "source"}] for the report; probed sizes are always included."""
        sizes = sorted(set(batch_sizes or ()) | {point.batch_size for point in self.points})
        rows = []
        for size in sizes:
            prediction = self.predict_peak(size)
            row = {"batch_size": size, "peak_bytes": prediction.peak_bytes, "source": prediction.source}
            if prediction.measured_bytes is not None:
                row["measured_bytes"] = prediction.measured_bytes
            rows.append(row)
        return rows

    # -- decisions --------------------------------------------------------------------------------

    def max_batch_size(self, usable_bytes: int) -> int | None:
        """Largest batch whose upper-bound peak fits `usable_bytes`; None when not even batch 1 fits."""
        if self.predict_peak(1).peak_bytes > usable_bytes:
            return None
        low, high = 1, 2
        while high < MAX_SEARCH_BATCH and self.predict_peak(high).peak_bytes <= usable_bytes:
            low, high = high, high * 2
        if high >= MAX_SEARCH_BATCH and self.predict_peak(MAX_SEARCH_BATCH).peak_bytes <= usable_bytes:
            return MAX_SEARCH_BATCH
        while high - low > 1:   # the bound is nondecreasing in batch, so bisection is exact
            middle = (low + high) // 2
            if self.predict_peak(middle).peak_bytes <= usable_bytes:
                low = middle
            else:
                high = middle
        return low

    def recommended_batch_size(self, max_batch_size: int | None, usable_bytes: int,
                               headroom_fraction: float = RECOMMEND_FRACTION) -> int | None:
        """A friendly batch with headroom: the largest multiple of 8 (or power of two below 8) that is
        <= max_batch_size and whose upper bound is <= headroom_fraction of usable memory."""
        if not max_batch_size:
            return None
        allowed = headroom_fraction * usable_bytes

        def fits(size: int) -> bool:
            return self.predict_peak(size).peak_bytes <= allowed

        # The bound is nondecreasing in batch: bisect over multiples of 8, then fall back to 4, 2, 1.
        low, high = 0, max_batch_size // 8 + 1   # fits(8 * low) holds (or low == 0); fits(8 * high) fails
        while high - low > 1:
            middle = (low + high) // 2
            if fits(8 * middle):
                low = middle
            else:
                high = middle
        if low:
            return 8 * low
        return next((size for size in (4, 2, 1) if size <= max_batch_size and fits(size)), None)


def friendly_at_most(limit: int) -> int:
    """The largest multiple of 8 <= limit, or the largest power of two below 8."""
    if limit >= 8:
        return limit - limit % 8
    return 1 << (max(limit, 1).bit_length() - 1)


def next_probe_batch_sizes(planned_batch_size: int, probes: Sequence[ProbeResult] = (), *,
                           local_usable_bytes: int | None = None, target_usable_bytes: int | None = None,
                           max_new: int = 2) -> list[int]:
    """Which batch sizes the engine should measure next; [] when the picture is complete.

    Round 1 (no probes): the planned batch B and B/2, B/4, ascending, so an OOM at B still leaves two
    points. Later rounds: 2B when B fitted and 2B is predicted to fit locally (a point past the planned
    batch pins the slope), and the predicted max batch for the target when it fits this machine, so the
    number that decides the recommendation is measured rather than extrapolated.
    """
    planned = max(1, int(planned_batch_size))
    tried = {p.batch_size for p in probes}
    if not probes:
        return sorted({max(1, planned // 4), max(1, planned // 2), planned})
    ok = [p for p in probes if p.status == "ok"]
    if not ok:
        smallest = min(tried)
        return [] if smallest <= 1 else [max(1, smallest // 4)]
    model = PeakModel(probes)
    local_limit = local_usable_bytes if local_usable_bytes is not None else None
    wanted: list[int] = []

    def fits_locally(size: int) -> bool:
        return local_limit is None or model.predict_peak(size).peak_bytes <= local_limit

    if planned in {p.batch_size for p in ok} and 2 * planned not in tried and fits_locally(2 * planned):
        wanted.append(2 * planned)
    if target_usable_bytes is not None:
        best = model.max_batch_size(target_usable_bytes)
        if best and best not in tried and best > max(tried) and fits_locally(best):
            near = friendly_at_most(best)
            wanted.append(near if near not in tried else best)
    return sorted(set(wanted))[:max_new]


# -- projection to a target device ---------------------------------------------------------------

XLA_MEASURED_OVER_BUFFER_ASSIGNMENT = 1.25  # CNN bs32 on CPU: 547 MiB measured vs 444 MiB assigned


@dataclass(frozen=True)
class Projection:
    """The prediction carried to a target device, with every adjustment said in words."""

    target: str
    batch_size: int                  # per-replica batch
    peak_bytes: int                  # upper bound on the target
    usable_bytes: int
    fits: bool
    basis: str                       # where the starting number came from
    adjustments: list[str] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def per_replica_batch_size(global_batch_size: int, replicas: int) -> int:
    """tf.distribute splits the global batch evenly; the largest replica gets the ceiling."""
    if replicas < 1:
        raise ValueError(f"replicas must be >= 1, got {replicas}")
    return int(math.ceil(global_batch_size / replicas))


def project_to_target(prediction: Prediction, target: Target, measured_device_kind: str, *,
                      xla_total_bytes: int | None = None, jit_compile: bool | str = "auto",
                      replicas: int = 1) -> Projection:
    """Carry `prediction` (already at the per-replica batch, see `per_replica_batch_size`) from the device
    it was measured on to `target`.

    - Allocator: the CPU probe runs TF's BFC allocator (the GPU's code, chunk rounding included), so the
      figure carries over to a GPU unchanged; TPUs use XLA's own allocator, so BFC rounding only adds
      headroom there.
    - XLA: Keras 3 compiles the train step with XLA on GPU/TPU by default (`jit_compile="auto"`), and
      XLA's memory is a different regime (notes §3: 444-547 MiB under XLA vs 204 without). When
      `xla_total_bytes` (XLA's buffer assignment for the step, `graph_estimate.xla_buffer_total_bytes`)
      is given, the projection takes the larger of the two, the XLA figure scaled by the measured/assigned
      ratio seen on the CPU; otherwise it says the figure holds with `jit_compile=False`.
    - Replicas: under a tf.distribute strategy each device holds one replica at global batch / replicas.
    """
    adjustments: list[str] = []
    caveats: list[str] = []
    peak = prediction.peak_bytes
    basis = (f"{prediction.source} on {measured_device_kind} under the BFC allocator at per-replica batch "
             f"{prediction.batch_size}: {format_bytes(prediction.peak_bytes)} "
             f"(includes a {prediction.margin_fraction:.0%} margin)")
    if replicas > 1:
        adjustments.append(f"{replicas} replicas: batch {prediction.batch_size} per replica is what one "
                           f"{target.kind} holds (global batch / replicas)")
    measured_on_target_kind = measured_device_kind.upper() == target.kind
    if target.kind == "TPU" and not measured_on_target_kind:
        adjustments.append("allocator: XLA's TPU allocator does not round like BFC; the BFC figure is kept "
                           "as headroom")
    elif target.kind == "GPU" and measured_device_kind.upper() == "CPU":
        adjustments.append("allocator: the CPU probe used TF's BFC allocator, the same code the GPU uses; "
                           "figure carried over unchanged")
    uses_xla = jit_compile is True or (jit_compile == "auto" and target.xla_by_default)
    if uses_xla and not measured_on_target_kind:
        if xla_total_bytes:
            xla_peak = int(xla_total_bytes * XLA_MEASURED_OVER_BUFFER_ASSIGNMENT * (1 + prediction.margin_fraction))
            adjustments.append(
                f"XLA: the step runs under XLA on {target.name}; XLA's buffer assignment for it is "
                f"{format_bytes(xla_total_bytes)}, x{XLA_MEASURED_OVER_BUFFER_ASSIGNMENT} (measured/assigned "
                f"on the CPU) + margin = {format_bytes(xla_peak)}; the projection takes the larger figure")
            caveats.append("the XLA figure was compiled for the CPU backend and is unvalidated on a real "
                           f"{target.kind}; GPU fusion and scheduling differ")
            peak = max(peak, xla_peak)
        else:
            caveats.append(f"Keras compiles the train step with XLA on {target.kind} by default, and XLA's memory "
                           "can be 2x the non-XLA step; this figure holds with model.compile(jit_compile=False)")
    if target.kind == "GPU":
        caveats.append("not included: cuDNN convolution workspace chosen by autotuning on the GPU")
    return Projection(target.name, prediction.batch_size, int(peak), target.usable_bytes,
                      peak <= target.usable_bytes, basis, adjustments, caveats)
