"""Live progress while probing: which batch size, which step, elapsed time.

In a notebook (an IPython kernel) one display is updated in place and, when the check is done, replaced by
its result. On a terminal a rich status line updates in place; elsewhere (CI logs) one line is printed per
finished probe, so logs stay readable.
"""
from __future__ import annotations

import html
import sys
import time

from preflight.render.notebook import in_kernel
from preflight.common.units import format_bytes

NOTEBOOK_UPDATE_SECONDS = 0.5  # at most two updates a second: each one is a message to the front end


class ProgressDisplay:
    def __init__(self, enabled: bool = True, label: str = "preflight"):
        self.enabled = enabled
        self.label = label
        self.started = time.monotonic()
        self.notebook = enabled and in_kernel()
        self.finished_probes: list[str] = []  # "batch 32: 37.0 MiB", for the notebook's single display
        self._handle = None                    # the notebook's display handle
        self._last_update = 0.0
        self._status = None
        self.console = None
        if not self.notebook:
            from rich.console import Console

            self.console = Console(stderr=True)

    def __enter__(self) -> "ProgressDisplay":
        if self.notebook:
            from IPython.display import display

            self._handle = display(self._notebook_bundle("starting"), raw=True, display_id=True)
        elif self.enabled and self.console.is_terminal:
            self._status = self.console.status(f"{self.label}: starting")
            self._status.start()
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if self._status is not None:
            self._status.stop()
        if self._handle is not None and exc_type is not None:
            reason = "interrupted" if exc_type is KeyboardInterrupt else "stopped by the error below"
            self._handle.update(self._notebook_bundle(reason), raw=True)

    def show_result(self, report) -> None:
        """In a notebook, the progress display becomes the result (Report's own view)."""
        if self._handle is not None:
            self._handle.update(report.shown_live(), raw=True)

    def __call__(self, event: dict) -> None:
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.started
        kind = event.get("event")
        if kind == "probe":
            probe = event["probe"]
            peak = format_bytes(probe["peak_bytes"]) if probe.get("peak_bytes") else probe["status"]
            self.finished_probes.append(f"batch {probe['batch_size']}: {peak}")
            self._line(f"  batch {probe['batch_size']:>6}: {peak}  ({elapsed:.0f} s)")
        elif kind == "stage":  # a new part of the check, with its own line (the largest-batch search)
            self._line(f"{event['text']}  ({elapsed:.0f} s)")
        elif kind == "progress":
            if event.get("stage") == "probe":
                text = f"probing batch {event['batch_size']} · step {event['step']}/{event['steps']}"
            else:
                text = event.get("stage", "")
            if self._status is not None:
                self._status.update(f"{self.label}: {text} · {elapsed:.0f} s")
            elif self._handle is not None and time.monotonic() - self._last_update >= NOTEBOOK_UPDATE_SECONDS:
                self._handle.update(self._notebook_bundle(text), raw=True)
                self._last_update = time.monotonic()

    def _line(self, text: str) -> None:
        if self._handle is not None:
            return  # the notebook's display lists finished probes itself, at its next update
        if self._status is not None:
            self.console.print(text, highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)

    def _notebook_bundle(self, stage: str) -> dict[str, str]:
        elapsed = time.monotonic() - self.started
        line = f"{self.label}: {stage} · {elapsed:.0f} s"
        done = " · ".join(self.finished_probes)
        text = line + (f"\n{done}" if done else "")
        markup = (f'<div class="preflight-progress" style="font-family: ui-monospace, monospace; font-size: 13px;">'
                  f"{html.escape(line)}" + (f'<br><span style="color: #6b7785;">{html.escape(done)}</span>' if done else "")
                  + "</div>")
        return {"text/plain": text, "text/html": markup}
