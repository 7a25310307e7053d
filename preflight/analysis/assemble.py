"""The report document, assembled in one place from what a check measured and was given.

Every way in calls these: `preflight.check()` (and so `python -m preflight model.py`, `compare` and the
pytest plugin) through `assemble_check`, a keras-tuner search (`check_search()`, `python -m preflight
tune.py`) through `assemble_search`. Nothing else writes a key into a report: the doors gather facts
(`CheckFacts`, `SearchFacts`), this module turns them into the document, the baseline diff and the gate.
A check assembles more than once as its measurements come in (the confirming runs are chosen from the
first document, the what-ifs from the second); each assembly starts again from the facts, so the last
one is the report. Pure: no TensorFlow, no child processes, no files.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from preflight.analysis import report_checks
from preflight.analysis.checks import CheckContext, run_checks
from preflight.analysis.document import RunSettings, build_document, search_document, split_search_runs
from preflight.analysis.gate import GateThresholds, evaluate_gate


@dataclass
class CheckFacts:
    """What one check measured and was given; the document is a function of this alone."""

    outcome: Any                                  # the engine's ProbeOutcome
    settings: RunSettings
    model_name: str
    notebook_skipped: list[str] = field(default_factory=list)   # shell lines and magics not run
    seq_len: int | None = None                    # the --seq-len asked for
    confirmations: dict[str, Any] | None = None   # {"largest", "recommended"}: whatif.recommend's records
    timing: dict[str, float] | None = None        # verdict_seconds, max_batch_seconds
    whatif: bool | None = None                    # the --whatif choice (None: when they could help)
    whatifs_measured: list[dict[str, Any]] | None = None  # None: not measured
    calibration_records: list[dict[str, Any]] | None = None  # the store's records; None: store off
    baseline: dict[str, Any] | None = None        # an earlier report to compare with
    thresholds: GateThresholds = field(default_factory=GateThresholds)


@dataclass
class SearchFacts:
    """What a keras-tuner search check measured and was given."""

    section: dict[str, Any]                       # tuner.plan's search section
    name: str
    backend: dict[str, Any]                       # name, version, method
    launch: dict[str, Any]
    baseline: dict[str, Any] | None = None
    thresholds: GateThresholds = field(default_factory=GateThresholds)


def assemble_check(facts: CheckFacts) -> dict[str, Any]:
    from dataclasses import replace

    from preflight.analysis.recommendations import apply_largest, apply_recommended, recommendations

    outcome = facts.outcome
    launch = dict(facts.settings.launch or {})
    fresh, squeezed = split_search_runs(facts.confirmations)
    document = build_document(outcome, replace(facts.settings, launch=launch), model_name=facts.model_name,
                              search_points=fresh, squeezed=squeezed)
    if (outcome.peak_composition or {}).get("composition") is not None:
        document["peak_composition"] = outcome.peak_composition["composition"]
    if facts.confirmations is not None:
        apply_largest(document, facts.confirmations.get("largest"))
        apply_recommended(document, facts.confirmations.get("recommended"))
    if facts.timing is not None:
        document["timing"] = dict(facts.timing)
    measured = facts.whatifs_measured
    if measured is not None or document.get("fits") is False:
        document["recommendations"] = recommendations(document, measured or [])
    document["findings"] += run_checks(CheckContext(document, None, facts), report_checks.REPORT_CHECKS)
    if (document.get("host") or {}).get("pipeline_is_cause"):
        document["recommendations"] = []  # the input pipeline is the cause: no model change is the remedy
    if facts.calibration_records is not None:
        from preflight.analysis.calibration import apply_calibration

        apply_calibration(document, facts.calibration_records)
    return _with_gate(document, facts.baseline, facts.thresholds)


def assemble_search(facts: SearchFacts) -> dict[str, Any]:
    from preflight.analysis.checks import accelerator_unused, version_problems

    section = facts.section
    document = search_document(section, facts.name)
    document["backend"] = dict(facts.backend)
    document["launch"] = facts.launch
    document["readiness"] = {"distribution": section.get("distribution") or {}}
    context = CheckContext(document, None)
    document["findings"] += [f.to_dict() for f in version_problems(context)]
    if (unused := accelerator_unused(context)) is not None:
        document["findings"].append(unused.to_dict())
    return _with_gate(document, facts.baseline, facts.thresholds)


def _with_gate(document: dict[str, Any], baseline: dict[str, Any] | None,
               thresholds: GateThresholds) -> dict[str, Any]:
    if baseline is not None:
        from preflight.analysis.diff import compare_reports

        document["baseline_diff"] = compare_reports(baseline, document)
    document["gate"] = evaluate_gate(document, thresholds).to_dict()
    return document
