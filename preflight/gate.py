"""The CI gate: a pure function of the report document, the thresholds and an optional baseline."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from preflight.errors import ConfigError
from preflight.units import format_bytes


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "reasons": list(self.reasons)}


def parse_fraction(text: str) -> float:
    """'10%' -> 0.10, '0.1' -> 0.10."""
    value = str(text).strip()
    try:
        return float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        raise ConfigError(f"cannot read {text!r} as a fraction", hint="write it like 10% or 0.1") from None


def evaluate_gate(document: dict[str, Any], max_increase: float | None = None,
                  baseline: dict[str, Any] | None = None) -> GateResult:
    reasons = []
    if document.get("fits") is False:
        reasons.append(f"does not fit: peak {format_bytes(document.get('peak_bytes'))} "
                       f"over budget {format_bytes(document.get('budget_bytes'))}")
    probes = document.get("probes") or []
    if probes and document.get("fits") is not False and not any(p.get("status") == "ok" for p in probes):
        # A hang or a crash at every batch size measured nothing: "fits" is unknown, which must not pass.
        failed = ", ".join(sorted({str(p.get("status")) for p in probes}))
        reasons.append(f"nothing was measured: every probe failed ({failed}); see the findings")
    for finding in (document.get("search") or {}).get("findings") or []:
        if finding.get("severity") == "error":
            reasons.append(f"search: {finding.get('message')}")
    if baseline is not None and max_increase is not None:
        old, new = baseline.get("peak_bytes"), document.get("peak_bytes")
        if baseline.get("batch_size") != document.get("batch_size"):
            reasons.append(f"baseline was measured at batch {baseline.get('batch_size')}, "
                           f"this run at {document.get('batch_size')}: not comparable")
        elif old and new is not None and (new - old) / old > max_increase:
            reasons.append(f"peak grew {(new - old) / old:+.1%} against the baseline "
                           f"({format_bytes(old)} -> {format_bytes(new)}), more than the allowed {max_increase:.0%}")
        elif old and new is None:
            reasons.append("the baseline had a measured peak, this run has none")
    return GateResult(not reasons, reasons)
