"""Command line: `python -m preflight model.py [flags]`, `python -m preflight render report.json`,
`python -m preflight compare model.py`, `python -m preflight targets`, `python -m preflight calibration`.

`main(argv) -> int` is the only place exceptions become exit codes (see preflight.errors); each command
lives in its own module of this package.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import traceback

from preflight import errors
from preflight.cli import calibration, check, compare, render, targets

COMMANDS = {"render": render.run, "compare": compare.run, "targets": targets.run, "calibration": calibration.run}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    previous_handler = _exit_cleanly_on_sigterm()
    try:
        return _dispatch(argv)
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)


def _exit_cleanly_on_sigterm():
    """A CI job cancelled sends SIGTERM: exit through the `finally` blocks, so the dry-run child (its own
    session, which the signal does not reach) is killed and temp files go. Returns the handler it replaced."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def terminate(signum, frame):
        print("preflight: terminated; no report written", file=sys.stderr)
        raise SystemExit(errors.EXIT_TERMINATED)

    return signal.signal(signal.SIGTERM, terminate)


def _dispatch(argv: list[str]) -> int:
    try:
        if argv and argv[0] in COMMANDS:
            return COMMANDS[argv[0]](argv[1:])
        return check.run(argv)
    except errors.PreflightError as exc:
        print(f"preflight: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        # The dry-run child was killed on the way out (runner); no report was written.
        print("preflight: interrupted; no report written", file=sys.stderr)
        return errors.EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - a bug in preflight: say so, briefly
        if os.environ.get("PREFLIGHT_DEBUG"):
            traceback.print_exc()
        print(f"preflight: internal error: {type(exc).__name__}: {exc}\n"
              "  this is a bug in preflight; please report it with the command you ran "
              "(PREFLIGHT_DEBUG=1 prints the traceback)", file=sys.stderr)
        return errors.EXIT_INTERNAL
