"""Predict the training-step peak of any configuration of a search space from a few measured ones.

Owns `PeakPredictor` (peak ~ a*state_bytes + b*batch_bytes + d*largest_weight_bytes + c, fitted
with non-negative least squares on relative error over measured configurations, plus a stated safety
margin: the worst under-prediction seen + 10 %), `worst_case_values`, and
`analyse_space`: worst case, fraction of the space that fits, the hyperparameters that drive memory,
and per-hyperparameter bounds. Static features come from shapes-only builds (`features`), so
hundreds of configurations cost seconds; only a handful are trained for real (`measure`).
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from preflight.tuner.features import StaticFeatures, static_features
from preflight.tuner.space import HyperparameterInfo, as_hypermodel, build_and_values, sample_values

# With no measurement yet: weights+grads+slots once, activations twice (forward + their gradients),
# and two temporaries the size of the largest weight inside the optimizer update (notes §1: the MLP's
# peak sits in Adam's update of its biggest kernel).
PRIOR = (1.0, 2.0, 2.0, 0.0)
EXTRA_MARGIN = 0.10
DRIVER_MIN_EFFECT = 0.01  # hps that move the worst case's peak by less than 1 % get no bounds  # added to the worst relative under-prediction seen on the measured configurations


def _nnls(rows: list[tuple[float, ...]], targets: list[float]) -> tuple[float, ...]:
    """Least squares on relative error with every coefficient >= 0, by trying each active set
    (4 unknowns: 15 sets). Relative, so a 2 GiB configuration does not drown a 100 MiB one."""
    import numpy as np

    weights = 1.0 / np.maximum(np.asarray(targets, dtype=float), 1.0)
    a = np.asarray(rows, dtype=float) * weights[:, None]
    b = np.asarray(targets, dtype=float) * weights
    best: tuple[float, tuple[float, ...]] | None = None
    n = a.shape[1]
    for k in range(1, n + 1):
        for cols in itertools.combinations(range(n), k):
            # scale columns so bytes-sized features do not swamp the intercept column
            sub = a[:, cols]
            scale = np.maximum(np.abs(sub).max(axis=0), 1.0)
            coef, *_ = np.linalg.lstsq(sub / scale, b, rcond=None)
            coef = coef / scale
            if (coef < 0).any():
                continue
            full = np.zeros(n)
            full[list(cols)] = coef
            err = float(((a @ full - b) ** 2).sum())
            if best is None or err < best[0]:
                best = (err, tuple(float(c) for c in full))
    return best[1] if best else PRIOR


@dataclass(frozen=True)
class PeakPredictor:
    coef_state: float          # per byte of weights + gradients + optimizer slots
    coef_batch: float          # per byte of (activations + inputs) x batch
    coef_largest: float        # per byte of the largest trainable variable
    intercept_bytes: float
    margin: float              # relative safety margin applied by `predict`
    fitted_on: int = 0         # measured configurations behind the fit (0: the prior)
    max_relative_residual: float = 0.0

    def predict_raw(self, features: StaticFeatures, batch_size: int) -> int:
        return int(self.coef_state * features.state_bytes + self.coef_batch * features.batch_bytes(batch_size)
                   + self.coef_largest * features.largest_weight_bytes + self.intercept_bytes)

    def predict(self, features: StaticFeatures, batch_size: int) -> int:
        """Predicted peak with the safety margin: what fit verdicts use."""
        return int(self.predict_raw(features, batch_size) * (1.0 + self.margin))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def prior(cls) -> "PeakPredictor":
        return cls(*PRIOR, margin=0.5, fitted_on=0)

    @classmethod
    def fit(cls, points: list[tuple[StaticFeatures, int, int]]) -> "PeakPredictor":
        """Fit on (features, batch_size, measured peak bytes). With fewer points than unknowns (4), only
        one factor is fitted: the prior's shape scaled by the mean measured/prior ratio."""
        if not points:
            return cls.prior()
        if len(points) < 4:
            prior = cls(*PRIOR, margin=0.0)
            ratios = [peak / max(1, prior.predict_raw(f, bs)) for f, bs, peak in points]
            scale = sum(ratios) / len(ratios)
            coef = (PRIOR[0] * scale, PRIOR[1] * scale, PRIOR[2] * scale, 0.0)
        else:
            coef = _nnls([(f.state_bytes, f.batch_bytes(bs), f.largest_weight_bytes, 1.0) for f, bs, _ in points],
                         [float(peak) for _, _, peak in points])
        unfitted = cls(*coef, margin=0.0)
        under = [peak / max(1, unfitted.predict_raw(f, bs)) - 1.0 for f, bs, peak in points]
        worst_under = max(0.0, max(under))
        return cls(*coef, margin=worst_under + EXTRA_MARGIN, fitted_on=len(points),
                   max_relative_residual=max(abs(u) for u in under))


# ---------------------------------------------------------------- static features, cached
class FeatureCache:
    """Shapes-only builds of configurations, keyed by their active values."""

    def __init__(self, hypermodel: Any):
        self.hypermodel = as_hypermodel(hypermodel)
        self._by_values: dict[str, tuple[StaticFeatures, dict[str, Any]]] = {}
        self.builds = 0
        self.build_seconds = 0.0

    def get(self, values: dict[str, Any]) -> tuple[StaticFeatures, dict[str, Any]]:
        """(features, active values). Raises what the user's build raises."""
        import keras

        key = repr(sorted((k, repr(v)) for k, v in values.items()))
        if key not in self._by_values:
            start = time.perf_counter()
            model, active = build_and_values(self.hypermodel, values, allocate=False)
            features = static_features(model)
            del model
            keras.backend.clear_session(free_memory=False)
            self.builds += 1
            self.build_seconds += time.perf_counter() - start
            self._by_values[key] = (features, active)
        return self._by_values[key]


def config_batch_size(values: dict[str, Any], batch_size: int) -> int:
    """A `batch_size` hyperparameter overrides the planned batch size."""
    return int(values.get("batch_size", batch_size))


# ---------------------------------------------------------------- worst case
def _grid(info: HyperparameterInfo, limit: int = 64) -> list[Any]:
    """Values of one hp in increasing memory order where that is knowable (at most `limit`)."""
    if info.type == "Int":
        top = info.max_grid_value
        step = info.step or 1
        if info.sampling in (None, "linear"):
            values = list(range(int(info.min_value), int(top) + 1, int(step)))
        else:
            values, v = [], int(info.min_value)
            while v <= top:
                values.append(v)
                v = v * max(2, int(step)) if step and step > 1 else v * 2
        if len(values) > limit:
            idx = sorted({round(i * (len(values) - 1) / (limit - 1)) for i in range(limit)})
            values = [values[i] for i in idx]
        return values
    if info.type == "Float":
        lo, hi = float(info.min_value), float(info.max_value)
        if info.sampling == "log" and lo > 0:
            return [lo * (hi / lo) ** (i / 8) for i in range(9)]
        return [lo + (hi - lo) * i / 8 for i in range(9)]
    if info.type == "Boolean":
        return [False, True]
    if info.type == "Fixed":
        return list(info.values)
    values = list(info.values)
    return sorted(values) if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) else values


def worst_case_values(space: list[HyperparameterInfo], hypermodel: Any, *, batch_size: int = 32,
                      predictor: PeakPredictor | None = None,
                      cache: FeatureCache | None = None) -> dict[str, Any]:
    """The configuration with the largest predicted peak: Ints and Floats at max, Booleans True, and over
    the Choices a coordinate ascent (each Choice tried at each value, others fixed, until nothing grows),
    which finds the product's maximum for the usual monotone spaces without building the whole product.
    Returns only the active values of that configuration.
    """
    predictor = predictor or PeakPredictor.prior()
    cache = cache or FeatureCache(hypermodel)
    values: dict[str, Any] = {}
    for info in space:
        values[info.name] = info.default if info.type == "Choice" else (
            info.max_value if info.type == "Float" else info.max_grid_value)

    def cost(candidate: dict[str, Any]) -> int:
        features, _ = cache.get(candidate)
        return predictor.predict_raw(features, config_batch_size(candidate, batch_size))

    best = cost(values)
    for _ in range(3):
        improved = False
        for info in space:
            if info.type != "Choice":
                continue
            for option in info.values:
                if option == values[info.name]:
                    continue
                candidate = dict(values, **{info.name: option})
                try:
                    candidate_cost = cost(candidate)
                except Exception:  # noqa: BLE001 - an invalid combination is not the worst case
                    continue
                if candidate_cost > best:
                    best, values, improved = candidate_cost, candidate, True
        if not improved:
            break
    return cache.get(values)[1]


# ---------------------------------------------------------------- analysis
@dataclass
class SpaceAnalysis:
    space: list[HyperparameterInfo]
    batch_size: int
    budget_bytes: int | None
    predictor: PeakPredictor
    worst_case: dict[str, Any]
    fits_fraction: float | None
    samples: list[dict[str, Any]]
    drivers: list[dict[str, Any]]
    bounds: dict[str, Any]
    measurements: list[dict[str, Any]]
    validation: list[dict[str, Any]] = field(default_factory=list)
    step_seconds: float | None = None   # median measured step, scaled to the planned batch where known
    timings: dict[str, float] = field(default_factory=dict)


def _choose_configs_to_measure(candidates: list[tuple[dict[str, Any], StaticFeatures, int]],
                               count: int, cap_bytes: int) -> list[int]:
    """Indices of up to `count` candidates spread over the prior-estimated peak range, all under the cap."""
    if count <= 0:
        return []
    prior = PeakPredictor.prior()
    ranked = sorted(
        (prior.predict_raw(f, bs), i) for i, (_, f, bs) in enumerate(candidates) if prior.predict_raw(f, bs) <= cap_bytes
    )
    if not ranked:
        return []
    if len(ranked) <= count:
        return [i for _, i in ranked]
    picks = {ranked[round(k * (len(ranked) - 1) / (count - 1))][1] for k in range(count)} if count > 1 else {ranked[-1][1]}
    return sorted(picks)


def _drivers(space: list[HyperparameterInfo], samples: list[dict[str, Any]], worst: dict[str, Any],
             cost: Callable[[dict[str, Any]], int | None]) -> list[dict[str, Any]]:
    """How much each hp moves the peak: with every other hp at its worst case, the spread of the
    predicted peak over the hp's values, relative to the worst case's peak (deterministic: a
    learning rate moves nothing, a depth moves a lot). `correlation` is over the random sample."""
    worst_peak = cost(worst) or 1
    drivers = []
    for info in space:
        if info.type == "Fixed":
            continue
        grid = _grid(info, limit=64)
        probes = [grid[0], grid[-1]] if info.type in ("Int", "Float") else grid
        peaks = [p for p in (cost({**worst, info.name: value}) for value in probes) if p is not None]
        if len(peaks) < 2:
            continue
        effect = (max(peaks) - min(peaks)) / worst_peak
        pairs = [(s["values"][info.name], s["predicted_peak_bytes"]) for s in samples if info.name in s["values"]]
        numeric = pairs and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v, _ in pairs)
        correlation = (_correlation([float(v) for v, _ in pairs], [float(p) for _, p in pairs])
                       if numeric and len(pairs) > 2 else None)
        drivers.append({"name": info.name, "effect": round(effect, 4),
                        "correlation": None if correlation is None else round(correlation, 4),
                        "active_in": round(len(pairs) / len(samples), 3) if samples else None})
    return sorted(drivers, key=lambda d: -d["effect"])


def _correlation(xs: list[float], ys: list[float]) -> float | None:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sx = math.sqrt(sum((x - mx) ** 2 for x in xs))
    sy = math.sqrt(sum((y - my) ** 2 for y in ys))
    if sx == 0 or sy == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / (sx * sy)


def _largest_fitting(grid: list[Any], fits: Callable[[Any], bool | None]) -> tuple[Any, int]:
    """Binary search for the largest grid value that fits, assuming memory grows along the grid.
    Returns (value or None, probes used)."""
    lo, hi, best, probes = 0, len(grid) - 1, None, 0
    while lo <= hi:
        mid = (lo + hi) // 2
        probes += 1
        verdict = fits(grid[mid])
        if verdict:
            best, lo = grid[mid], mid + 1
        else:
            hi = mid - 1
    return best, probes


def analyse_space(hypermodel_or_tuner: Any, *, space: list[HyperparameterInfo] | None = None,
                  batch_size: int = 32, budget_bytes: int | None = None, data: Any = None,
                  n_samples: int = 200, sample_seconds: float = 60.0, n_measure: int = 5,
                  n_validate: int = 0, measure_cap_bytes: int | None = None,
                  measure: Callable[..., list[Any]] | None = None, bounds_for: int = 4,
                  seed: int = 0) -> SpaceAnalysis:
    """Measure a few configurations, fit the predictor, and analyse the whole space against the budget.

    `measure(hypermodel, configs, batch_size, data)` returns objects with `.values`, `.status`,
    `.peak_bytes`, `.step_seconds` (default: `measure.measure_configs`, a BFC child). `n_validate`
    extra measured configurations are kept out of the fit and reported as predicted vs measured.
    """
    from preflight.tuner.space import enumerate_space

    timings: dict[str, float] = {}
    start = time.perf_counter()
    hypermodel = as_hypermodel(hypermodel_or_tuner)
    space = space if space is not None else enumerate_space(hypermodel)
    cache = FeatureCache(hypermodel)
    timings["enumerate_seconds"] = time.perf_counter() - start

    # 1. sample the space (static features only, bounded by time)
    start = time.perf_counter()
    sampled: list[tuple[dict[str, Any], StaticFeatures, int]] = []
    errors = 0
    for values in sample_values(space, n_samples, seed):
        if time.perf_counter() - start > sample_seconds:
            break
        try:
            features, active = cache.get(values)
        except Exception:  # noqa: BLE001 - a config the user's build rejects is no memory data point
            errors += 1
            continue
        sampled.append((active, features, config_batch_size(active, batch_size)))
    timings["sample_seconds"] = time.perf_counter() - start

    # 2. measure a few, spread over the range that is safe to run here
    if measure_cap_bytes is None:
        import psutil

        available = int(psutil.virtual_memory().available * 0.25)
        measure_cap_bytes = min(available, 2 * budget_bytes) if budget_bytes else available
    worst_prior = worst_case_values(space, hypermodel, batch_size=batch_size, cache=cache)
    worst_features, _ = cache.get(worst_prior)
    candidates = sampled + [(worst_prior, worst_features, config_batch_size(worst_prior, batch_size))]
    minimal = {info.name: (info.min_value if info.type in ("Int", "Float") else
                           (False if info.type == "Boolean" else info.default)) for info in space}
    try:
        min_features, min_active = cache.get(minimal)
        candidates.append((min_active, min_features, config_batch_size(min_active, batch_size)))
    except Exception:  # noqa: BLE001
        pass
    chosen = _choose_configs_to_measure(candidates, n_measure + n_validate, measure_cap_bytes)
    # hold out every other config from the middle of the range, so the fit still spans the extremes
    validate_idx = set(chosen[1:-1][::2][:n_validate]) if n_validate else set()
    if measure is None:
        from preflight.tuner.measure import measure_configs as measure
    start = time.perf_counter()
    results = measure(hypermodel, [candidates[i][0] for i in chosen], batch_size, data) if chosen else []
    timings["measure_seconds"] = time.perf_counter() - start
    fit_points, measured_rows, held_out, step_times = [], [], [], []
    for i, result in zip(chosen, results):
        _, features, bs = candidates[i]
        row = {"values": result.values, "batch_size": bs, "status": result.status,
               "peak_bytes": result.peak_bytes, "step_seconds": result.step_seconds,
               "warmup_seconds": getattr(result, "warmup_seconds", None),
               "predicted_peak_bytes": None,
               "used_in_fit": i not in validate_idx, "message": getattr(result, "message", ""),
               "fix": getattr(result, "fix", ""), "source": getattr(result, "source", "")}
        if "measured_by" in getattr(result, "extra", {}):  # shared out over keras-tuner's processes
            row["measured_by"] = result.extra["measured_by"]
        measured_rows.append(row)
        if result.status != "ok" or not result.peak_bytes:
            continue
        if i in validate_idx:
            held_out.append((row, features, bs))
        else:
            fit_points.append((features, bs, int(result.peak_bytes)))
        if result.step_seconds:
            step_times.append((result.step_seconds, features, bs))
    predictor = PeakPredictor.fit(fit_points)
    for row, i in zip(measured_rows, chosen):
        _, features, bs = candidates[i]
        row["predicted_peak_bytes"] = predictor.predict(features, bs)
    validation = [{"values": row["values"], "batch_size": bs, "measured_peak_bytes": row["peak_bytes"],
                   "predicted_peak_bytes": predictor.predict(features, bs),
                   "predicted_raw_bytes": predictor.predict_raw(features, bs),
                   "relative_error_raw": round(predictor.predict_raw(features, bs) / row["peak_bytes"] - 1, 4)}
                  for row, features, bs in held_out]

    # 3. worst case again with the fitted predictor, and verdicts over the sample. With nothing measured
    # the predictor is the shapes-only prior: its figures are shown, but no fit verdict rests on them.
    verdicts = budget_bytes is not None and predictor.fitted_on > 0
    worst = worst_case_values(space, hypermodel, batch_size=batch_size, predictor=predictor, cache=cache)
    worst_features, _ = cache.get(worst)
    worst_bs = config_batch_size(worst, batch_size)
    worst_measured = next((r["peak_bytes"] for r in measured_rows
                           if r["status"] == "ok" and r["values"] == worst), None)
    # Every configuration is at most the worst case, so once that was measured no prediction needs
    # to exceed it by more than the measurement's own allowance.
    ceiling = int(worst_measured * (1 + EXTRA_MARGIN)) if worst_measured else None
    samples = []
    for active, features, bs in sampled:
        predicted = predictor.predict(features, bs)
        if ceiling is not None:
            predicted = min(predicted, ceiling)
        samples.append({"values": active, "batch_size": bs, "predicted_peak_bytes": predicted,
                        "peak_bytes": predicted, "peak_source": "predicted", "param_bytes": features.param_bytes,
                        "fits": predicted <= budget_bytes if verdicts else None})
    fits_fraction = (sum(1 for s in samples if s["fits"]) / len(samples)) if samples and verdicts else None

    # 4. drivers and bounds
    start = time.perf_counter()
    def cost(values: dict[str, Any]) -> int | None:
        try:
            features, _ = cache.get(values)
        except Exception:  # noqa: BLE001 - a combination the build rejects
            return None
        return predictor.predict(features, config_batch_size(values, batch_size))

    drivers = _drivers(space, samples, worst, cost)
    bounds: dict[str, Any] = {}
    if verdicts:
        moving = [d for d in drivers if d["effect"] >= DRIVER_MIN_EFFECT]
        bounds = _bounds(space, moving[:bounds_for], moving, worst, cache, predictor, batch_size, budget_bytes)
    timings["bounds_seconds"] = time.perf_counter() - start

    step_seconds = _step_seconds_at(step_times, predictor, batch_size)
    return SpaceAnalysis(
        space=space, batch_size=batch_size, budget_bytes=budget_bytes, predictor=predictor,
        worst_case={"values": worst, "batch_size": worst_bs,
                    "predicted_peak_bytes": predictor.predict(worst_features, worst_bs),
                    "measured_peak_bytes": worst_measured,
                    "peak_bytes": worst_measured or predictor.predict(worst_features, worst_bs),
                    "peak_source": ("measured" if worst_measured else
                                    "predicted" if predictor.fitted_on else "shapes"),
                    "margin": predictor.margin,
                    "params_total": worst_features.params_total,
                    "features": worst_features.to_dict(),
                    "fits": (worst_measured or predictor.predict(worst_features, worst_bs)) <= budget_bytes
                    if verdicts else None},
        fits_fraction=fits_fraction, samples=samples, drivers=drivers, bounds=bounds,
        measurements=measured_rows, validation=validation, step_seconds=step_seconds,
        timings={**timings, "static_builds": cache.builds, "static_build_seconds": round(cache.build_seconds, 3),
                 "sample_build_errors": errors},
    )


def _step_seconds_at(step_times: list[tuple[float, StaticFeatures, int]], predictor: PeakPredictor,
                     batch_size: int) -> float | None:
    """The median measured step time: a typical configuration's, not the worst's."""
    if not step_times:
        return None
    ordered = sorted(seconds for seconds, _, _ in step_times)
    return ordered[len(ordered) // 2]


def _all_numeric_values(values: Any) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _bounds(space: list[HyperparameterInfo], drivers: list[dict[str, Any]], moving: list[dict[str, Any]],
            worst: dict[str, Any],
            cache: FeatureCache, predictor: PeakPredictor, batch_size: int, budget_bytes: int) -> dict[str, Any]:
    """For each driving hp: the largest value that fits with the others at worst case, and with the
    others at their smallest; then one joint frontier (every driver at the same grid fraction)."""
    by_name = {info.name: info for info in space}
    smallest = {info.name: _grid(info)[0] for info in space}

    def fits(values: dict[str, Any]) -> bool | None:
        try:
            features, _ = cache.get(values)
        except Exception:  # noqa: BLE001
            return None
        return predictor.predict(features, config_batch_size(values, batch_size)) <= budget_bytes

    bounds: dict[str, Any] = {}
    for driver in drivers:
        info = by_name[driver["name"]]
        if info.type == "Choice" and not _all_numeric_values(info.values):
            continue  # an unordered Choice has no "largest value"
        grid = _grid(info, limit=32)
        at_worst, _ = _largest_fitting(grid, lambda v: fits({**worst, info.name: v}))
        alone, _ = _largest_fitting(grid, lambda v: fits({**smallest, info.name: v}))
        bounds[info.name] = {"max_fitting_with_others_at_worst": at_worst,
                             "max_fitting_with_others_smallest": alone,
                             "max_value": grid[-1]}
    # the joint frontier moves every numeric hp that moves memory together, so a num_layers loop's
    # units_i all shrink with num_layers
    moving_names = {d["name"] for d in moving}
    numeric = [info for info in space if info.name in moving_names and (
               info.type in ("Int", "Float")
               or (info.type == "Choice" and _all_numeric_values(info.values) and len(info.values) > 1))]
    if numeric:
        grids = {info.name: _grid(info, limit=32) for info in numeric}

        def at_fraction(fraction: float) -> dict[str, Any]:
            values = dict(worst)
            for name, grid in grids.items():
                values[name] = grid[min(len(grid) - 1, int(fraction * (len(grid) - 1) + 1e-9))]
            return values

        fractions = [i / 32 for i in range(33)]
        best, _ = _largest_fitting(fractions, lambda f: fits(at_fraction(f)))
        if best is not None:
            frontier = {name: at_fraction(best)[name] for name in grids}
            bounds["_together"] = {"values": frontier, "others": "at worst case",
                                   "grid_fraction": best}
    return bounds
