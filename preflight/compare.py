"""`python -m preflight compare model.py`: the same model and planned batch measured under each Keras backend.

One check per backend (`preflight.api.check(..., backend=b)`), each its own child process at the
planned batch only, no what-ifs; a check that raises is that backend's error row and the others go on.
preflight.analysis.comparison turns the reports into the comparison document; the CLI renders it.
"""
from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any, Callable

from preflight import errors


def compare_backends(model_file: str, *, backends: list[str], chosen_backend: str, batch_size: int,
                     budget: str | int | None, target: str | None = None, timeout: float = 600.0,
                     progress: bool = True,
                     announce: Callable[[str, int, int], None] | None = None) -> tuple[dict[str, Any], dict[str, int]]:
    """Check `model_file` under each backend; (the comparison document, the exit code of each failed check).

    `backends` in display order, the chosen one among them. `announce(backend, index, count)` is called
    before each check (the CLI's progress line).
    """
    from preflight.analysis.comparison import build_comparison
    from preflight.engine.backends import installed_version
    from preflight.analysis.document import RunSettings, usable_bytes
    from preflight.api import check
    from preflight.units import parse_size

    results: dict[str, dict[str, Any] | str] = {}
    failures: dict[str, int] = {}
    for index, backend in enumerate(backends, start=1):
        if announce is not None:
            announce(backend, index, len(backends))
        try:
            report = check(model_file, batch_size=batch_size, budget=budget, target=target, backend=backend,
                           timeout=timeout, whatif=False, probe_batch_sizes=[batch_size], progress=progress)
        except errors.PreflightError as exc:
            results[backend], failures[backend] = exc.message, exc.exit_code
        except Exception as exc:  # noqa: BLE001 - a bug under one backend: report it, measure the others
            results[backend] = f"internal error: {type(exc).__name__}: {exc}"
            failures[backend] = errors.EXIT_INTERNAL
        else:
            results[backend] = report.document
    documents = [result for result in results.values() if isinstance(result, dict)]
    # The budget as check() reads it: a target's usable memory when only a target is named.
    budget_bytes = usable_bytes(RunSettings(batch_size=batch_size, target_name=target,
                                            budget_bytes=parse_size(budget) if budget is not None else None))
    comparison = build_comparison(
        results, chosen_backend=chosen_backend,
        model_name=documents[0]["model"]["name"] if documents else Path(model_file).stem,
        batch_size=batch_size, budget_bytes=budget_bytes,
        created_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        versions={backend: installed_version(backend) for backend in backends})
    return comparison, failures


def comparison_exit_code(comparison: dict[str, Any], failures: dict[str, int]) -> int:
    """The chosen backend decides: 0 fits (or no budget), 1 does not fit or nothing measured, else the
    exit code its check raised with (3: the user's model or data failed under it)."""
    from preflight.analysis.comparison import chosen_row

    chosen = comparison["chosen_backend"]
    if chosen in failures:
        return failures[chosen]
    row = chosen_row(comparison)
    if row is None:
        raise ValueError(f"the comparison has no row for the chosen backend {chosen!r}")
    return {"fits": errors.EXIT_OK, "measured": errors.EXIT_OK}.get(row["status"], errors.EXIT_GATE_FAILED)


def backends_to_compare(listed: str | None, chosen: str) -> list[str]:
    """The --backends list checked (exit 2 for an unknown or absent one), default every installed one;
    the chosen backend first, added when the list leaves it out: it is what the others are compared with."""
    from preflight.engine.backends import checked_backend, installed_backends

    if listed is None:
        names = installed_backends()
    else:
        names = [checked_backend(name, "--backends") for name in listed.split(",") if name.strip()]
        if not names:
            raise errors.UsageError("--backends lists no backend", hint="e.g. --backends tensorflow,jax")
    ordered = [chosen] + [name for name in names if name != chosen]
    return list(dict.fromkeys(ordered))
