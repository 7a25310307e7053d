"""Prediction against truth: the records the calibration store keeps, and what is said about them.

Two kinds of record share the store (JSON lines, read and written by preflight.analysis.calibration_store):

- "check": what a check predicted (`prediction_record`, from its report document): the peak at the
  planned batch on the device it measured, the curve over batch sizes, and the projection to a target;
- "run": what a real training run used (written by preflight.keras.MemoryCallback).

Both carry the model's fingerprint (preflight.analysis.fingerprint), the Keras backend and the device kind.
A run is compared with the latest check of the same fingerprint and backend whose figure is for the
run's device kind (`prediction_for_run`, `comparison_line`); a check learns of earlier runs of its model
(`calibration_section`, `calibration_finding`). Pure: no file, no TensorFlow.
"""
from __future__ import annotations

from typing import Any, Iterable

from preflight.analysis.fingerprint import document_fingerprint
from preflight.common.measurements import BACKEND_DISPLAY_NAMES
from preflight.common.units import format_bytes

RECORD_FORMAT = 1
HELD_SHARE = 0.05  # memory held before training worth naming in a comparison: 5 % of the run's peak


def prediction_record(document: dict[str, Any]) -> dict[str, Any] | None:
    """A check's prediction, from its report document; None when it has no fingerprint or no peak."""
    fp = document_fingerprint(document)
    if fp is None or not document.get("peak_bytes"):
        return None
    backend = document.get("backend") or {}
    device = document.get("device") or {}
    target = document.get("target") or {}
    projection = target.get("projection") or {}
    return {
        "kind": "check", "format": RECORD_FORMAT, "created_at": document.get("created_at"),
        "preflight_version": document.get("preflight_version"),
        "fingerprint": fp,
        "model": {"name": (document.get("model") or {}).get("name"),
                  "params_total": (document.get("model") or {}).get("params_total"),
                  "optimizer": (document.get("model") or {}).get("optimizer")},
        "backend": {"name": backend.get("name"), "version": backend.get("version")},
        "device": {"kind": device.get("kind"), "name": device.get("name")},
        "batch_size": document.get("batch_size"),
        "peak_bytes": document.get("peak_bytes"),
        "peak_source": document.get("peak_source"),
        "peak_upper_bytes": document.get("peak_upper_bytes"),
        "curve": [[row["batch_size"], row["peak_bytes"]] for row in document.get("curve") or []],
        "target": ({"name": target.get("name"), "kind": target.get("kind"), "peak_bytes": projection.get("peak_bytes"),
                    "batch_size": projection.get("batch_size")} if target.get("name") else None),
        "budget_bytes": document.get("budget_bytes"),
        "fits": document.get("fits"),
    }


def predicted_figure(check: dict[str, Any], device_kind: str, batch_size: int | None) -> dict[str, Any] | None:
    """What `check` predicted for a run on `device_kind` at `batch_size`:
    {"bytes", "where", "batch_size", "how"}, or None when it said nothing about that device kind.

    On the device kind the check measured: its measured peak at its planned batch, else its upper-bound
    curve at the run's batch (interpolated between the curve's points). On its target's kind: the
    projection, at the planned batch only."""
    kind = (device_kind or "").upper()
    target = check.get("target") or {}
    if target.get("kind", "").upper() == kind and kind != (check.get("device") or {}).get("kind", "").upper():
        if target.get("peak_bytes") and batch_size in (None, check.get("batch_size")):
            return {"bytes": int(target["peak_bytes"]), "where": target["name"], "batch_size": check.get("batch_size"),
                    "how": "projected to the target"}
        return None
    if (check.get("device") or {}).get("kind", "").upper() != kind:
        return None
    where = kind
    if batch_size is None or batch_size == check.get("batch_size"):
        how = "measured" if check.get("peak_source") == "measured" else "predicted"
        return {"bytes": int(check["peak_bytes"]), "where": where, "batch_size": check.get("batch_size"), "how": how}
    value = curve_at(check.get("curve") or [], batch_size)
    if value is None:
        return None
    return {"bytes": value, "where": where, "batch_size": batch_size, "how": "upper-bound curve"}


def curve_at(curve: list, batch_size: int) -> int | None:
    """Linear between the curve's points; None outside them (no extrapolation here)."""
    points = sorted((int(b), int(v)) for b, v in curve)
    for (b0, v0), (b1, v1) in zip(points, points[1:]):
        if b0 <= batch_size <= b1:
            return int(v0 + (v1 - v0) * (batch_size - b0) / (b1 - b0)) if b1 != b0 else v0
    if points and points[-1][0] == batch_size:
        return points[-1][1]
    return None


def _same_model(record: dict, fingerprint: str, backend: str | None) -> bool:
    return record.get("fingerprint") == fingerprint and (record.get("backend") or {}).get("name") == backend


def prediction_for_run(records: Iterable[dict], run: dict[str, Any]) -> tuple[dict, dict] | None:
    """The latest check of the run's model (fingerprint, backend) with a figure for the run's device kind
    and batch: (check record, predicted_figure), or None."""
    backend = (run.get("backend") or {}).get("name")
    kind = (run.get("device") or {}).get("kind") or ""
    found = None
    for record in records:
        if record.get("kind") != "check" or not _same_model(record, run.get("fingerprint"), backend):
            continue
        figure = predicted_figure(record, kind, run.get("batch_size"))
        if figure is not None:
            found = (record, figure)  # later lines are newer
    return found


def change(predicted: int, actual: int) -> float:
    """The run's peak against the prediction: -0.10 is a run 10 % under it."""
    return actual / predicted - 1 if predicted else 0.0


def comparison_line(figure: dict[str, Any], run: dict[str, Any]) -> str:
    """'predicted 5.1 GiB on t4 at batch 64; the run peaked at 4.6 GiB (-10 %)'."""
    peak = run.get("peak_bytes")
    head = f"predicted {format_bytes(figure['bytes'])} on {figure['where']} at batch {figure['batch_size']}"
    if figure["how"] == "upper-bound curve":
        head += " (its upper-bound curve)"
    if not peak:
        return f"{head}; the run's device peak is not available ({run.get('peak_note') or 'no allocator statistics'})"
    line = f"{head}; the run peaked at {format_bytes(peak)} ({percent(change(figure['bytes'], peak))})"
    held = run.get("held_before_training_bytes") or 0
    if held > HELD_SHARE * peak:
        line += (f", {format_bytes(held)} of it held before the first step besides the weights (model.fit's copy "
                 f"of in-memory data; a check measures the step alone): {format_bytes(peak - held)} without it "
                 f"({percent(change(figure['bytes'], peak - held))})")
    return line


def percent(fraction: float) -> str:
    """-0.1 -> '-10 %'."""
    return f"{fraction * 100:+.0f} %"


def runs_for_document(records: Iterable[dict], document: dict[str, Any]) -> list[dict]:
    """Earlier real runs of the document's model, under its backend, on the device kind it measured or its
    target's kind, with a device peak; oldest first."""
    fp = document_fingerprint(document)
    if fp is None:
        return []
    backend = (document.get("backend") or {}).get("name")
    kinds = {((document.get("device") or {}).get("kind") or "").upper(),
             ((document.get("target") or {}).get("kind") or "").upper()} - {""}
    return [r for r in records if r.get("kind") == "run" and _same_model(r, fp, backend)
            and ((r.get("device") or {}).get("kind") or "").upper() in kinds and r.get("peak_bytes")]


def calibration_section(document: dict[str, Any], records: Iterable[dict]) -> dict[str, Any] | None:
    """The document's "calibration": the measured runs of this model and, for the latest, this check's
    own figure for that run's device and batch next to the run's peak."""
    runs = runs_for_document(records, document)
    if not runs:
        return None
    latest = runs[-1]
    figure = predicted_figure(prediction_record(document) or {}, (latest.get("device") or {}).get("kind"),
                              latest.get("batch_size")) if document.get("peak_bytes") else None
    return {
        "runs": len(runs),
        "latest": {key: latest.get(key) for key in ("created_at", "batch_size", "peak_bytes", "epochs", "steps",
                                                       "step_seconds", "device", "backend", "host",
                                                       "held_before_training_bytes")},
        "check_figure": figure,
        "change": change(figure["bytes"], latest["peak_bytes"]) if figure else None,
    }


def calibration_finding(section: dict[str, Any]) -> dict[str, str]:
    latest = section["latest"]
    device = latest.get("device") or {}
    backend = latest.get("backend") or {}
    when = (latest.get("created_at") or "")[:10]
    backend_name = f"{BACKEND_DISPLAY_NAMES.get(backend.get('name'), backend.get('name'))} {backend.get('version') or ''}"
    epochs = latest.get("epochs")
    text = (f"A real training run of this model is on record: at batch {latest['batch_size']} on "
            f"{device.get('kind')} ({device.get('name')}), {backend_name.strip()}, it peaked at "
            f"{format_bytes(latest['peak_bytes'])} over {epochs} epoch{'s' * (epochs != 1)}"
            f"{' on ' + when if when else ''}.")
    figure = section.get("check_figure")
    if figure:
        text += (f" This check's figure for that run: {format_bytes(figure['bytes'])} ({figure['how']}, batch "
                 f"{figure['batch_size']}); the run was {percent(section['change'])} against it")
        held = latest.get("held_before_training_bytes") or 0
        if held > HELD_SHARE * latest["peak_bytes"]:
            without = latest["peak_bytes"] - held
            text += (f", {percent(change(figure['bytes'], without))} without the {format_bytes(held)} it held before "
                     "its first step besides the weights (model.fit's copy of in-memory data)")
        text += "."
    if section["runs"] > 1:
        text += f" {section['runs']} runs recorded."
    text += " `python -m preflight calibration` lists the store."
    return {"id": "calibration-measured-run", "severity": "info", "message": text}


def measured_slope(document: dict[str, Any]) -> float | None:
    """Bytes per sample between the smallest and the largest measured points of the check's curve (the
    probes the check ran on its own device); None with fewer than two."""
    points = sorted((row["batch_size"], row.get("measured_bytes") or row["peak_bytes"])
                    for row in document.get("curve") or [] if row.get("source") == "measured")
    if len(points) < 2 or points[-1][0] == points[0][0]:
        return None
    return max(0.0, (points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0]))


def recorded_truth(document: dict[str, Any], section: dict[str, Any]) -> dict[str, Any] | None:
    """The verdict from the latest recorded run of this model (issue 24): its peak at its batch, carried to
    the planned batch along the check's measured slope, against the budget; and the largest batch that
    slope leaves room for. None without a budget or a slope. A run is one process over many steps, so its
    peak already holds the step-to-step spread; the check's own figure stays where it is higher."""
    latest = section["latest"]
    verdict_kind = ((document.get("target") or {}).get("kind") or (document.get("device") or {}).get("kind") or "")
    if ((latest.get("device") or {}).get("kind") or "").upper() != verdict_kind.upper():
        return None  # a run on another device kind than the verdict's says nothing about its budget
    budget, slope = document.get("budget_bytes"), measured_slope(document)
    run_batch, run_peak = latest.get("batch_size"), latest.get("peak_bytes")
    if not budget or slope is None or not run_batch or not run_peak:
        return None
    planned = document["batch_size"]
    at_planned = int(run_peak + slope * (planned - run_batch))
    largest = (run_batch + int((budget - run_peak) // slope) if slope > 0 else None) if run_peak <= budget else 0
    return {"batch_size": planned, "peak_bytes": at_planned, "fits": at_planned <= budget,
            "slope_bytes_per_sample": int(slope), "run_batch_size": run_batch, "run_peak_bytes": run_peak,
            "max_batch_size": largest}


def apply_recorded_truth(document: dict[str, Any], truth: dict[str, Any]) -> list[dict[str, str]]:
    """Where the recorded run says less fits than the check did, the run wins (it is what training used):
    the verdict, the largest and the recommended batch go down, and findings say why. Never up: one run
    on record is not enough to promise more than the check measured."""
    findings = []
    run = (f"the recorded run peaked at {format_bytes(truth['run_peak_bytes'])} at batch {truth['run_batch_size']}; "
           f"along the check's measured slope ({format_bytes(truth['slope_bytes_per_sample'])}/sample)")
    if document.get("fits") and not truth["fits"]:
        document["fits"] = False
        findings.append({"id": "calibration-over-budget", "severity": "error", "message":
                         f"Does not fit by the recorded run: {run} batch {truth['batch_size']} needs "
                         f"{format_bytes(truth['peak_bytes'])}, over the budget of "
                         f"{format_bytes(document['budget_bytes'])}, though this check measured "
                         f"{format_bytes(document.get('peak_bytes') or 0)}. The run is what training used."})
    largest, truth_largest = document.get("max_batch_size"), truth["max_batch_size"]
    if largest and truth_largest is not None and truth_largest < largest:
        document["max_batch_size"] = truth_largest or None
        if document.get("recommended_batch_size") and truth_largest:
            document["recommended_batch_size"] = min(document["recommended_batch_size"], truth_largest)
        findings.append({"id": "calibration-max-batch", "severity": "warning", "message":
                         f"Largest batch {truth_largest:,} by the recorded run, not {largest:,}: {run} the budget "
                         f"of {format_bytes(document['budget_bytes'])} is reached there."})
    return findings


OTHER_MODELS_MIN_RUNS = 3  # runs of other models before their record says anything about this check


def other_models_record(document: dict[str, Any], records: Iterable[dict]) -> dict[str, Any] | None:
    """How preflight's figures compared with real runs of *other* models on the verdict's device kind under the
    same backend: each run's peak over the figure its own check gave for it. None with fewer than
    OTHER_MODELS_MIN_RUNS such runs."""
    records = list(records)
    own = document_fingerprint(document)
    backend = (document.get("backend") or {}).get("name")
    kind = ((document.get("target") or {}).get("kind") or (document.get("device") or {}).get("kind") or "").upper()
    ratios, models = [], set()
    for run in records:
        if (run.get("kind") != "run" or not run.get("peak_bytes") or run.get("fingerprint") == own
                or (run.get("backend") or {}).get("name") != backend
                or ((run.get("device") or {}).get("kind") or "").upper() != kind):
            continue
        found = prediction_for_run(records, run)
        if found is not None and found[1]["bytes"]:
            ratios.append(run["peak_bytes"] / found[1]["bytes"])
            models.add(run.get("fingerprint"))
    if len(ratios) < OTHER_MODELS_MIN_RUNS:
        return None
    ratios.sort()
    return {"runs": len(ratios), "models": len(models), "device_kind": kind, "backend": backend,
            "min_ratio": round(ratios[0], 4), "median_ratio": round(ratios[len(ratios) // 2], 4),
            "max_ratio": round(ratios[-1], 4)}


def apply_other_models(document: dict[str, Any], record: dict[str, Any]) -> list[dict[str, str]]:
    """Say what the other models' runs showed, and scale this check's verdict figure by the largest ratio seen:
    up where a run used more than its figure (the verdict decided again), down where every run used less (the
    margin narrowed, never below the peak this check measured; see narrow_margin)."""
    target = document.get("target") or {}
    figure = (target.get("projection") or {}).get("peak_bytes") or document.get("peak_upper_bytes") \
        or document.get("peak_bytes")
    text = (f"{record['runs']} real run(s) of {record['models']} other model(s) on {record['device_kind']} under "
            f"{record['backend']} are on record: their peaks were {record['min_ratio']:.2f}x to "
            f"{record['max_ratio']:.2f}x the figure preflight gave them (median {record['median_ratio']:.2f}x).")
    budget = document.get("budget_bytes")
    if figure and record["max_ratio"] < 1.0:
        return narrow_margin(document, record, figure, text)
    if not figure or record["max_ratio"] == 1.0:
        return [{"id": "calibration-other-models", "severity": "info", "message": text}]
    scaled = int(figure * record["max_ratio"])
    record["scaled_peak_bytes"] = scaled
    if document.get("fits") and budget and scaled > budget:
        document["fits"] = False
        return [{"id": "calibration-other-models-over", "severity": "error", "message":
                 f"{text} This check's figure {format_bytes(figure)} scaled by {record['max_ratio']:.2f}x is "
                 f"{format_bytes(scaled)}, over the budget of {format_bytes(budget)}: a run like theirs would not "
                 "fit."}]
    return [{"id": "calibration-other-models", "severity": "warning", "message":
             f"{text} Scaled by {record['max_ratio']:.2f}x, this check's figure {format_bytes(figure)} is "
             f"{format_bytes(scaled)}" + (f", still within the budget of {format_bytes(budget)}." if budget else ".")}]


def narrow_margin(document: dict[str, Any], record: dict[str, Any], figure: int, text: str) -> list[dict[str, str]]:
    """Every run on record used less than its figure: this check's figure times the largest of those ratios is
    what a run like theirs would use, floored at the peak this check measured at the planned batch on its own
    device (a margin narrows, a measurement does not). Where the figure was the only thing over the budget, the
    verdict becomes "fits" and a finding says on how many runs that rests."""
    floor = 0 if (document.get("target") or {}).get("projection") else document.get("peak_bytes") or 0
    narrowed = max(int(figure * record["max_ratio"]), floor)
    record["narrowed_peak_bytes"] = narrowed
    budget = document.get("budget_bytes")
    ran_out = any(p.get("status") == "oom" and p.get("batch_size", 0) <= document["batch_size"]
                  for p in document.get("probes") or [])
    only_the_figure = (document.get("fits") is False and budget and narrowed <= budget < figure and not ran_out
                       and (document.get("host") or {}).get("fits") is not False
                       and not document.get("fits_at_no_batch") and not document.get("load_oom")
                       and (document.get("floor") or {}).get("total_bytes", 0) <= budget)
    narrowed_text = (f"{text} Scaled by {record['max_ratio']:.2f}x, this check's figure {format_bytes(figure)} is "
                     f"{format_bytes(narrowed)}")
    if not only_the_figure:
        return [{"id": "calibration-other-models", "severity": "info", "message": narrowed_text + "."}]
    document["fits"] = True
    document["findings"] = [f for f in document.get("findings") or [] if f.get("id") != "over-budget"]
    return [{"id": "calibration-other-models-narrowed", "severity": "warning", "message":
             f"{narrowed_text}, within the budget of {format_bytes(budget)}: fits by the runs on record, though "
             f"the figure with preflight's own margin ({format_bytes(figure)}) is over it. This rests on "
             f"{record['runs']} run(s); a run of this model with preflight.keras.MemoryCallback settles it."}]


def apply_calibration(document: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """What earlier real runs in the store (`records`) say about this check: runs of the same model decide
    where it used more (the document's "calibration", a finding, the recorded truth applied); else what
    other models' runs showed scales the figure. Called by the assembly (preflight.analysis.assemble)."""
    section = calibration_section(document, records)
    if section is not None:
        document["calibration"] = section
        document.setdefault("findings", []).append(calibration_finding(section))
        truth = recorded_truth(document, section)
        if truth is not None:
            section["recorded_truth"] = truth
            document["findings"] += apply_recorded_truth(document, truth)
    elif (others := other_models_record(document, records)) is not None:
        document["calibration"] = {"runs": 0, "other_models": others}
        document.setdefault("findings", []).extend(apply_other_models(document, others))
