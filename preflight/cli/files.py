"""Reading and writing report files for every command: atomically, and a failure is a usage error."""
from __future__ import annotations

from preflight import errors


def write_report(path: str, text: str) -> None:
    """Atomically (preflight.render.report): a failed write leaves the earlier report, if any, as it was."""
    from preflight.render.report import write_atomically

    try:
        write_atomically(path, text)
    except OSError as exc:
        raise errors.UsageError(f"cannot write the report {path}: {exc.strerror or exc}",
                                hint="free space on that disk or give another path; "
                                     "an earlier report at that path is left as it was") from None


def read_report(path: str | None, comparison: bool = False) -> dict | None:
    from preflight.render.report import Report

    return Report.load(path, comparison=comparison).document if path else None
