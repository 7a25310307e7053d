"""The verdict a report's readers act on, decided once: the renderers show it and the CLI turns it into
its exit code (issue 22: a decision does not live in rendering)."""
from __future__ import annotations

from typing import Any

from preflight.analysis.checks import CONFIGURATION_FAILED

VERDICTS = ("trials-fail", "no-budget", "fits", "does-not-fit", "unknown")


def verdict_state(document: dict[str, Any]) -> str:
    """One of VERDICTS. "trials-fail": a search whose dry-run configurations failed for the user's reason
    (the model or the data), which no budget can fix; it outranks the memory verdict."""
    findings = [*(document.get("findings") or []), *((document.get("search") or {}).get("findings") or [])]
    if any(f.get("id") == CONFIGURATION_FAILED for f in findings):
        return "trials-fail"
    if document.get("budget_bytes") is None:
        return "no-budget"
    fits = document.get("fits")
    return "fits" if fits is True else "does-not-fit" if fits is False else "unknown"


def exit_code(document: dict[str, Any]) -> int:
    """The exit code of a checked report: 3 when a search's dry-run configurations failed for the user's
    reason, else the gate's 0 (passed) or 1 (does not fit, or a threshold over the baseline failed)."""
    from preflight import errors

    if verdict_state(document) == "trials-fail":
        return errors.EXIT_USER_CODE
    return errors.EXIT_OK if document["gate"]["passed"] else errors.EXIT_GATE_FAILED
