"""The view model: everything a renderer shows, prepared from the report document.

Renderers (HTML templates, terminal, Markdown) only lay out what `build_view` returns: formatted
sizes, percentages, labels and CSS classes are decided here, once, so the templates hold no logic
beyond loops and ifs. Raw numbers stay next to their text (`*_bytes`) for the chart builders.
Optional sections (`curve`, `length_curve`, `recommendations`, `peak_composition`, `search`) come back as None
when the document lacks them, and missing fields inside them are tolerated.
"""
from __future__ import annotations

import math
from typing import Any

from preflight.analysis.verdict import verdict_state
from preflight.common.measurements import BACKEND_DISPLAY_NAMES
from preflight.common.units import format_bytes, format_count, format_quantity, format_seconds

# The footprint's parts in the order they stack, with the colour each keeps in every chart.
FOOTPRINT_PARTS: tuple[tuple[str, str, str], ...] = (
    ("parameters", "Parameters", "#4c78a8"),
    ("frozen_parameters", "Non-trainable parameters", "#9ecae9"),
    ("gradients", "Gradients", "#72b7b2"),
    ("optimizer", "Optimizer state", "#f58518"),
    ("activations", "Activations", "#e45756"),
    ("inputs", "Inputs", "#54a24b"),
    ("other", "Other", "#bab0ac"),
)
EXTRA_PART_COLOR = "#9d755d"

SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}

FITS_TEXT = {True: "fits", False: "does not fit", None: ""}
FITS_CLASS = {True: "fits", False: "does-not-fit", None: "unknown"}

SEVERITY_COLORS = {"error": "#c62828", "warning": "#b26a00", "info": "#2b6cb0"}
VERDICT_COLORS = {"fits": "#2e7d32", "does-not-fit": "#c62828", "no-budget": "#546e7a", "unknown": "#b26a00",
                  "trials-fail": "#c62828"}

VERDICT_HEADLINES = {
    "fits": "Fits",
    "does-not-fit": "Does not fit",
    "no-budget": "No budget given",
    "unknown": "No verdict",
    "trials-fail": "Trials fail",
}


def format_percent(fraction: float | None, digits: int = 0) -> str:
    """0.0712 -> '7%'; tiny non-zero shares show as '<1%' rather than a misleading '0%'."""
    if fraction is None or (isinstance(fraction, float) and math.isnan(fraction)):
        return "n/a"
    percent = fraction * 100
    if 0 < percent < 10 ** -digits:
        return f"<{10 ** -digits:g}%"
    return f"{percent:.{digits}f}%"


def format_bytes_series(values: list[int]) -> str:
    """[131701145, 111947972] -> '125.6, 106.8 MiB': one unit at the end when they share it."""
    texts = [format_bytes(value) for value in values]
    units = {text.rsplit(" ", 1)[-1] for text in texts}
    if len(units) == 1 and texts:
        return ", ".join(text.rsplit(" ", 1)[0] for text in texts) + " " + units.pop()
    return ", ".join(texts)


def format_shape(shape: Any) -> str:
    """[None, 62, 62, 32] -> '(None, 62, 62, 32)'; [] (unknown) -> '?'; nested lists for multi-output."""
    if shape is None or shape == [] or shape == "":
        return "?"
    if isinstance(shape, (list, tuple)):
        if any(isinstance(dim, (list, tuple)) for dim in shape):
            return ", ".join(format_shape(part) for part in shape)
        return "(" + ", ".join("None" if dim is None else str(dim) for dim in shape) + ")"
    return str(shape)


def format_value(value: Any) -> str:
    """A hyperparameter value or a param for people: floats short, lists joined."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(item) for item in value)
    if value is None:
        return "n/a"
    return str(value)


def _verdict(document: dict[str, Any]) -> dict[str, Any]:
    peak_bytes = document.get("peak_bytes")
    budget_bytes = document.get("budget_bytes")
    target = document.get("target") or None
    batch_size = document.get("batch_size")
    state = verdict_state(document)

    if target:
        budget_label = f"{target.get('name', 'target')} usable"
    else:
        budget_label = "budget"

    peak_source = document.get("peak_source") or "measured"
    device = document.get("device") or {}
    if peak_bytes is None:
        peak_origin = "no successful probe"
    elif peak_source == "measured":
        peak_origin = f"measured on {device.get('kind', 'the device')}"
        backend = document.get("backend") or {}
        if backend.get("name"):
            name = BACKEND_DISPLAY_NAMES.get(backend["name"], backend["name"])
            peak_origin += f" under {name}: {backend.get('method')}"
        elif device.get("allocator"):
            peak_origin += f", {device['allocator']}"
    elif peak_source == "shapes":
        margin = ((document.get("search") or {}).get("worst_case") or {}).get("margin")
        peak_origin = "estimated from layer shapes alone: no configuration could be measured" + (
            f" (a {margin:.0%} margin included)" if isinstance(margin, (int, float)) else "")
    else:
        peak_origin = "predicted from the probes"

    floor = document.get("floor") or {}
    host = document.get("host") or {}
    if state == "trials-fail":
        detail = ("The model or its data fails in the dry run, so trials of this search would fail: "
                  "see the error findings for the hyperparameter values, the error and the fix.")
    elif host.get("fits") is False and host.get("step_on_host"):
        detail = (f"The input pipeline holds {format_bytes(host['pipeline_bytes'])} of host memory; with the "
                  f"step's peak {format_bytes(host['step_bytes'])} that is {format_bytes(host['total_bytes'])}, over "
                  f"the {format_bytes(host['budget_bytes'])} budget by "
                  f"{format_bytes(host['total_bytes'] - host['budget_bytes'])}."
                  + (" The model's own step fits: fix the pipeline's buffers (findings), not the model."
                     if host.get("step_fits_alone") else ""))
    elif host.get("fits") is False:
        device_part = (f"the step's peak {format_bytes(peak_bytes)} is within {format_bytes(budget_bytes)} "
                       f"{budget_label}" if peak_bytes is not None and budget_bytes and peak_bytes <= budget_bytes
                       else "see the device findings")
        detail = (f"Host memory: the input pipeline holds {format_bytes(host['pipeline_bytes'])}, over "
                  f"{format_bytes(host['budget_bytes'])} ({host['budget_source']}); on the device {device_part}.")
    elif peak_bytes is None and budget_bytes and floor.get("total_bytes", 0) > budget_bytes:
        detail = (f"No batch size fits: parameters, gradients and optimizer state alone take "
                  f"{format_bytes(floor['total_bytes'])} of {format_bytes(budget_bytes)} {budget_label}, "
                  "before any activation.")
    elif peak_bytes is None and document.get("load_oom"):
        detail = f"No batch size fits: the model ran out of memory while being built ({document['load_oom']})."
    elif peak_bytes is None and document.get("fits_at_no_batch"):
        detail = f"No batch size fits: batch 1 ran out of memory under {format_bytes(budget_bytes)} {budget_label}."
    elif peak_bytes is None:
        detail = "No probe finished, so there is no peak to compare."
    elif state == "no-budget":
        detail = (f"Peak {format_bytes(peak_bytes)} at batch size {batch_size}. "
                  "Give a budget or a target device for a verdict.")
    elif state == "fits" and host.get("step_on_host") and host.get("pipeline_bytes"):
        detail = (f"Peak {format_bytes(peak_bytes)} at batch size {batch_size}, with the input pipeline's "
                  f"{format_bytes(host['pipeline_bytes'])} of host memory, {format_bytes(host['total_bytes'])} in all, of "
                  f"{format_bytes(budget_bytes)} {budget_label}: {format_bytes(budget_bytes - host['total_bytes'])} to spare.")
    elif state == "fits":
        detail = (f"Peak {format_bytes(peak_bytes)} of {format_bytes(budget_bytes)} {budget_label} "
                  f"at batch size {batch_size}: {format_bytes(budget_bytes - peak_bytes)} to spare.")
    elif state == "does-not-fit":
        detail = (f"Peak {format_bytes(peak_bytes)} exceeds {format_bytes(budget_bytes)} {budget_label} "
                  f"at batch size {batch_size} by {format_bytes(peak_bytes - budget_bytes)}.")
    else:
        detail = f"Peak {format_bytes(peak_bytes)} against {format_bytes(budget_bytes)} {budget_label}."

    used_fraction = None
    if peak_bytes is not None and budget_bytes:
        used_fraction = peak_bytes / budget_bytes
    return {
        "state": state,
        "headline": VERDICT_HEADLINES[state],
        "color": VERDICT_COLORS[state],
        "detail": detail,
        "peak_bytes": peak_bytes,
        "peak_text": format_bytes(peak_bytes),
        "peak_source": peak_source,
        "peak_origin": peak_origin,
        "budget_bytes": budget_bytes,
        "budget_text": format_bytes(budget_bytes) if budget_bytes is not None else "none",
        "budget_label": budget_label,
        "used_fraction": used_fraction,
        # Clamped for the gauge's width; the text keeps the real figure.
        "used_percent_clamped": min(100.0, round(used_fraction * 100, 1)) if used_fraction is not None else 0.0,
        "used_text": format_percent(used_fraction),
        "batch_size": batch_size,
        "target_name": target.get("name", "") if target else "",
        "target_description": target.get("description", "") if target else "",
    }


def _facts(document: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    model = document.get("model") or {}
    device = document.get("device") or {}
    by_dtype = model.get("param_bytes_by_dtype") or {}
    model_facts = [
        ("Model", str(model.get("name", "n/a"))),
        ("Parameters", format_count(model.get("params_total"))),
        ("Trainable", format_count(model.get("params_trainable"))),
        ("Non-trainable", format_count(model.get("params_non_trainable"))),
        ("Weights by dtype", ", ".join(f"{dtype} {format_bytes(size)}" for dtype, size in by_dtype.items()) or "n/a"),
        ("Optimizer", str(model.get("optimizer", "n/a"))),
        ("Dtype policy", str(model.get("dtype_policy", "n/a"))),
        ("jit_compile", format_value(model.get("jit_compile"))),
    ]
    device_facts = [
        ("Device", str(device.get("name", "n/a"))),
        ("Device kind", str(device.get("kind", "n/a"))),
        ("Allocator", str(device.get("allocator", "n/a"))),
    ]
    backend = document.get("backend") or {}
    if backend.get("name"):
        version = f" {backend['version']}" if backend.get("version") else ""
        name = BACKEND_DISPLAY_NAMES.get(backend["name"], backend["name"])
        device_facts.insert(0, ("Keras backend", f"{name}{version}"))
        device_facts.append(("Peak read by", str(backend.get("method") or "n/a")))
    if device.get("memory_limit_bytes"):
        device_facts.append(("Allocator limit", format_bytes(device["memory_limit_bytes"])))
    device_facts.append(("Batch size", format_count(document.get("batch_size"))))
    plan = training_plan_text(document)
    if plan:
        device_facts.append(("Training plan", plan))
    data = document.get("data")
    if isinstance(data, dict) and data:
        data_text = str(data.get("kind", "n/a"))
        if data.get("host_bytes") is not None:
            data_text += f", {format_bytes(data['host_bytes'])} in host memory"
        device_facts.append(("Data", data_text))
    host = document.get("host")
    if host:
        budget = (f" of {format_bytes(host['budget_bytes'])} ({host['budget_source']})"
                  if host.get("budget_bytes") is not None else "")
        verdict = {True: ", fits", False: ", does not fit", None: ""}[host.get("fits")]
        step = f"; with the step {format_bytes(host['total_bytes'])}" if host.get("step_on_host") and host.get("step_bytes") else ""
        device_facts.append(("Host memory", f"input pipeline {format_bytes(host['pipeline_bytes'])} "
                                            f"({host['pipeline_source']}){step}{budget}{verdict}"))
        if host.get("chain"):
            device_facts.append(("Input pipeline", str(host["chain"])))
    target = document.get("target")
    if target:
        device_facts.append(("Target", f"{target.get('name', '?')}: {format_bytes(target.get('usable_bytes'))} usable"))
        if target.get("description"):
            device_facts.append(("Target notes", str(target["description"])))
    elif document.get("budget_bytes") is not None:
        device_facts.append(("Budget", format_bytes(document["budget_bytes"])))
    device_facts.append(("Created", str(document.get("created_at", "n/a"))))
    device_facts.append(("preflight", str(document.get("preflight_version", "n/a"))))
    return {"model": model_facts, "device": device_facts}


def training_plan_text(document: dict[str, Any]) -> str | None:
    """'fit() at colab.ipynb, code cell 7, line 1: batch 16, 30 epochs, ...': the fit(...) call the dry run
    stopped at (preflight.engine.fit_plan), or None when the code called none."""
    call = ((document.get("launch") or {}).get("plan") or {}).get("call")
    if not call:
        return None
    parts = [f"batch {call['batch_size']}" if call.get("batch_size") else "the data's own batches",
             f"{format_count(call.get('epochs'))} epochs"]
    if call.get("steps_per_epoch"):
        parts.append(f"{format_count(call['steps_per_epoch'])} steps per epoch")
    if call.get("validation"):
        parts.append(str(call["validation"]))
    checkpoint = call.get("checkpoint")
    if checkpoint:
        parts.append(f"ModelCheckpoint('{checkpoint['filepath']}'"
                     + (", save_best_only=True)" if checkpoint.get("save_best_only") else ")"))
    if call.get("backup_dir"):
        parts.append(f"BackupAndRestore('{call['backup_dir']}')")
    return f"fit() at {call['where']}: {', '.join(parts)}; nothing trained, nothing after it run"


def _host(document: dict[str, Any]) -> list[tuple[str, str]]:
    """The "host memory" part: the input pipeline beside the step's footprint (analysis.host)."""
    facts = _facts(document)["device"]
    return [(label, text) for label, text in facts if label in ("Host memory", "Input pipeline")]


def _footprint(document: dict[str, Any]) -> dict[str, Any]:
    footprint = document.get("footprint") or {}
    sources = document.get("footprint_sources") or {}
    known = [part for part in FOOTPRINT_PARTS if part[0] in footprint]
    extra = [(key, key.replace("_", " ").capitalize(), EXTRA_PART_COLOR)
             for key in footprint if key not in {part[0] for part in FOOTPRINT_PARTS}]
    total_bytes = sum(max(0, int(footprint[key] or 0)) for key, _, _ in known + extra)
    rows = []
    for key, label, color in known + extra:
        size = int(footprint[key] or 0)
        share = size / total_bytes if total_bytes else None
        if key == "parameters" and "frozen_parameters" in footprint:
            label = "Trainable parameters"
        rows.append({
            "key": key,
            "label": label,
            "color": color,
            "bytes": size,
            "bytes_text": format_bytes(size),
            "share": share,
            "share_text": format_percent(share),
            "share_percent": round(100 * share, 2) if share else 0.0,
            "source": sources.get(key, "n/a"),
        })
    return {"rows": rows, "total_bytes": total_bytes, "total_text": format_bytes(total_bytes)}


def _probes(document: dict[str, Any]) -> list[dict[str, Any]]:
    chosen_batch = document.get("batch_size")
    rows = []
    for probe in sorted(document.get("probes") or [], key=lambda p: p.get("batch_size") or 0):
        runs = probe.get("peak_bytes_runs") or []
        spread = probe.get("spread")
        rows.append({
            "batch_size": probe.get("batch_size"),
            "status": probe.get("status", "n/a"),
            "ok": probe.get("status") == "ok",
            "peak_bytes": probe.get("peak_bytes"),
            "peak_text": format_bytes(probe.get("peak_bytes")) if probe.get("peak_bytes") is not None else "–",
            "runs_text": (format_bytes_series(runs) if runs else "–")
            + (f" ({probe['processes']} fresh processes)" if probe.get("processes", 1) > 1 else ""),
            "runs_count": len(runs),
            "runs_count_text": f"{len(runs)} in {probe['processes']} proc." if probe.get("processes", 1) > 1
            else str(len(runs)),
            "spread_text": format_percent(spread, 1) if spread is not None and runs else "–",
            # Above 10 % the runs disagree enough that the peak deserves a second look.
            "spread_high": bool(spread is not None and spread > 0.10),
            "step_text": format_seconds(probe.get("step_seconds")) if probe.get("step_seconds") is not None else "–",
            "warmup_text": format_seconds(probe.get("warmup_seconds")) if probe.get("warmup_seconds") is not None else "–",
            "resident_text": format_bytes(probe.get("resident_bytes")) if probe.get("resident_bytes") is not None else "–",
            "message": probe.get("message") or "",
            "chosen": probe.get("batch_size") == chosen_batch,
        })
    return rows


def _findings(document: dict[str, Any]) -> list[dict[str, Any]]:
    findings = document.get("findings") or []
    ordered = sorted(findings, key=lambda f: SEVERITY_ORDER.get(f.get("severity", "info"), 3))
    rows = []
    for finding in ordered:
        severity = finding.get("severity") if finding.get("severity") in SEVERITY_ORDER else "info"
        rows.append({
            "id": str(finding.get("id", "")),
            "severity": severity,
            "color": SEVERITY_COLORS[severity],
            "message": str(finding.get("message", "")),
        })
    return rows


def _layers(document: dict[str, Any]) -> dict[str, Any]:
    batch_size = document.get("batch_size") or 0
    layers = document.get("layers") or []
    largest = max((layer.get("activation_bytes_per_sample") or 0 for layer in layers), default=0)
    rows = []
    for layer in layers:
        per_sample = layer.get("activation_bytes_per_sample")
        rows.append({
            "name": str(layer.get("name", "")),
            "type": str(layer.get("type", "")),
            "shape_text": format_shape(layer.get("output_shape")),
            "params_text": format_count(layer.get("params")),
            "per_sample_text": format_bytes(per_sample),
            "at_batch_text": format_bytes(per_sample * batch_size) if per_sample is not None and batch_size else "n/a",
            "bar_percent": round(100 * (per_sample or 0) / largest, 1) if largest else 0.0,
        })
    return {"rows": rows, "batch_size": batch_size}


def _curve(document: dict[str, Any]) -> dict[str, Any] | None:
    points = document.get("curve")
    if points is None:
        return None
    measured = sorted(((p["batch_size"], p["peak_bytes"]) for p in points
                       if p.get("source") == "measured" and p.get("peak_bytes") is not None))
    predicted = sorted(((p["batch_size"], p["peak_bytes"]) for p in points
                        if p.get("source") != "measured" and p.get("peak_bytes") is not None))
    by_batch = {p.get("batch_size"): p for p in points}
    recommended = document.get("recommended_batch_size")
    max_batch = document.get("max_batch_size")
    recommended_peak = (by_batch.get(recommended) or {}).get("peak_bytes") if recommended is not None else None
    confirmation = document.get("confirmation") or {}
    if confirmation.get("status") == "ok":
        confirmation_text = (f"confirmed: batch {format_count(confirmation['batch_size'])} ran at "
                             f"{format_bytes(confirmation.get('measured_peak_bytes'))}")
        if confirmation.get("limit_bytes"):
            confirmation_text += f" under a {format_bytes(confirmation['limit_bytes'])} allocator limit"
    elif confirmation.get("status") == "oom":
        confirmation_text = "not confirmed: every batch tried ran out of memory under the budget"
    else:
        confirmation_text = "predicted, not confirmed by a run"
    if confirmation.get("failed_batch_sizes"):
        confirmation_text += (" (ran out of memory under the budget at "
                              + ", ".join(format_count(b) for b in confirmation["failed_batch_sizes"]) + ")")
    if confirmation.get("near_limit"):
        confirmation_text += (" (ran too close to the limit to count at "
                              + ", ".join(f"{format_count(int(b))}: {format_bytes(p)}"
                                          for b, p in confirmation["near_limit"].items()) + ")")
    largest = document.get("max_batch_confirmation") or {}
    if largest.get("status") == "ok":
        confirmation_text += (f"; largest batch {format_count(largest['batch_size'])} ran under the same limit at "
                              f"{format_bytes(largest.get('measured_peak_bytes'))} in "
                              f"{len(largest.get('process_peaks') or [1])} fresh process(es)"
                              + (f" ({largest['method']})" if largest.get("method") else ""))
        if (largest.get("process_spread") or 0) > 0.01:
            confirmation_text += (f", leaving room for the {format_percent(largest['process_spread'], 1)} "
                                  "spread seen between fresh processes")
    recommended_peak_text = format_bytes(recommended_peak) if recommended_peak is not None else "n/a"
    if confirmation.get("status") == "ok" and confirmation.get("batch_size") == recommended \
            and confirmation.get("measured_peak_bytes"):
        # Measured where measured; the curve's upper bound beside it.
        processes = len(confirmation.get("process_peaks") or [1])
        recommended_peak_text = (f"{format_bytes(confirmation['measured_peak_bytes'])} measured in {processes} fresh "
                                 f"process{'es' if processes > 1 else ''}"
                                 + (f"; {recommended_peak_text} predicted" if recommended_peak is not None else ""))
        if recommended_peak is None:  # a size the search ran, not on the curve: its measured peak is the figure
            recommended_peak = confirmation["measured_peak_bytes"]
    return {
        "confirmation_text": confirmation_text,
        "measured": measured,
        "predicted": predicted,
        "max_batch_size": max_batch,
        "max_batch_text": format_count(max_batch) if max_batch is not None else "n/a",
        "recommended_batch_size": recommended,
        "recommended_batch_text": format_count(recommended) if recommended is not None else "n/a",
        "recommended_peak_bytes": recommended_peak,
        "recommended_peak_text": recommended_peak_text,
        "timing_text": _timing_text(document.get("timing")),
        "rows": [{
            "batch_size": p.get("batch_size"),
            "peak_text": format_bytes(p.get("peak_bytes")),
            "source": p.get("source", "predicted"),
        } for p in sorted(points, key=lambda p: p.get("batch_size") or 0)],
    }


def _length_curve(document: dict[str, Any]) -> dict[str, Any] | None:
    """The dynamic axis (analysis.lengths): which inputs, the planned length, the curve, the longest that fits."""
    from preflight.analysis.checks import axes_text

    section = document.get("length_curve")
    if not section:
        return None
    points = section.get("curve") or []
    measured = sorted((p["length"], p["peak_bytes"]) for p in points
                      if p.get("source") == "measured" and p.get("peak_bytes") is not None)
    predicted = sorted((p["length"], p["peak_bytes"]) for p in points
                       if p.get("source") != "measured" and p.get("peak_bytes") is not None)
    planned = section.get("planned_length")
    source = {"--seq-len": "--seq-len", "data": "the data", "synthesized": "synthesized; pass --seq-len"}.get(
        section.get("length_source"), str(section.get("length_source")))
    longest = section.get("max_length")
    model_limit = section.get("max_model_length")
    if longest is not None:
        max_text = f"{format_count(longest)} ({section.get('max_length_source') or 'predicted'})"
        if model_limit is not None and longest == model_limit:
            max_text += ", the longest the model accepts"
    elif document.get("budget_bytes") is None:
        max_text = "n/a (no budget)"
    elif len(measured) + len(predicted) == 0:
        max_text = "n/a (not measured)"
    else:
        max_text = "none"
    probes = section.get("probes") or []
    # One axis per input is a sequence; two or more (an image's height and width) are an input size.
    several = any(len(a.get("axes") or []) > 1 for a in section.get("axes") or [])
    return {
        "heading": "Input size" if several else "Sequence length",
        "axes_text": axes_text(section.get("axes") or []),
        "batch_size": section.get("batch_size"),
        "planned_text": f"{format_count(planned)} ({source})" if planned else "n/a",
        "max_length": longest,
        "max_length_text": max_text,
        "model_limit_text": format_count(model_limit) if model_limit is not None else "none known",
        "measured": measured,
        "predicted": predicted,
        "probes_text": ", ".join(f"{p['length']}: {format_bytes(p['peak_bytes']) if p.get('peak_bytes') else p['status']}"
                                 for p in probes),
        "rows": [{"length": p.get("length"), "peak_text": format_bytes(p.get("peak_bytes")),
                  "source": p.get("source", "predicted"), "planned": p.get("length") == planned}
                 for p in sorted(points, key=lambda p: p.get("length") or 0)],
        "failed": [{"length": p["length"], "status": p["status"], "message": p.get("message") or ""}
                   for p in probes if p.get("status") != "ok"],
    }


def _timing_text(timing: dict[str, Any] | None) -> str:
    """'verdict in 41 s; largest-batch search 95 s': the two parts of a check's time."""
    if not timing:
        return ""
    text = f"verdict in {timing['verdict_seconds']:.0f} s"
    if timing.get("max_batch_seconds"):
        text += f"; largest-batch search {timing['max_batch_seconds']:.0f} s"
    return text


def format_signed_percent(fraction: float | None) -> str:
    """0.214 saving -> '-21%' change in peak."""
    if fraction is None:
        return ""
    return f"{-fraction * 100:+.0f}%"


def _recommendations(document: dict[str, Any]) -> dict[str, Any] | None:
    items = document.get("recommendations")
    if items is None:
        return None
    rows = []
    for item in items:
        details = item.get("details") or {}
        fits = item.get("fits")
        measured = item.get("peak_bytes") is not None
        step_ratio = item.get("step_ratio")
        rows.append({
            "kind": str(item.get("kind", "")),
            "title": str(item.get("title") or item.get("kind") or ""),
            "lead": bool(item.get("lead")),
            # Absent in hand-made documents: then every measured entry counts as recommended.
            "recommended": bool(item.get("recommended", measured)),
            "measured": measured,
            "status": str(item.get("status") or ("ok" if measured else "not measured")),
            "message": str(item.get("message") or ""),
            "why_not_text": str(item.get("message") or (
                f"uses {format_bytes(-item['saving_bytes'])} more" if (item.get("saving_bytes") or 0) < 0
                else "saves too little to matter (within run-to-run spread)" if measured else "not measured")),
            # against the measured peak at the planned batch: "+6.3 MiB" costs, "-1.2 MiB" saves
            "change_bytes_text": ("n/a" if item.get("saving_bytes") is None else
                                  f"{'+' if item['saving_bytes'] < 0 else '-'}{format_bytes(abs(item['saving_bytes']))}"),
            "peak_bytes": item.get("peak_bytes"),
            "peak_text": format_bytes(item.get("peak_bytes")),
            # Where no batch fits, a what-if may only fit at batch 1: say where its peak was measured.
            "batch_text": f" at batch {item['batch_size']}"
            if item.get("batch_size") not in (None, document.get("batch_size")) else "",
            "saving_bytes": item.get("saving_bytes"),
            "saving_text": format_bytes(item.get("saving_bytes")) if item.get("saving_bytes") is not None else "n/a",
            "change_text": format_signed_percent(item.get("saving_fraction")),
            "step_text": format_seconds(item.get("step_seconds")),
            "step_ratio_text": f"×{step_ratio:.2f}" if isinstance(step_ratio, (int, float)) else "",
            "params_text": format_count(item["params"]) if isinstance(item.get("params"), int) else "",
            "details": [(str(key), format_value(value)) for key, value in details.items()],
            "snippet": str(item.get("snippet") or ""),
            "tradeoff": str(item.get("tradeoff") or ""),
            # The text renderers list titles only; a layout is advice only with its lines (issue 25).
            "inline_snippet": str(item.get("snippet") or "") if item.get("kind") == "shard_weights" else "",
            "fits": fits,
            "fits_text": FITS_TEXT.get(fits, ""),
            "fits_class": FITS_CLASS.get(fits, "unknown"),
        })
    return {
        "rows": rows,
        "any_fits": any(row["fits"] for row in rows),
        "helpful": [row for row in rows if row["recommended"]],
        "unhelpful": [row for row in rows if not row["recommended"]],
        # Which weights train (full fine-tuning, the backbone frozen, LoRA): shown whether they save or cost
        "finetune": [row for row in rows if row["kind"] == "finetune"],
    }


def _peak_composition(document: dict[str, Any]) -> dict[str, Any] | None:
    composition = document.get("peak_composition")
    if composition is None:
        return None
    allocations = composition.get("top_allocations") or []
    timeline = [(point.get("time_ms"), point.get("bytes_in_use")) for point in composition.get("timeline") or []
                if point.get("time_ms") is not None and point.get("bytes_in_use") is not None]
    peak_bytes = composition.get("peak_bytes")
    peak_time = composition.get("peak_time_ms")
    preallocated = composition.get("preallocated_bytes")
    return {
        "phase": str(composition.get("phase") or "unknown"),
        "peak_text": format_bytes(peak_bytes) if peak_bytes is not None else "",
        "peak_time_text": f"{peak_time:.1f} ms" if isinstance(peak_time, (int, float)) else "",
        "peak_op": str(composition.get("peak_op") or ""),
        "preallocated_text": format_bytes(preallocated) if preallocated else "",
        "attributed": composition.get("attributed", True) is not False,
        "source": str(composition.get("source") or ""),
        "allocator": str(composition.get("allocator") or ""),
        "allocations": [{
            "op": str(allocation.get("op", "")),
            "shape_text": format_shape(allocation.get("shape")),
            "dtype": str(allocation.get("dtype") or ""),
            "count_text": format_count(allocation.get("count")) if allocation.get("count") else "",
            "bytes_text": format_bytes(allocation.get("bytes")),
            "region": str(allocation.get("region", "")),
        } for allocation in allocations],
        "timeline": timeline,
    }


def _numeric(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def memory_driver(samples: list[dict[str, Any]]) -> str | None:
    """The numeric hyperparameter whose value tracks the peak most closely (largest |Pearson r|)."""
    names: list[str] = []
    for sample in samples:
        for name in (sample.get("values") or {}):
            if name not in names:
                names.append(name)
    best_name, best_strength = None, -1.0
    for name in names:
        pairs = [(_numeric((s.get("values") or {}).get(name)), s.get("peak_bytes")) for s in samples]
        pairs = [(x, float(y)) for x, y in pairs if x is not None and isinstance(y, (int, float))]
        if len(pairs) < 2:
            continue
        mean_x = sum(x for x, _ in pairs) / len(pairs)
        mean_y = sum(y for _, y in pairs) / len(pairs)
        cov = sum((x - mean_x) * (y - mean_y) for x, y in pairs)
        var_x = sum((x - mean_x) ** 2 for x, _ in pairs)
        var_y = sum((y - mean_y) ** 2 for _, y in pairs)
        if var_x == 0 or var_y == 0:
            continue
        strength = abs(cov / math.sqrt(var_x * var_y))
        if strength > best_strength:
            best_name, best_strength = name, strength
    return best_name


def _search(document: dict[str, Any]) -> dict[str, Any] | None:
    search = document.get("search")
    if search is None:
        return None
    hyperparameters = []
    for hp in search.get("hyperparameters") or []:
        if "range" in hp:
            domain = format_value(hp["range"])
        elif "values" in hp:
            domain = format_value(hp["values"])
        else:
            domain = "n/a"
        hyperparameters.append({"name": str(hp.get("name", "")), "type": str(hp.get("type", "")), "domain": domain})

    worst = search.get("worst_case")
    worst_view = None
    if worst:
        shapes_only = worst.get("peak_source") == "shapes"
        margin = worst.get("margin")
        worst_view = {
            "settings": [(str(k), format_value(v)) for k, v in (worst.get("values") or {}).items()],
            "peak_text": format_bytes(worst.get("peak_bytes")),
            "fits": worst.get("fits"),
            "fits_text": FITS_TEXT.get(worst.get("fits")) or "unknown",
            "fits_class": FITS_CLASS.get(worst.get("fits"), "unknown"),
            "source_text": ("from shapes alone" + (f", {margin:.0%} margin included"
                                                   if isinstance(margin, (int, float)) else ""))
            if shapes_only else str(worst.get("peak_source") or ""),
        }
        # "1.6 GiB (measured, fits)"; no fit word without a verdict
        worst_view["summary_text"] = f"{worst_view['peak_text']} ({worst_view['source_text']}" + (
            f", {worst_view['fits_text']})" if worst.get("fits") is not None else ")")

    samples = search.get("samples") or []
    driver = search.get("memory_driver") or memory_driver(samples)
    scatter = []
    if driver:
        for sample in samples:
            x = _numeric((sample.get("values") or {}).get(driver))
            if x is not None and isinstance(sample.get("peak_bytes"), (int, float)):
                scatter.append((x, sample["peak_bytes"], sample.get("fits")))

    trial_rows = []
    for trial in search.get("trials") or []:
        trial_rows.append({
            "id": str(trial.get("trial_id", trial.get("id", ""))),
            "values_text": ", ".join(f"{k}={format_value(v)}" for k, v in (trial.get("values") or {}).items()),
            "peak_text": format_bytes(trial.get("peak_bytes")) if trial.get("peak_bytes") is not None else "–",
            "status": str(trial.get("status", "")),
            "fits": trial.get("fits"),
            "fits_text": FITS_TEXT.get(trial.get("fits"), ""),
            "fits_class": FITS_CLASS.get(trial.get("fits"), "unknown"),
        })

    fits_fraction = search.get("fits_fraction")
    estimate = search.get("time_estimate_seconds")
    disk_text = format_bytes(search.get("disk_estimate_bytes"))
    time_missing = "" if estimate is not None else str(search.get("time_estimate_missing") or "not enough known")
    if fits_fraction is not None:
        fit_text = f"{format_percent(fits_fraction)} of {len(samples)} sampled configurations fit"
    elif worst and worst.get("peak_source") == "shapes":
        fit_text = "no fit verdict: no configuration could be measured"
    else:
        fit_text = f"{len(samples)} configurations sampled; give a budget for a verdict"
    return {
        "hyperparameters": hyperparameters,
        "worst_case": worst_view,
        "fit_text": fit_text,
        "fits_fraction_text": format_percent(fits_fraction) if fits_fraction is not None else "unknown",
        "bounds": _bound_rows(search.get("bounds") or {}),
        "bounds_summary": str(search.get("bounds_summary") or ""),
        "time_text": format_seconds(estimate) if estimate is not None else "unknown",
        "time_missing": time_missing,
        "disk_text": disk_text,
        # one sentence for the text renderers: what is known, and why a part is missing
        "budget_text": (f"about {format_seconds(estimate)} and {disk_text} on disk for the whole search"
                        if estimate is not None else
                        f"no time estimate ({time_missing}); about {disk_text} on disk for the whole search"),
        "spread_text": _spread_text(search.get("spread")),
        "samples_count": len(samples),
        "driver": driver or "",
        "scatter": scatter,
        "trials": trial_rows,
    }


def _spread_text(spread: Any) -> str:
    """'tuner0 measured 2 of 5 configurations; keras-tuner's other processes the rest (folder ...)'."""
    if not isinstance(spread, dict):
        return ""
    return (f"{spread.get('tuner_id')} measured {spread.get('measured_here')} of {spread.get('measured')} dry-run "
            f"configurations; keras-tuner's other processes measured the rest ({spread.get('folder')})")


def _bound_rows(bounds: dict[str, Any]) -> list[tuple[str, str]]:
    """One line per hyperparameter: the largest value that fits with the others at worst / smallest."""
    rows = []
    for name, bound in bounds.items():
        if name.startswith("_"):
            continue  # the joint frontier is told by bounds_summary
        if not isinstance(bound, dict):
            rows.append((str(name), str(bound)))
            continue
        at_worst = bound.get("max_fitting_with_others_at_worst")
        at_smallest = bound.get("max_fitting_with_others_smallest")
        parts = [f"≤ {format_value(at_worst)} with the others at worst case" if at_worst is not None
                 else "no value fits with the others at worst case"]
        if at_smallest is not None:
            parts.append(f"≤ {format_value(at_smallest)} with the others smallest")
        if bound.get("max_value") is not None:
            parts.append(f"(range max {format_value(bound['max_value'])})")
        rows.append((str(name), "; ".join(parts)))
    return rows


def _gate(document: dict[str, Any]) -> dict[str, Any] | None:
    gate = document.get("gate")
    if gate is None:
        return None
    passed = bool(gate.get("passed"))
    return {"passed": passed, "state": "fits" if passed else "does-not-fit",
            "text": "passed" if passed else "failed",
            "reasons": [str(reason) for reason in gate.get("reasons") or []]}


def _format_change(old: Any, new: Any, unit: str) -> str:
    """'4,160 -> 8,320 (+100%)', or one side alone for an added or removed layer."""
    if old is None:
        return format_quantity(new, unit)
    if new is None:
        return format_quantity(old, unit)
    if old == new:
        return format_quantity(new, unit)
    change = f" ({(new - old) / old:+.0%})" if old else ""
    return f"{format_quantity(old, unit)} → {format_quantity(new, unit)}{change}"


def _baseline_diff(document: dict[str, Any]) -> dict[str, Any] | None:
    diff = document.get("baseline_diff")
    if diff is None:
        return None
    rows = []
    for quantity in diff.get("quantities") or []:
        change = quantity.get("change")
        rows.append({
            "label": str(quantity.get("label", "")),
            "baseline_text": format_quantity(quantity.get("baseline"), quantity.get("unit", "")),
            "current_text": format_quantity(quantity.get("current"), quantity.get("unit", "")),
            "change_text": "n/a" if change is None else f"{change:+.1%}",
            "grew": bool(change and change > 0),
        })
    layers = []
    for layer in diff.get("layers") or []:
        params, activation = layer.get("params") or [None, None], layer.get("activation_bytes_per_sample") or [None, None]
        layers.append({
            "name": str(layer.get("name", "")),
            "type": str(layer.get("type", "")),
            "change": str(layer.get("change", "")),
            "params_text": _format_change(params[0], params[1], "count"),
            "activation_text": _format_change(activation[0], activation[1], "bytes"),
        })
    return {"comparable": bool(diff.get("comparable")), "reason": str(diff.get("reason") or ""),
            "baseline_created_at": str(diff.get("baseline_created_at") or "n/a"), "rows": rows, "layers": layers}


def build_view(document: dict[str, Any]) -> dict[str, Any]:
    """The whole view model for one report document. Pure: reads the dict, never changes it."""
    model = document.get("model") or {}
    return {
        "title": f"preflight: {model.get('name', 'model')}",
        "model_name": str(model.get("name", "model")),
        "generator": {"version": str(document.get("preflight_version", "n/a")),
                      "created_at": str(document.get("created_at", "n/a"))},
        "verdict": _verdict(document),
        "facts": _facts(document),
        "host": _host(document),
        "training_plan": training_plan_text(document),
        "footprint": _footprint(document),
        "probes": _probes(document),
        "findings": _findings(document),
        "gate": _gate(document),
        "baseline_diff": _baseline_diff(document),
        "layers": _layers(document),
        "curve": _curve(document),
        "length_curve": _length_curve(document),
        "recommendations": _recommendations(document),
        "peak_composition": _peak_composition(document),
        "search": _search(document),
    }
