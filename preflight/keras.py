"""`preflight.keras.MemoryCallback`: add it to `model.fit(..., callbacks=[...])` (or a tuner's `search`) and
the real run tells what it used, warns before trouble, and leaves a record in the calibration store.

    from preflight.keras import MemoryCallback
    model.fit(x, y, batch_size=64, epochs=10, callbacks=[MemoryCallback(budget="15GiB", time_limit="12h")])

What it reads (preflight.engine.run_sampler): the device allocator's peak where the backend keeps one, host
RSS beside it; at the first steps (step 0, tracing and optimizer slots, then `first_steps` steps, each with
the peak reset before it, as preflight's own probes measure) and at each epoch's end (the epoch's peak, the
memory still held, RSS). Only `on_train_batch_begin` is overridden among the batch hooks and it returns at
once after the first steps, so Keras keeps its asynchronous batch-end dispatch (an `on_train_batch_end`
would turn it off); benchmarks/callback_cost.py measures what is left.

During training (preflight.analysis.run_watch) it warns, once each, with `preflight.errors.RunWarning`:
memory within 5 % of the limit, host RSS or the device memory held between epochs growing epoch after epoch,
a run that would overrun `time_limit`. After training it appends a "run" record to the calibration store
(preflight.analysis.calibration_store) and, when preflight checked the same model (by fingerprint) before, prints the
prediction next to the truth.
"""
from __future__ import annotations

import datetime as _dt
import os
import statistics
import sys
import time
import warnings
from typing import Any

import keras

from preflight.errors import RunWarning

FIRST_STEPS = 3


class MemoryCallback(keras.callbacks.Callback):
    """budget: the memory the run may use ('15GiB' or bytes); target: a device from `python -m preflight
    targets` (its usable memory is the limit); neither: the device's memory where the backend says (a CPU
    run: host RSS against the host's memory). time_limit: '12h', 'colab' or seconds. store: the calibration
    store (None: PREFLIGHT_CALIBRATION, else ~/.cache/preflight/calibration.jsonl; 'none': no record).
    report: a preflight JSON report of this model, compared with the run besides the store's checks.
    batch_size: the run's batch, when it cannot be read from the model's loss tracker (a custom train_step).
    verbose: print the comparison (or where the record went) after training.
    After training: `record` (the dict written) and `comparison` (the line printed, or None)."""

    def __init__(self, budget: str | int | None = None, target: str | None = None,
                 time_limit: str | float | None = None, store: str | os.PathLike | None = None,
                 report: str | os.PathLike | None = None, batch_size: int | None = None,
                 first_steps: int = FIRST_STEPS, verbose: bool = True):
        super().__init__()
        from preflight.analysis.devices import get_target
        from preflight.common.units import parse_duration, parse_size

        self._limit: tuple[int, str] | None = None
        if budget is not None:
            limit = parse_size(budget)
            self._limit = (limit, "the budget")
        elif target is not None:
            device = get_target(target)
            self._limit = (device.usable_bytes, f"{device.name}'s usable memory")
        self.target = target
        self.time_limit = parse_duration(time_limit) if time_limit is not None else None
        self.store = store
        self.report = report
        self.batch_size = batch_size
        self.first_steps = max(1, int(first_steps))
        self.verbose = verbose
        self.record: dict[str, Any] | None = None
        self.comparison: str | None = None

    # -- hooks -------------------------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        from preflight.engine.run_sampler import RunSampler

        self._sampler = RunSampler(keras.backend.backend())
        self._sampler.measure_steps(self.model, self.first_steps + 1)  # JAX, PyTorch on a CPU: step 0 and the first steps
        self._warned: set[str] = set()
        self._step = 0
        self._window_open = False
        self._step_started = 0.0
        self._steps: list[dict[str, Any]] = []
        self._epochs: list[dict[str, Any]] = []
        self._fingerprint = self._model_fingerprint()
        self._rss_start = self._sampler.rss()
        self._resident_start = self._sampler.reset()
        self._train_started = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_started = time.perf_counter()
        self._epoch_first_step = self._step

    def on_train_batch_begin(self, batch, logs=None):
        step = self._step
        self._step += 1
        if step > self.first_steps + 1:
            return  # past the first steps: nothing per step, so a step costs what it costs without us
        now = time.perf_counter()
        if self._window_open:
            self._close_step(now)
        if step == 1 and self.batch_size is None:
            self.batch_size = _batch_size_from_loss_tracker(self.model)
        if step <= self.first_steps:
            self._step_resident = self._sampler.reset()
            self._window_open = True
            self._step_started = time.perf_counter()
        elif step == self.first_steps + 1:
            self._check_time(steps_done=step)
            self._check_limit(self._first_steps_peak(), "the device peak")

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        if self._window_open:
            self._close_step(now)
        sampler = self._sampler
        peak = sampler.take_running_peak()
        resident = sampler.reset()
        steps = self._step - self._epoch_first_step
        self._epochs.append({"epoch": int(epoch), "seconds": round(now - self._epoch_started, 4), "steps": steps,
                             "peak_bytes": peak, "device_resident_bytes": resident, "rss_bytes": sampler.rss()})
        self._watch_epochs()

    def on_train_end(self, logs=None):
        if not hasattr(self, "_sampler"):
            return
        if self._window_open:
            self._close_step(time.perf_counter())
        self._sampler.stop_measuring()
        self.record = self._run_record()
        from preflight.analysis.calibration_store import append_record, read_records
        from preflight.common.units import format_bytes

        written = append_record(self.record, self.store)
        self.comparison = self._compare(read_records(self.store))
        if not self.verbose:
            return
        peak = self.record["peak_bytes"]
        summary = self.comparison or (f"the run peaked at {format_bytes(peak)}" if peak
                                      else f"no device peak: {self.record['peak_note']}")
        where = f"; recorded in {written}" if written else ""
        print(f"preflight: {summary}{where}", file=sys.stdout)

    # -- measuring ---------------------------------------------------------------------------------

    def _close_step(self, now: float) -> None:
        index = len(self._steps)
        self._steps.append({"step": index, "seconds": round(now - self._step_started, 6),
                            "peak_bytes": self._sampler.window_peak(), "resident_bytes": self._step_resident,
                            "rss_bytes": self._sampler.rss()})
        self._window_open = False

    def _first_steps_peak(self) -> int | None:
        peaks = [s["peak_bytes"] for s in self._steps[1:] if s["peak_bytes"] is not None]
        return max(peaks) if peaks else None

    def _step_seconds(self) -> float | None:
        """Per step: over whole epochs where one finished (data, callbacks and validation included), else the
        median of the measured first steps."""
        # The first epoch holds the tracing (the warm-up step): left out once a later epoch finished.
        per_epoch = [e["seconds"] / e["steps"] for e in self._epochs[1:] or self._epochs if e["steps"]]
        if per_epoch:
            return statistics.median(per_epoch)
        measured = [s["seconds"] for s in self._steps[1:]]
        return statistics.median(measured) if measured else None

    def _total_steps(self) -> int | None:
        per_epoch = self.params.get("steps") or (self._epochs[0]["steps"] if self._epochs else None)
        epochs = self.params.get("epochs")
        return per_epoch * epochs if per_epoch and epochs else None

    # -- warnings ----------------------------------------------------------------------------------

    def _warn(self, kind: str, message: str | None) -> None:
        if message and kind not in self._warned:
            self._warned.add(kind)
            warnings.warn(f"preflight: {message}", RunWarning, stacklevel=3)

    def _check_time(self, steps_done: int) -> None:
        from preflight.analysis.run_watch import over_time, run_seconds

        if self.time_limit is None:
            return
        step_seconds, total = self._step_seconds(), self._total_steps()
        expected = run_seconds(time.perf_counter() - self._train_started, step_seconds, steps_done, total)
        self._warn("time", over_time(expected, self.time_limit, step_seconds, total))

    def _check_limit(self, device_peak: int | None, what: str) -> None:
        from preflight.analysis.run_watch import near_limit

        sampler = self._sampler
        limit = self._limit
        if limit is None and sampler.device.kind != "CPU" and sampler.device_total():
            limit = (sampler.device_total(), f"the {sampler.device.kind}'s memory")
        if limit is not None:
            self._warn("limit", near_limit(device_peak, limit[0], what, limit[1]))
        if sampler.device.kind == "CPU":
            self._warn("host", near_limit(sampler.max_rss(), sampler.host_total(), "host RSS", "this host's memory"))

    def _watch_epochs(self) -> None:
        from preflight.analysis.run_watch import leak

        self._warn("rss-leak", leak([e["rss_bytes"] for e in self._epochs], "host RSS at each epoch's end"))
        self._warn("device-leak", leak([e["device_resident_bytes"] for e in self._epochs],
                                       "device memory held between epochs"))
        self._check_limit(self._epochs[-1]["peak_bytes"], "the device peak")
        self._check_time(steps_done=self._step)

    # -- the record --------------------------------------------------------------------------------

    def _model_fingerprint(self) -> str | None:
        from preflight.engine.probe import model_fingerprint

        try:
            return model_fingerprint(self.model)
        except Exception:  # noqa: BLE001 - a model we cannot describe still gets its run recorded
            return None

    def _run_record(self) -> dict[str, Any]:
        from preflight.analysis.document import backend_record
        from preflight.common.version import __version__

        sampler = self._sampler
        epoch_peaks = [e["peak_bytes"] for e in self._epochs if e["peak_bytes"] is not None]
        step_peaks = [s["peak_bytes"] for s in self._steps if s["peak_bytes"] is not None]
        peaks = epoch_peaks + step_peaks
        rss = [e["rss_bytes"] for e in self._epochs]
        model = self.model
        return {
            "kind": "run", "format": 1,
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "preflight_version": __version__,
            "fingerprint": self._fingerprint or self._model_fingerprint(),
            "model": {"name": model.name, "params_total": int(model.count_params()),
                      "optimizer": type(model.optimizer).__name__ if model.optimizer else None},
            "backend": {k: v for k, v in backend_record(sampler.device).items() if k in ("name", "version")},
            "device": {"kind": sampler.device.kind, "name": sampler.device.name,
                       "allocator": sampler.device.allocator, "method": sampler.device.method},
            "target": self.target,
            "batch_size": self.batch_size,
            "epochs": len(self._epochs),
            "steps": self._step,
            "steps_per_epoch": self.params.get("steps"),
            "step_seconds": _round(self._step_seconds()),
            "first_steps_seconds": _round(statistics.median([s["seconds"] for s in self._steps[1:]])
                                          if len(self._steps) > 1 else None),
            "warmup_seconds": _round(self._steps[0]["seconds"] if self._steps else None),
            "train_seconds": _round(time.perf_counter() - self._train_started),
            "peak_bytes": max(peaks) if peaks else None,
            "peak_note": "" if sampler.available else sampler.note,
            "first_steps_peak_bytes": self._first_steps_peak(),
            "warmup_peak_bytes": self._steps[0]["peak_bytes"] if self._steps else None,
            "peak_growth_bytes": epoch_peaks[-1] - epoch_peaks[0] if len(epoch_peaks) > 1 else None,
            "device_resident_start_bytes": self._resident_start,
            "held_before_training_bytes": self._held_before_training(),
            "host": {"rss_start_bytes": self._rss_start, "rss_end_bytes": sampler.rss(),
                     "max_rss_bytes": sampler.max_rss(),
                     "rss_growth_bytes": rss[-1] - rss[0] if len(rss) > 1 else None},
            "limit_bytes": self._limit[0] if self._limit else None,
            "time_limit_seconds": self.time_limit,
            "per_epoch": self._epochs,
            "first_steps": self._steps,
            "warnings": sorted(self._warned),
        }

    def _held_before_training(self) -> int | None:
        """Device memory in use when training began, besides the weights and optimizer slots fit built before
        its first step: on a CPU, the copy of in-memory arrays model.fit made for its input pipeline
        (tf-memory-findings §10), which a check's figure (the step alone) leaves out."""
        from preflight.engine.probe import param_bytes_by_dtype
        from preflight.engine.static_floor import variable_bytes

        if self._resident_start is None:
            return None
        slots = sum(variable_bytes(v) for v in getattr(self.model.optimizer, "variables", None) or [])
        return max(0, self._resident_start - sum(param_bytes_by_dtype(self.model).values()) - slots)

    def _compare(self, records: list[dict]) -> str | None:
        from preflight.analysis.calibration import comparison_line, prediction_for_run, prediction_record

        candidates = list(records)
        if self.report is not None:
            import json

            try:
                with open(self.report, encoding="utf-8") as handle:
                    check = prediction_record(json.load(handle))
            except (OSError, ValueError) as exc:
                warnings.warn(f"preflight: cannot read the report {self.report}: {exc}", RuntimeWarning, stacklevel=3)
                check = None
            if check is not None:
                candidates.append(check)  # the newest: it wins over the store's
        found = prediction_for_run(candidates, self.record)
        return comparison_line(found[1], self.record) if found else None


def _batch_size_from_loss_tracker(model) -> int | None:
    """After the first step, Keras' loss tracker has counted one batch of samples (its `count` is the
    samples seen this epoch). JAX keeps the metrics in its state until synced: synced once, here."""
    tracker = getattr(model, "_loss_tracker", None)
    if tracker is None:
        return None
    try:
        if keras.backend.backend() == "jax" and hasattr(model, "jax_state_sync"):
            model.jax_state_sync()  # allowed between steps: fit re-reads the state when a callback synced it
        count = float(keras.ops.convert_to_numpy(tracker.count))
    except Exception:  # noqa: BLE001 - a custom train_step may not use the tracker
        return None
    return int(round(count)) if count >= 1 else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
