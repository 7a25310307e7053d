"""The user's code as one Python program: a model.py as it is, or a notebook's code cells
(preflight.engine.notebook_source), with where each line came from, for messages and the report.

No TensorFlow: the parent reads programs (batch size, launch facts, syntax) as the child runs them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from preflight.engine.notebook_source import NotebookProgram, read_notebook
from preflight.errors import TargetLoadError

NOTEBOOK_SUFFIX = ".ipynb"


@dataclass(frozen=True)
class Program:
    path: Path
    text: str
    notebook: NotebookProgram | None = None

    @property
    def skipped(self) -> tuple[str, ...]:
        """The notebook's shell lines and magics the dry run does not run."""
        return self.notebook.skipped if self.notebook else ()

    def where(self, line: int | None) -> str:
        """'model.py, line 6' or 'colab.ipynb, code cell 3, line 2'; the file's name alone without a line."""
        if self.notebook is not None:
            inside = self.notebook.where(line)
            return f"{self.path.name}, {inside}" if inside else self.path.name
        return f"{self.path.name}, line {line}" if line else self.path.name


def is_notebook(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() == NOTEBOOK_SUFFIX


def read_program(path: str | os.PathLike) -> Program:
    """The program; an unreadable file or notebook is a TargetLoadError (its syntax is judged by the caller)."""
    file = Path(path)
    if is_notebook(file):
        return Program(file, (notebook := read_notebook(file)).text, notebook)
    try:
        return Program(file, file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise TargetLoadError(f"cannot read {file.name}: {exc}",
                              hint="pass a Python source file saved as UTF-8, a notebook (.ipynb) or a saved "
                                   "model (.keras, .h5)") from None


def program_text(path: str | os.PathLike) -> str | None:
    """The program's text for a read without running it (launch facts, a literal batch size); None when the
    file cannot be read (the child reports that with a proper message)."""
    try:
        return read_program(path).text
    except TargetLoadError:
        return None
