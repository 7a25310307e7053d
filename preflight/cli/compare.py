"""`python -m preflight compare model.py`: the same model and planned batch measured under each Keras backend.

One check per backend (`preflight.api.check(..., backend=b)`), each its own child process at the
planned batch only, no what-ifs; a check that raises is that backend's error row and the others go on.
preflight.analysis.comparison turns the reports into the comparison document; the CLI renders it.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from pathlib import Path
from typing import Any, Callable

from preflight import errors
from preflight.cli.files import write_report


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
    from preflight.common.units import parse_size

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


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m preflight compare",
        description="Measure one model at its planned batch under each installed Keras backend "
                    "(TensorFlow, JAX, PyTorch) and show peak, step time and verdict side by side.",
        epilog="Exit codes (the chosen backend's): 0 fits (or no budget), 1 does not fit or nothing measured, "
               "2 usage error, 3 the model or data failed under it. Sizes: GiB/MiB are powers of 1024, GB/MB of 1000.")
    parser.add_argument("model_file", help="a model.py defining build_model()/get_model()/model")
    parser.add_argument("--backends", help="comma-separated, e.g. tensorflow,jax (default: every installed one)")
    parser.add_argument("--backend", help="the backend your run uses, compared with the others (default: the "
                                          "backend setting, else KERAS_BACKEND, else keras.json, else tensorflow)")
    parser.add_argument("--batch-size", type=int, help="planned batch size (default: the file's batch_size, else 32)")
    parser.add_argument("--budget", help="memory the run may use, e.g. 15GiB, 512MiB, 16GB")
    parser.add_argument("--target", help="a device to fit, e.g. t4, a100-40gb (see `targets`)")
    parser.add_argument("--timeout", type=float, help="seconds a probe may take before it counts as hung (default 600)")
    parser.add_argument("--json", default="preflight-compare.json",
                        help="JSON comparison path (default preflight-compare.json; 'none' to skip)")
    parser.add_argument("--html", default="preflight-compare.html",
                        help="HTML comparison path (default preflight-compare.html; 'none' to skip)")
    parser.add_argument("--markdown", help="also write the Markdown comparison here, e.g. $GITHUB_STEP_SUMMARY")
    parser.add_argument("--quiet", action="store_true", help="no progress and no table, only the exit code")
    return parser


def run(argv: list[str]) -> int:
    from preflight.api import DEFAULT_BATCH_SIZE, literal_batch_size
    from preflight.cli.compare import backends_to_compare, compare_backends, comparison_exit_code
    from preflight.settings.config import load_settings
    from preflight.engine.backends import resolve_backend
    from preflight.render.comparison import print_comparison, render_comparison_html, render_comparison_markdown
    from preflight.settings.validate import model_file, output_file

    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:
        return errors.EXIT_OK if exc.code == 0 else errors.EXIT_USAGE
    # Budget, target, batch size, timeout and the chosen backend layer like the check's
    # ([tool.preflight] < env < flags).
    settings = load_settings({"batch_size": args.batch_size, "budget": args.budget, "target": args.target,
                              "timeout": args.timeout, "backend": args.backend})
    model_file(args.model_file)
    json_path, html_path = output_file(args.json, "--json"), output_file(args.html, "--html")
    markdown_path = output_file(args.markdown, "--markdown") if args.markdown else None
    chosen = resolve_backend(settings.backend)
    backends = backends_to_compare(args.backends, chosen)
    batch_size = settings.batch_size or literal_batch_size(args.model_file) or DEFAULT_BATCH_SIZE

    def announce(backend: str, index: int, count: int) -> None:
        if not args.quiet:
            print(f"preflight: {backend} ({index}/{count}), batch {batch_size}", file=sys.stderr)

    comparison, failures = compare_backends(
        args.model_file, backends=backends, chosen_backend=chosen, batch_size=batch_size,
        budget=settings.budget, target=settings.target, timeout=settings.timeout, progress=not args.quiet,
        announce=announce)
    for row in comparison["rows"]:
        if row["backend"] in failures:
            print(f"preflight: error: {row['backend']}: {row['message']}", file=sys.stderr)
    if json_path:
        write_report(json_path, json.dumps(comparison, indent=2) + "\n")
    if html_path:
        write_report(html_path, render_comparison_html(comparison))
    if markdown_path:
        write_report(markdown_path, render_comparison_markdown(comparison))
    if not args.quiet:
        print_comparison(comparison)
        written = [p for p in (json_path, html_path, markdown_path) if p]
        if written:
            print(f"report: {', '.join(written)}", file=sys.stderr)
    return comparison_exit_code(comparison, failures)
