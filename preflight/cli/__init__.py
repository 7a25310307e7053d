"""The command line, one module per command: `check` (a model file, or the configured models, with the CI
gate), `render`, `compare`, `targets`, `calibration`; `dispatch` turns exceptions into exit codes and
`files` reads and writes reports. May import every other package: this is a door, like `preflight.api`."""
from __future__ import annotations

from preflight.cli.dispatch import main

__all__ = ["main"]
