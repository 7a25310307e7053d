"""Keep a running keras-tuner search on budget and alive.

Owns `SearchGuard` and `guard(tuner, ...)`. Installed on a tuner, the guard:
- predicts every configuration the oracle proposes from a shapes-only build (no weight memory, nothing
  placed on the device) and never lets one that does not fit reach a trial: it resamples instead, so
  keras-tuner's `max_consecutive_failed_trials` limit is never hit however big the space is (raising
  `FailedTrialError` would count toward that limit and end the search);
- between trials clears the Keras session, collects garbage, and records host RSS, warning with the
  numbers when RSS keeps growing trial after trial.
Everything it did is on the object: `skipped`, `rss_per_trial`, `warnings()`, `to_dict()`.

In keras-tuner's distributed mode (KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP, KERASTUNER_ORACLE_PORT) the
chief's oracle proposes and each worker runs trials (issue 25). Installed on a worker, the guard checks
every trial the chief hands it against the worker's own budget; one that does not fit is not run: it ends
FAILED (keras-tuner does not retry it, and the worker goes on to its next trial) with the reason put in its
hyperparameter values under `SKIP_REASON_KEY`, since a trial's message does not cross keras-tuner's gRPC
link. Installed on the chief, the guard resamples as on one machine (under the chief's budget, if any) and
turns that value back into the failed trial's message, recording the skip in `skipped`.
"""
from __future__ import annotations

import gc
import time
from typing import Any, Callable

from preflight.analysis.checks import sustained_growth
from preflight.common.units import format_bytes, parse_size

MiB = 1024**2
DEFAULT_RSS_GROWTH_WARN_BYTES = 24 * MiB   # per trial, sustained
DEFAULT_RSS_MIN_TRIALS = 3                 # consecutive growing trials before warning
DEFAULT_MAX_RESAMPLE = 100                 # proposals tried per trial before giving up
SKIP_REASON_KEY = "preflight/skipped"      # a worker's reason for a skipped trial, carried to the chief


class SearchGuard:
    def __init__(self, tuner: Any, budget_bytes: int | str | None, predictor: Any = None, *,
                 batch_size: int = 32, max_resample: int = DEFAULT_MAX_RESAMPLE,
                 rss_growth_warn_bytes: int = DEFAULT_RSS_GROWTH_WARN_BYTES,
                 rss_min_trials: int = DEFAULT_RSS_MIN_TRIALS, clear_between_trials: bool = True):
        from preflight.tuner.predict import FeatureCache, PeakPredictor

        self.tuner = tuner
        self.budget_bytes = None if budget_bytes is None else parse_size(budget_bytes)
        self.batch_size = int(batch_size)
        self.max_resample = int(max_resample)
        self.rss_growth_warn_bytes = int(rss_growth_warn_bytes)
        self.rss_min_trials = int(rss_min_trials)
        self.clear_between_trials = clear_between_trials
        if isinstance(predictor, dict):  # a check_search section, or a PeakPredictor.to_dict()
            predictor = PeakPredictor(**predictor.get("predictor", predictor))
        self.predictor: PeakPredictor | Callable[[dict[str, Any]], int] = predictor or PeakPredictor.prior()
        self._features = FeatureCache(tuner.hypermodel)
        self.skipped: list[dict[str, Any]] = []       # every proposal kept out of a trial, and why
        self.rss_per_trial: list[dict[str, Any]] = []
        self.trials: list[dict[str, Any]] = []          # what ran: values, predicted peak, status
        self.trials_seen = 0
        self.gave_up: list[str] = []
        self.rss_at_start: int | None = None
        self._originals: dict[str, Any] = {}
        self._install()

    # ------------------------------------------------------------ prediction
    def predicted_peak(self, values: dict[str, Any]) -> int | None:
        """Predicted peak bytes (with the predictor's margin) of one configuration; None if it cannot be built."""
        from preflight.tuner.predict import PeakPredictor, config_batch_size

        clean = {k: v for k, v in values.items() if not k.startswith(("tuner/", "preflight/"))}
        if not isinstance(self.predictor, PeakPredictor):
            return int(self.predictor(clean))
        try:
            features, active = self._features.get(clean)
        except Exception:  # noqa: BLE001 - the trial itself will report the user's build error
            return None
        return self.predictor.predict(features, config_batch_size(active, self.batch_size))

    def fits(self, values: dict[str, Any]) -> bool:
        if self.budget_bytes is None:
            return True
        peak = self.predicted_peak(values)
        return peak is None or peak <= self.budget_bytes

    def _skip(self, values: dict[str, Any], action: str) -> None:
        peak = self.predicted_peak(values)
        self.skipped.append({
            "values": {k: v for k, v in values.items() if not k.startswith("tuner/")},
            "predicted_peak_bytes": peak, "budget_bytes": self.budget_bytes, "action": action,
            "reason": f"predicted peak {format_bytes(peak)} > budget {format_bytes(self.budget_bytes)}",
        })

    # ------------------------------------------------------------ oracle hooks
    @property
    def role(self) -> str:
        """"worker" or "chief" of a distributed search, else "single"."""
        import os

        tuner_id = os.environ.get("KERASTUNER_TUNER_ID")
        if not (tuner_id and os.environ.get("KERASTUNER_ORACLE_IP") and os.environ.get("KERASTUNER_ORACLE_PORT")):
            return "single"
        return "chief" if "chief" in tuner_id else "worker"

    def _install(self) -> None:
        if self.role == "worker":
            self._install_on_worker()
            return
        oracle = self.tuner.oracle
        self._originals = {"_random_values": oracle._random_values, "populate_space": oracle.populate_space,
                           "on_trial_end": self.tuner.on_trial_end, "on_search_begin": self.tuner.on_search_begin,
                           "end_trial": oracle.end_trial}
        if self.role == "chief":
            oracle.end_trial = self._chief_end_trial
        oracle._random_values = self._random_values
        oracle.populate_space = self._populate_space
        self.tuner.on_trial_end = self._on_trial_end
        self.tuner.on_search_begin = self._on_search_begin

    def _install_on_worker(self) -> None:
        """The chief's oracle proposes (it is out of reach here): each trial is checked as it arrives."""
        self._originals = {"_try_run_and_update_trial": self.tuner._try_run_and_update_trial,
                           "on_trial_end": self.tuner.on_trial_end, "on_search_begin": self.tuner.on_search_begin}
        self.tuner._try_run_and_update_trial = self._run_or_skip
        self.tuner.on_trial_end = self._on_trial_end
        self.tuner.on_search_begin = self._on_search_begin

    def _run_or_skip(self, trial: Any, *fit_args: Any, **fit_kwargs: Any) -> None:
        values = trial.hyperparameters.values
        if self.fits(values):
            self._originals["_try_run_and_update_trial"](trial, *fit_args, **fit_kwargs)
            return
        worker = getattr(self.tuner, "tuner_id", None) or "worker"
        self._skip(values, f"skipped on {worker}")
        reason = f"{self.skipped[-1]['reason']} on {worker}"
        # FAILED, not INVALID: keras-tuner does not hand it out again, to this worker or another.
        trial.status = "FAILED"
        trial.message = reason
        values[SKIP_REASON_KEY] = reason

    def _chief_end_trial(self, trial: Any) -> None:
        """The chief's oracle ends a trial a worker reported: a skip's reason becomes the trial's message."""
        reason = trial.hyperparameters.values.pop(SKIP_REASON_KEY, None)
        if reason is not None:
            trial.message = reason
            self.skipped.append({"values": {k: v for k, v in trial.hyperparameters.values.items()
                                            if not k.startswith("tuner/")},
                                 "predicted_peak_bytes": None, "budget_bytes": None,
                                 "action": "skipped on a worker", "reason": reason})
        self._originals["end_trial"](trial)

    def remove(self) -> None:
        """Restore the tuner and oracle methods the guard wrapped."""
        oracle = self.tuner.oracle
        if self.role != "worker":
            for name in ("_random_values", "populate_space", "end_trial"):
                oracle.__dict__.pop(name, None)
        for name in ("on_trial_end", "on_search_begin", "_try_run_and_update_trial"):
            self.tuner.__dict__.pop(name, None)

    def _random_values(self) -> dict[str, Any] | None:
        """The oracle's random sampler, redrawn until a configuration fits (RandomSearch, Hyperband's
        new brackets, BayesianOptimization's initial points all draw here)."""
        original = self._originals["_random_values"]
        for _ in range(self.max_resample):
            values = original()
            if values is None or self.fits(values):
                return values
            self._skip(values, "resampled")
        self.gave_up.append(f"no configuration predicted to fit {format_bytes(self.budget_bytes)} "
                            f"in {self.max_resample} random draws; the oracle was told the space is exhausted")
        return None

    def _populate_space(self, trial_id: str) -> dict[str, Any]:
        """Proposals that do not come from the random sampler (a Bayesian optimum, a grid point) are
        checked here: replaced by a fitting random draw, else the search stops."""
        original = self._originals["populate_space"]
        response = original(trial_id)
        if response.get("status") != "RUNNING" or self.fits(response.get("values") or {}):
            return response
        if hasattr(self.tuner.oracle, "hyperband_iterations"):
            # Hyperband's later rounds resume trials that already ran, so they fit; nothing to redo.
            return response
        # Asking the oracle again for the same trial id corrupts GridSearch's ordering (it registers the
        # id twice: KeyError on the next trial), so a proposal that does not fit is replaced at once.
        self._skip(response["values"], "replaced by a random configuration that fits")
        values = self._random_values()
        if values is None:
            return {"status": "STOPPED", "values": None}
        return {"status": "RUNNING", "values": values}

    # ------------------------------------------------------------ between trials
    @staticmethod
    def _rss() -> int:
        import psutil

        return int(psutil.Process().memory_info().rss)

    def _on_search_begin(self) -> None:
        self.rss_at_start = self._rss()
        self._originals["on_search_begin"]()

    def _on_trial_end(self, trial: Any) -> None:
        self._originals["on_trial_end"](trial)
        self.trials_seen += 1
        if self.clear_between_trials:
            import keras

            keras.backend.clear_session()
            gc.collect()
        values = dict(getattr(getattr(trial, "hyperparameters", None), "values", {}) or {})
        predicted = self.predicted_peak(values) if self.budget_bytes is not None else None
        self.trials.append({
            "trial_id": getattr(trial, "trial_id", None), "status": str(getattr(trial, "status", "")),
            "values": {k: v for k, v in values.items() if not k.startswith("tuner/")},
            "peak_bytes": predicted, "peak_source": "predicted",
            "fits": None if predicted is None else predicted <= self.budget_bytes,
        })
        rss = self._rss()
        previous = self.rss_per_trial[-1]["rss_bytes"] if self.rss_per_trial else self.rss_at_start
        self.rss_per_trial.append({
            "trial_id": getattr(trial, "trial_id", None), "status": str(getattr(trial, "status", "")),
            "rss_bytes": rss, "growth_bytes": None if previous is None else rss - previous,
            "time": time.time(),
        })

    def rss_growth(self) -> dict[str, Any] | None:
        """The trailing run of trials over which RSS grew every time, with its mean growth per trial."""
        growth = sustained_growth([r["growth_bytes"] for r in self.rss_per_trial[1:]])  # trial 1 pays TF's warm-up
        if growth is None:
            return None
        return {"trials": growth["steps"], "mean_growth_bytes": growth["mean_growth_bytes"],
                "total_growth_bytes": growth["total_growth_bytes"]}

    def warnings(self) -> list[str]:
        messages = list(self.gave_up)
        growth = self.rss_growth()
        if growth and growth["trials"] >= self.rss_min_trials and growth["mean_growth_bytes"] > self.rss_growth_warn_bytes:
            first, last = self.rss_per_trial[0]["rss_bytes"], self.rss_per_trial[-1]["rss_bytes"]
            messages.append(
                f"host RSS grew in each of the last {growth['trials']} trials, by "
                f"{format_bytes(growth['mean_growth_bytes'])} per trial on average "
                f"({format_bytes(first)} after trial 1 -> {format_bytes(last)} after trial "
                f"{len(self.rss_per_trial)}), even after clear_session and gc: something outlives its "
                f"trial (a module-level list, a cache, a callback holding models); at this rate "
                f"{format_bytes(growth['mean_growth_bytes'] * 100)} more over 100 trials"
            )
        return messages

    def to_dict(self) -> dict[str, Any]:
        """The guard's record for the report's "search" section."""
        return {
            "budget_bytes": self.budget_bytes, "batch_size": self.batch_size, "role": self.role,
            "trials_seen": self.trials_seen, "trials": list(self.trials), "skipped": list(self.skipped), "skipped_count": len(self.skipped),
            "rss_at_start_bytes": self.rss_at_start, "rss_per_trial": list(self.rss_per_trial),
            "rss_growth": self.rss_growth(), "warnings": self.warnings(),
            "static_builds": self._features.builds,
            "static_build_seconds": round(self._features.build_seconds, 3),
        }


def guard(tuner: Any, budget_bytes: int | str | None = None, predictor: Any = None, *,
          batch_size: int = 32, target: str | None = None, **options: Any) -> SearchGuard:
    """Install a `SearchGuard` on `tuner` and return it; then call `tuner.search(...)` as usual.

    `target`: a device name (`preflight.analysis.devices`) whose usable memory is the budget.
    `predictor`: a `PeakPredictor`, the dict `check_search` returned (its fitted predictor is used),
    or a callable values -> peak bytes. Without one, a conservative prior (weights + gradients +
    optimizer slots + 2x activations, +50 %) is used.
    """
    if budget_bytes is None and target is not None:
        from preflight.analysis.devices import get_target

        budget_bytes = get_target(target).usable_bytes
    if budget_bytes is None and isinstance(predictor, dict) and predictor.get("budget_bytes"):
        budget_bytes = predictor["budget_bytes"]
    if isinstance(predictor, dict) and "batch_size" in predictor and batch_size == 32:
        batch_size = int(predictor["batch_size"])
    return SearchGuard(tuner, budget_bytes, predictor, batch_size=batch_size, **options)
