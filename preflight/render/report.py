"""The Report: the JSON document of one preflight run, and the object a notebook gets back.

The document (format 1) is the single source every renderer reads:

    {"format": 1, "preflight_version": str, "created_at": ISO-8601 str,
     "model": {"name", "params_total", "params_trainable", "params_non_trainable",
               "param_bytes_by_dtype": {dtype: int}, "optimizer": str, "jit_compile": bool,
               "dtype_policy": str},
     "device": {"kind": "CPU"|"GPU"|"TPU", "name": str, "allocator": str},
     "target": {"name": str, "usable_bytes": int, "description": str} | null,
     "batch_size": int, "peak_bytes": int|null,
     "peak_source": "measured"|"predicted"|"shapes" (a search with no measured configuration),
     "footprint": {"parameters", "gradients", "optimizer", "activations", "inputs", "other": int;
                   "frozen_parameters" too when some weights are not trainable: "parameters" are then the trainable},
     "footprint_sources": {same keys: "measured"|"derived"},
     "probes": [{"batch_size", "peak_bytes", "peak_bytes_runs", "resident_bytes", "step_seconds",
                 "warmup_seconds", "status": "ok"|"oom"|"timeout"|"crashed"|"error", "message",
                 "spread", "losses": [float | "nan" | "inf" | "-inf"], "weights_changed": bool|null}],
     "layers": [{"name", "type", "output_shape", "params", "activation_bytes_per_sample"}],
     "budget_bytes": int|null, "fits": bool|null,
     "findings": [{"id", "severity": "info"|"warning"|"error", "message"}],
     # optional sections, added by later stages; renderers skip what is absent:
     "curve": [{"batch_size", "peak_bytes", "source"}], "max_batch_size", "recommended_batch_size",
     "length_curve" (only when an input has an axis of no fixed size besides the batch, analysis.lengths):
         {"axes", "batch_size", "planned_length", "length_source", "max_model_length",
          "probes": [{"length", "status", "peak_bytes", "step_seconds", "message"}],
          "curve": [{"length", "peak_bytes", "source"}], "max_length", "max_length_source"},
     "recommendations": [...], "peak_composition": {...}, "search": {...},
     "baseline_diff": {...} (preflight.analysis.diff), "gate": {"passed", "reasons", "failures": [{"id", "message"}]}}

Renderers are pure functions of this dict, so `python -m preflight render report.json` re-renders a
saved run and the HTML page embeds the same JSON it was drawn from.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_atomically(path: str | os.PathLike, text: str) -> None:
    """Write via a temp file and rename, so a crash never leaves a half-written report."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a report is an ordinary file
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


REPORT_KEYS = {"format", "model", "probes", "findings"}  # what every document kind has (run and search)


class Report:
    """A preflight result. `report` in a notebook shows the notebook view (verdict, charts, findings,
    what-ifs; probes and layers collapsed); a console shows the terminal summary."""

    @classmethod
    def load(cls, path: str | os.PathLike, comparison: bool = False) -> "Report":
        """A JSON report written by preflight (or, with `comparison`, a `compare` document), checked for its
        format, the keys every document kind has and, for a report, the shape of the fields its readers use
        (preflight.analysis.schema); anything else (not JSON, cut short, another tool's, an older format, a
        field of the wrong type) is refused with a ConfigError that names it and says what to pass."""
        from preflight.analysis.comparison import COMPARISON_FORMAT, COMPARISON_KEYS, COMPARISON_KIND
        from preflight.analysis.document import FORMAT_VERSION
        from preflight.errors import ConfigError

        fix = "pass a JSON report written by `python -m preflight ... --json`"
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the report {path}: {exc}", hint=fix) from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} is not JSON, or is cut short: {exc}", hint=fix) from None
        if not isinstance(document, dict) or "format" not in document:
            raise ConfigError(f"{path} is JSON but not a preflight report (it has no \"format\" field)", hint=fix)
        version, keys = FORMAT_VERSION, REPORT_KEYS
        if comparison and document.get("kind") == COMPARISON_KIND:
            version, keys = COMPARISON_FORMAT, COMPARISON_KEYS
        if document["format"] != version or not keys <= set(document):
            raise ConfigError(f"{path} is not a preflight report of format {version} "
                              f"(format {document['format']!r}, missing "
                              f"{', '.join(sorted(keys - set(document))) or 'nothing'})",
                              hint=f"{fix} by this version of preflight")
        if keys is REPORT_KEYS:
            from preflight.analysis.schema import problems

            found = problems(document)
            if found:
                more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
                raise ConfigError(f"{path} is not a report preflight can read: {found[0]}{more}",
                                  hint=f"{fix}, unedited")
        return cls(document)

    def __init__(self, document: dict[str, Any]):
        self.document = document
        self._shown_in_cell: int | None = None  # the notebook cell whose progress display became this report

    # The fields people reach for first.
    @property
    def fits(self) -> bool | None:
        return self.document.get("fits")

    @property
    def peak_bytes(self) -> int | None:
        return self.document.get("peak_bytes")

    @property
    def footprint(self) -> dict[str, int]:
        return dict(self.document.get("footprint", {}))

    @property
    def findings(self) -> list[dict[str, Any]]:
        return list(self.document.get("findings", []))

    @property
    def max_batch_size(self) -> int | None:
        return self.document.get("max_batch_size")

    @property
    def recommended_batch_size(self) -> int | None:
        return self.document.get("recommended_batch_size")

    def to_json(self) -> str:
        return json.dumps(self.document, indent=2, sort_keys=False)

    def save_json(self, path: str | os.PathLike) -> Path:
        write_atomically(path, self.to_json() + "\n")
        return Path(path)

    def save_html(self, path: str | os.PathLike) -> Path:
        from preflight.render.html import render_html

        write_atomically(path, render_html(self.document))
        return Path(path)

    def _repr_html_(self) -> str:
        from preflight.render.html import render_notebook_html

        return render_notebook_html(self.document)

    def _repr_markdown_(self) -> str:
        from preflight.render.markdown import render_markdown

        return render_markdown(self.document)

    def __repr__(self) -> str:
        from preflight.render.terminal import render_text

        return render_text(self.document)

    def mimebundle(self) -> dict[str, str]:
        return {"text/html": self._repr_html_(), "text/markdown": self._repr_markdown_(), "text/plain": repr(self)}

    def shown_live(self) -> dict[str, str]:
        """The bundle check() puts in its progress display when done; the cell then shows no second copy."""
        from preflight.render.notebook import current_cell

        self._shown_in_cell = current_cell()
        return self.mimebundle()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        from preflight.render.notebook import current_cell

        if self._shown_in_cell is not None and self._shown_in_cell == current_cell():
            self._shown_in_cell = None  # `preflight.check(...)` as the cell's last line: already on screen
            return
        display(self.mimebundle(), raw=True)
