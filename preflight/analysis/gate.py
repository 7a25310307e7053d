"""The CI gate: a pure function of the report document (with its "baseline_diff") and the thresholds.

Each threshold guards one quantity of the baseline diff and fails with its own reason, which names the
layer that grew most when layers explain the growth. Besides thresholds, the gate fails when the run
does not fit, when a search check has an error, and when the loss was NaN or infinite.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from preflight.common.units import format_bytes, format_quantity

# Findings that fail the gate on their own: a run that cannot train, or that overruns the time limit or
# the disk the user named, is not a run that fits.
GATE_FINDINGS = ("loss-not-finite", "time-over-limit", "checkpoints-over-disk")


@dataclass(frozen=True)
class GateThresholds:
    """Allowed relative growth over the baseline per quantity (0.1 = 10 %); None: not gated."""

    peak: float | None = None
    params: float | None = None
    optimizer: float | None = None
    step_time: float | None = None

    def any(self) -> bool:
        return any(v is not None for v in (self.peak, self.params, self.optimizer, self.step_time))


# diff quantity key -> (threshold attribute, gate id, the setting that sets it)
_GATED = {"peak_bytes": ("peak", "gate-peak", "max-increase"),
          "params_total": ("params", "gate-params", "max-params-increase"),
          "optimizer_bytes": ("optimizer", "gate-optimizer", "max-optimizer-increase"),
          "step_seconds": ("step_time", "gate-step-time", "max-step-time-increase")}


@dataclass(frozen=True)
class GateFailure:
    id: str
    message: str


@dataclass(frozen=True)
class GateResult:
    failures: list[GateFailure] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def reasons(self) -> list[str]:
        return [failure.message for failure in self.failures]

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "reasons": self.reasons,
                "failures": [{"id": f.id, "message": f.message} for f in self.failures]}


def _does_not_fit_reason(document: dict[str, Any]) -> str:
    budget = format_bytes(document.get("budget_bytes"))
    floor = document.get("floor") or {}
    if document.get("peak_bytes") is None and floor.get("total_bytes", 0) > (document.get("budget_bytes") or 0):
        return f"does not fit at any batch size: static floor {format_bytes(floor['total_bytes'])} over budget {budget}"
    if document.get("peak_bytes") is None and document.get("fits_at_no_batch"):
        return f"does not fit at any batch size: batch 1 ran out of memory (budget {budget})"
    host = document.get("host") or {}
    if host.get("fits") is False:
        step = f" + step {format_bytes(host['step_bytes'])}" if host.get("step_on_host") else ""
        return (f"does not fit: input pipeline {format_bytes(host['pipeline_bytes'])}{step} over host "
                f"{'budget' if host.get('step_on_host') else 'RAM'} {format_bytes(host['budget_bytes'])}")
    return f"does not fit: peak {format_bytes(document.get('peak_bytes'))} over budget {budget}"


def largest_layer_growth(diff: dict[str, Any], field_name: str) -> dict[str, Any] | None:
    """The added or changed layer whose `field_name` ("params", "activation_bytes_per_sample") grew most."""
    def growth(row: dict[str, Any]) -> float:
        old, new = row[field_name]
        return (new or 0) - (old or 0)

    grown = [row for row in diff.get("layers") or [] if growth(row) > 0]
    return max(grown, key=growth, default=None)


def describe_layer_growth(row: dict[str, Any], field_name: str) -> str:
    old, new = row[field_name]
    unit = "count" if field_name == "params" else "bytes"
    what = "params" if field_name == "params" else "activation per sample"
    if row["change"] == "added":
        return f"layer '{row['name']}' ({row['type']}) added with {format_quantity(new, unit)} {what}"
    change = f" ({(new - old) / old:+.0%})" if old else ""
    return (f"layer '{row['name']}' ({row['type']}) {what} "
            f"{format_quantity(old, unit)} → {format_quantity(new, unit)}{change}")


def _threshold_failures(diff: dict[str, Any], thresholds: GateThresholds) -> list[GateFailure]:
    failures = []
    for quantity in diff.get("quantities") or []:
        attribute, gate_id, setting = _GATED[quantity["key"]]
        allowed = getattr(thresholds, attribute)
        change = quantity["change"]
        if allowed is None:
            continue
        if change is None:
            if quantity["baseline"] and quantity["current"] is None:
                failures.append(GateFailure(gate_id, f"{quantity['label'].lower()}: the baseline had one, "
                                                     "this run has none"))
            continue
        if change <= allowed:
            continue
        unit = quantity["unit"]
        message = (f"{quantity['label'].lower()} grew {change:+.1%} against the baseline "
                   f"({format_quantity(quantity['baseline'], unit)} → {format_quantity(quantity['current'], unit)}), "
                   f"more than the allowed {allowed:.0%} ({setting})")
        layer_field = {"params_total": "params", "peak_bytes": "activation_bytes_per_sample",
                       "optimizer_bytes": "params"}.get(quantity["key"])
        row = largest_layer_growth(diff, layer_field) if layer_field else None
        if row is not None:
            message += f"; most growth: {describe_layer_growth(row, layer_field)}"
        failures.append(GateFailure(gate_id, message))
    return failures


def evaluate_gate(document: dict[str, Any], thresholds: GateThresholds | None = None) -> GateResult:
    """Fail on: does not fit, search errors, loss-sanity errors, and each threshold the diff exceeds."""
    failures = []
    if document.get("fits") is False:
        failures.append(GateFailure("does-not-fit", _does_not_fit_reason(document)))
    probes = document.get("probes") or []
    if probes and document.get("fits") is not False and not any(p.get("status") == "ok" for p in probes):
        # A hang or a crash at every batch size measured nothing: "fits" is unknown, which must not pass.
        failed = ", ".join(sorted({str(p.get("status")) for p in probes}))
        failures.append(GateFailure("nothing-measured",
                                    f"nothing was measured: every probe failed ({failed}); see the findings"))
    for finding in (document.get("search") or {}).get("findings") or []:
        if finding.get("severity") == "error":
            failures.append(GateFailure("search-error", f"search: {finding.get('message')}"))
    for finding in document.get("findings") or []:
        if finding.get("id") in GATE_FINDINGS:
            failures.append(GateFailure(finding["id"], finding.get("message", "")))
    diff = document.get("baseline_diff")
    if diff is not None and thresholds is not None and thresholds.any():
        if not diff.get("comparable"):
            failures.append(GateFailure("baseline-not-comparable", f"{diff.get('reason')}: not comparable"))
        else:
            failures.extend(_threshold_failures(diff, thresholds))
    return GateResult(failures)
