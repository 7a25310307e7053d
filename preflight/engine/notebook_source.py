"""A Jupyter notebook (.ipynb) read as one Python program: its code cells, in order, as Jupyter runs them.

Shell lines and magics (`!pip install ...`, `%matplotlib inline`, `files = !ls`, `model.fit?`) are turned
into Python by IPython's own input transformer (`TransformerManager`), exactly as Jupyter would: into
`get_ipython().system(...)`-style calls, which the dry run answers with `SkippedShell` (nothing installed,
nothing run). Without IPython a small fallback replaces those lines with `pass`. Cell magics: a
`%%capture` or `%%time` cell runs its body (transformed the same way); any other `%%` cell (`%%bash`,
`%%writefile`, `%%html`) is skipped whole. Each skipped line is listed, for the report's note.

Reads JSON only: no TensorFlow, no IPython kernel. The parent reads notebooks too (batch size, launch facts).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from preflight.errors import TargetLoadError

# Cell magics whose body is the user's Python; the magic itself only captures or times output.
BODY_CELL_MAGICS = ("capture", "time")
# A line IPython turns into a call: `!cmd`, `%magic`, `x = !cmd`, `x = %magic`, `obj?` / `obj??`.
_ESCAPED_LINE = re.compile(r"^\s*([!%]|[\w.\[\]\s,]+=\s*[!%])|^\s*[\w.]+\?\??\s*$")
_SHOWN_CHARS = 80


@dataclass(frozen=True)
class NotebookProgram:
    text: str                                 # the code cells as one Python program
    origins: tuple[tuple[int, int], ...]      # per line of `text`: (code cell number, line in that cell; 0 unknown)
    skipped: tuple[str, ...]                  # "code cell 1, line 1: !pip install -q keras-tuner"
    code_cells: int

    def where(self, line: int | None) -> str:
        """'code cell 3, line 2' for a line of `text` (1-based); '' when outside it."""
        if not line or not 0 < line <= len(self.origins):
            return ""
        cell, cell_line = self.origins[line - 1]
        return f"code cell {cell}, line {cell_line}" if cell_line else f"code cell {cell}"


class SkippedShell:
    """What `get_ipython()` returns while a notebook runs in the dry run: shell commands and magics are not
    run (no `pip install` in a dry run, no plots); `files = !ls` gets an empty list."""

    def system(self, command: str) -> None:
        return None

    def getoutput(self, command: str, *args, **kwargs) -> list[str]:
        return []

    def run_line_magic(self, name: str, line: str, *args, **kwargs) -> None:
        return None

    def run_cell_magic(self, name: str, line: str, cell: str) -> None:
        return None

    def __repr__(self) -> str:
        return "<preflight dry run: shell commands and magics skipped>"


def _cell_source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def read_cells(path: Path) -> list[str]:
    """The code cells' sources; a file that is not an nbformat 4 notebook is a TargetLoadError."""
    fix = "pass a notebook saved by Jupyter or Colab (File > Download > .ipynb), or the notebook as a .py file"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise TargetLoadError(f"cannot read {path.name}: {exc}", hint=fix) from None
    except json.JSONDecodeError as exc:
        raise TargetLoadError(f"{path.name} is not a notebook: it is not JSON, or is cut short ({exc})",
                              hint=fix) from None
    if not isinstance(document, dict) or not isinstance(document.get("cells"), list):
        found = "an older notebook format (nbformat 3)" if isinstance(document, dict) and "worksheets" in document \
            else "JSON without a list of cells"
        raise TargetLoadError(f"{path.name} is not a Jupyter notebook of format 4: it is {found}",
                              hint="open and save it in a current Jupyter (nbformat 4)")
    return [_cell_source(cell) for cell in document["cells"]
            if isinstance(cell, dict) and cell.get("cell_type") == "code"]


def _transformer():
    """IPython's input transformer, or None when IPython is not installed."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:
        return None
    return TransformerManager()


def _shown(line: str) -> str:
    line = line.strip()
    return line if len(line) <= _SHOWN_CHARS else line[:_SHOWN_CHARS - 1] + "…"


def read_notebook(path: str | Path) -> NotebookProgram:
    path = Path(path)
    cells = read_cells(path)
    transformer = _transformer()
    lines: list[str] = []
    origins: list[tuple[int, int]] = []
    skipped: list[str] = []
    for number, source in enumerate(cells, start=1):
        cell_lines = source.splitlines()
        first = next((i for i, line in enumerate(cell_lines) if line.strip()), None)
        offset = 0
        if first is not None and cell_lines[first].lstrip().startswith("%%"):
            magic = cell_lines[first].lstrip()[2:].split(maxsplit=1)
            if not magic or magic[0] not in BODY_CELL_MAGICS:
                skipped.append(f"code cell {number}: {_shown(cell_lines[first])} cell")
                continue
            offset = first + 1
            cell_lines = cell_lines[offset:]
        escaped = [i for i, line in enumerate(cell_lines) if _ESCAPED_LINE.match(line)]
        skipped += [f"code cell {number}, line {i + offset + 1}: {_shown(cell_lines[i])}" for i in escaped]
        body = "\n".join(cell_lines) + "\n"
        if transformer is not None:
            python = transformer.transform_cell(body).splitlines()
        else:
            python = [re.match(r"\s*", line).group(0) + "pass" if i in escaped else line
                      for i, line in enumerate(cell_lines)]
        # IPython joins a backslash-continued shell line into one: then only the cell is known, not the line.
        exact = len(python) == len(cell_lines)
        lines += python
        origins += [(number, i + offset + 1 if exact else 0) for i in range(len(python))]
    return NotebookProgram("\n".join(lines) + "\n", tuple(origins), tuple(skipped), len(cells))
