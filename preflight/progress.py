"""Live progress while probing: which batch size, which step, elapsed time.

On a terminal (or in Jupyter) a rich status line updates in place; elsewhere (CI logs) one line is
printed per finished probe, so logs stay readable.
"""
from __future__ import annotations

import sys
import time

from preflight.units import format_bytes


class ProgressDisplay:
    def __init__(self, enabled: bool = True, label: str = "preflight"):
        from rich.console import Console

        self.enabled = enabled
        self.label = label
        self.console = Console(stderr=True)
        self.started = time.monotonic()
        self._status = None

    def __enter__(self) -> "ProgressDisplay":
        if self.enabled and self.console.is_terminal:
            self._status = self.console.status(f"{self.label}: starting")
            self._status.start()
        return self

    def __exit__(self, *exc_info) -> None:
        if self._status is not None:
            self._status.stop()

    def __call__(self, event: dict) -> None:
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.started
        kind = event.get("event")
        if kind == "probe":
            probe = event["probe"]
            peak = format_bytes(probe["peak_bytes"]) if probe.get("peak_bytes") else probe["status"]
            self._line(f"  batch {probe['batch_size']:>6}: {peak}  ({elapsed:.0f} s)")
        elif kind == "progress" and self._status is not None:
            if event.get("stage") == "probe":
                text = f"probing batch {event['batch_size']} · step {event['step']}/{event['steps']}"
            else:
                text = event.get("stage", "")
            self._status.update(f"{self.label}: {text} · {elapsed:.0f} s")

    def _line(self, text: str) -> None:
        if self._status is not None:
            self.console.print(text, highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)
