"""Checks of the assembled report (the registry's late stage, preflight.analysis.checks.REPORT_CHECKS): each
reads the finished document and the check's facts (ctx.facts, a preflight.analysis.assemble.CheckFacts):
what running the user's program skipped or changed, the memory profile, the measured what-ifs."""
from __future__ import annotations

from preflight.analysis.checks import REPORT_CHECKS, CheckContext, Finding, report_check

__all__ = ["REPORT_CHECKS"]  # the registry these fill, run by preflight.analysis.assemble


@report_check
def notebook_skipped(ctx: CheckContext) -> Finding | None:
    skipped = ctx.facts.notebook_skipped
    if not skipped:
        return None
    return Finding("notebook-skipped", "info", f"Not run in the dry run ({len(skipped)} shell line(s) and magic(s) "
                   "of the notebook): " + "; ".join(skipped) + ".")


@report_check
def fit_batch_differs(ctx: CheckContext) -> Finding | None:
    """A batch size the file's fit(...) call computed that the check did not measure."""
    fit_call, batch_size = ctx.facts.outcome.fit_plan, ctx.document.get("batch_size")
    if fit_call is None or not fit_call.get("batch_size") or fit_call["batch_size"] == batch_size:
        return None
    return Finding("fit-batch-differs", "warning",
                   f"The fit(...) call at {fit_call['where']} trains at batch {fit_call['batch_size']}; this check "
                   f"measured batch {batch_size} (--batch-size, or a value the source read gave). Pass --batch-size "
                   f"{fit_call['batch_size']} to measure the call's own batch.")


@report_check
def seq_len_unused(ctx: CheckContext) -> Finding | None:
    seq_len = ctx.facts.seq_len
    if seq_len is None or "length_curve" in ctx.document or ctx.facts.outcome.model is None:
        return None
    return Finding("seq-len-unused", "warning", f"--seq-len {seq_len} changed nothing: no model input has an axis "
                   "of no fixed size besides the batch (its Input shape fixes every length).")


@report_check
def profile_failed(ctx: CheckContext) -> Finding | None:
    composition = ctx.facts.outcome.peak_composition
    if composition is None or composition["composition"] is not None:
        return None
    return Finding("profile-failed", "warning", f"The memory profile could not be read: {composition['message']}")


@report_check
def no_whatif_fits(ctx: CheckContext) -> Finding | None:
    document = ctx.document
    if ctx.facts.whatifs_measured is None or not document.get("fits_at_no_batch") or any(
            r.get("fits") for r in document.get("recommendations") or []):
        return None
    return Finding("no-whatif-fits", "warning", "None of the measured what-ifs fits the budget on its own, even at "
                   "batch 1: combine them (the smallest peaks are listed first), or plan for a device with more "
                   "memory.")


@report_check
def whatifs_skipped(ctx: CheckContext) -> Finding | None:
    """It does not fit, --whatif was not given, and none was measured: say why."""
    document = ctx.document
    if (ctx.facts.whatif is not None or ctx.facts.whatifs_measured is not None or document.get("fits") is not False
            or (document.get("host") or {}).get("pipeline_is_cause")):
        return None
    why = ("the peak is more than twice the budget, beyond what one of them saves" if document.get("peak_bytes")
           else "no training step finished, so there is no peak to measure them against")
    return Finding("whatifs-skipped", "info", "What-ifs (mixed precision, remat, shrinking) were not measured: " + why
                   + ("; a smaller batch is the change that fits" if document.get("recommended_batch_size") else "")
                   + ". Pass --whatif to measure them anyway.")
