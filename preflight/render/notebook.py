"""Jupyter support: is this an IPython kernel, and which cell is running.

Used by the live progress display (preflight.render.progress) and by Report's own display, so a check's result
appears once per cell. Imports IPython only when a kernel is already running in this process.
"""
from __future__ import annotations

import sys


def _shell():
    """The running IPython kernel's shell, or None (a plain interpreter, or IPython in a terminal)."""
    if "ipykernel" not in sys.modules or "IPython" not in sys.modules:
        return None
    from IPython import get_ipython

    shell = get_ipython()
    return shell if shell is not None and hasattr(shell, "kernel") else None


def in_kernel() -> bool:
    return _shell() is not None


def current_cell() -> int | None:
    """The execution count of the cell now running (the same for the whole cell), None outside a kernel."""
    shell = _shell()
    return None if shell is None else shell.execution_count
