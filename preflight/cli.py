"""Command line: `python -m preflight model.py [flags]`, `python -m preflight render report.json`,
`python -m preflight compare model.py`, `python -m preflight targets`.

`main(argv) -> int` is the only place exceptions become exit codes (see preflight.errors). Without a
model file, the models listed in `[[tool.preflight.models]]` are checked one after another, each in its
own child processes; the exit code is the worst of theirs (the highest: 4 > 3 > 2 > 1 > 0).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import traceback
import warnings
from pathlib import Path

from preflight import errors

SUBCOMMANDS = ("render", "compare", "targets", "calibration")


def _check_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m preflight",
        description="Dry-run real training steps of a Keras model and tell whether the run will fit. "
                    "Other commands: `render REPORT.json`, `compare MODEL.py`, `targets`, `calibration`.",
        epilog="Exit codes: 0 fits (or no budget), 1 does not fit / gate failed, 2 usage or config error, "
               "3 the model or data failed, 4 internal error, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM). "
               "Sizes: GiB/MiB are powers of 1024, GB/MB of 1000.",
    )
    parser.add_argument("model_file", nargs="?",
                        help="a model.py defining build_model()/get_model()/model or calling model.fit(...), a "
                             "notebook (.ipynb), or a saved model (.keras, .h5); "
                             "without it, the [[tool.preflight.models]] listed in pyproject.toml")
    parser.add_argument("--custom-objects", help="a saved model's custom layers, losses and models: the module.py "
                                                 "that defines them")
    parser.add_argument("--data", help="a saved model's training data: an .npz file holding arrays x and y "
                                       "(default: synthesized from the model)")
    parser.add_argument("--batch-size", type=int, help="planned batch size (default: the file's batch_size, else 32)")
    parser.add_argument("--budget", help="memory the run may use, e.g. 15GiB, 512MiB, 16GB")
    parser.add_argument("--seq-len", type=int, help="the planned size of the inputs' axes of no fixed size besides the "
                                                    "batch (a sequence length); the report adds a peak-vs-length curve")
    parser.add_argument("--target", help="a device to fit, e.g. t4, a100-40gb, tpu-v3, cpu (see `targets`)")
    parser.add_argument("--host-budget", help="host RAM the input pipeline may use beside a GPU/TPU target, e.g. "
                                              "12GiB, or colab, kaggle (default: this host's available memory); "
                                              "on a CPU run --budget covers the step and the pipeline together")
    parser.add_argument("--json", help="JSON report path (default preflight-report.json; 'none' to skip)")
    parser.add_argument("--html", help="HTML report path (default preflight-report.html; 'none' to skip)")
    parser.add_argument("--backend", help="the Keras backend to measure under: tensorflow, jax or torch "
                                          "(default: KERAS_BACKEND, else keras.json, else tensorflow)")
    parser.add_argument("--timeout", type=float, help="seconds a probe may take before it counts as hung (default 600)")
    parser.add_argument("--steps", type=int, help="measured steps per batch size, after one warm-up (default 3)")
    parser.add_argument("--max-batch-time", type=float,
                        help="seconds the largest-batch search (model.fit in fresh processes under the budget) may "
                             "take after the verdict (default 180; 0 skips it)")
    parser.add_argument("--single-thread", action="store_true", default=None,
                        help="one inter-op and one intra-op thread: reproducible peaks, slower steps")
    parser.add_argument("--baseline", help="a previous JSON report (or a folder of <model name>.json reports): "
                                           "the report shows what grew; the --max-*-increase thresholds gate it "
                                           "('none' ignores the configured one)")
    parser.add_argument("--max-increase", help="fail if the peak grew more than this over the baseline, e.g. 10%%")
    parser.add_argument("--max-params-increase", help="fail if the parameter count grew more than this, e.g. 5%%")
    parser.add_argument("--max-optimizer-increase", help="fail if the optimizer state grew more than this")
    parser.add_argument("--max-step-time-increase", help="fail if the step time at the planned batch grew more than this")
    parser.add_argument("--markdown", help="also write the Markdown summary here, e.g. $GITHUB_STEP_SUMMARY")
    parser.add_argument("--report-dir", help="several models: where <name>.json/.html go (default preflight-reports)")
    parser.add_argument("--whatif", action=argparse.BooleanOptionalAction, default=None,
                        help="measure what-ifs (mixed precision, remat, shrinking, optimizers); "
                             "default: only when it does not fit and one could make it fit")
    parser.add_argument("--profile", help="write a TensorBoard profile of the planned batch here "
                                          "(tensorboard --logdir DIR); the report names what holds memory at the peak")
    parser.add_argument("--time-limit", help="the run's (or the search's) time limit, e.g. 12h, or colab (12 h)")
    parser.add_argument("--epochs", type=int, help="epochs of the run, or per trial of a search "
                                                   "(default: the file's fit(...) or search(...) call)")
    parser.add_argument("--steps-per-epoch", type=int, help="steps per epoch for the run-time estimate "
                                                            "(default: the file's fit(...), else the data's size)")
    parser.add_argument("--checkpoint-dir", help="where checkpoints go, for the disk check "
                                                 "(default: the file's ModelCheckpoint path)")
    parser.add_argument("--checkpoints", type=int, help="checkpoints kept (default: from the file's ModelCheckpoint)")
    parser.add_argument("--rebuilds", type=int, help="measure host RAM over N build_model() calls, "
                                                     "as written and with clear_session() (costs 2N builds)")
    parser.add_argument("--configs", type=int, default=5,
                        help="keras-tuner files: configurations dry-run for real, each in a fresh process (default 5)")
    parser.add_argument("--samples", type=int, default=200,
                        help="keras-tuner files: configurations sampled and predicted from their shapes (default 200)")
    parser.add_argument("--quiet", action="store_true", help="no progress and no summary, only the exit code")
    return parser


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
        if argv and argv[0] == "render":
            return _render(argv[1:])
        if argv and argv[0] == "compare":
            return _compare(argv[1:])
        if argv and argv[0] == "targets":
            return _targets()
        if argv and argv[0] == "calibration":
            return _calibration(argv[1:])
        return _check(argv)
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


def _check(argv: list[str]) -> int:
    from preflight.config import load_settings
    from preflight.engine.backends import resolve_backend
    from preflight.validate import model_file, setting

    parser = _check_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return errors.EXIT_OK if exc.code == 0 else errors.EXIT_USAGE
    if args.configs < 1 or args.samples < 1:
        raise errors.UsageError("--configs and --samples need at least 1", hint="e.g. --configs 5 --samples 200")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            settings = load_settings({
                "batch_size": args.batch_size, "budget": args.budget, "target": args.target,
                "json": args.json, "html": args.html, "timeout": args.timeout, "steps": args.steps,
                "max_batch_time": args.max_batch_time, "single_thread": args.single_thread, "backend": args.backend, "baseline": args.baseline, "max_increase": args.max_increase,
                "max_params_increase": args.max_params_increase, "max_optimizer_increase": args.max_optimizer_increase,
                "max_step_time_increase": args.max_step_time_increase, "markdown": args.markdown,
                "report_dir": args.report_dir, "profile": args.profile,
            })
        finally:  # an unknown key next to a bad value: both are worth knowing
            for warning in caught:
                print(f"preflight: warning: {warning.message}", file=sys.stderr)
    for name in ("host_budget", "time_limit", "epochs", "steps_per_epoch", "checkpoint_dir", "checkpoints", "rebuilds",
                 "seq_len"):
        if getattr(args, name) is not None:
            setting(name, getattr(args, name), "--" + name.replace("_", "-"))
    # Keras reads KERAS_BACKEND once, at import: set before anything here imports it (a search file is
    # run in this process), and inherited by every dry-run child.
    os.environ["KERAS_BACKEND"] = resolve_backend(settings.backend)
    if args.model_file is None:
        if not settings.models:
            raise errors.UsageError("no model file given, and pyproject.toml lists no [[tool.preflight.models]]",
                                    hint="pass the path of your model.py, or list models in pyproject.toml")
        return _check_models(args, settings)
    model_file(args.model_file)
    report = _check_one(args.model_file, Path(args.model_file).stem, args, settings,
                        settings.json, settings.html)
    if settings.markdown:
        from preflight.render.markdown import render_markdown

        _write_report(settings.markdown, render_markdown(report.document))
    return _exit_code(report.document)


def _baseline_path(baseline: str | None, name: str) -> str | None:
    """A baseline folder holds one report per model, named <name>.json; a missing one means a new model."""
    if baseline and Path(baseline).is_dir():
        candidate = Path(baseline) / f"{name}.json"
        return str(candidate) if candidate.is_file() else None
    return baseline


def _check_one(model_file: str, name: str, args, settings, json_path: str | None, html_path: str | None):
    """Check one model file, apply the gate, write its reports; the Report (its document has "gate")."""
    from preflight.api import check
    from preflight.analysis.diff import compare_reports
    from preflight.gate import GateThresholds, evaluate_gate
    from preflight.render.terminal import print_summary
    from preflight.tuner.cli_support import looks_like_search_file

    baseline = _read_report(_baseline_path(settings.baseline, name))
    thresholds = GateThresholds.from_settings(settings)
    if looks_like_search_file(model_file):
        report = _check_search_file(model_file, args, settings)
    else:
        report = check(model_file, batch_size=settings.batch_size, budget=settings.budget,
                       target=settings.target, timeout=settings.timeout, steps=settings.steps,
                       max_batch_time=settings.max_batch_time,
                       single_thread=settings.single_thread, whatif=args.whatif, backend=settings.backend,
                       profile=settings.profile, progress=not args.quiet, epochs=args.epochs,
                       steps_per_epoch=args.steps_per_epoch, time_limit=args.time_limit,
                       checkpoint_dir=args.checkpoint_dir, checkpoints=args.checkpoints, rebuilds=args.rebuilds,
                       host_budget=args.host_budget, custom_objects=args.custom_objects, data=args.data,
                       seq_len=args.seq_len)
    if baseline is not None:
        report.document["baseline_diff"] = compare_reports(baseline, report.document)
    gate = evaluate_gate(report.document, thresholds)
    report.document["gate"] = gate.to_dict()
    if json_path:
        _write_report(json_path, report.to_json() + "\n")
    if html_path:
        from preflight.render.html import render_html

        _write_report(html_path, render_html(report.document))
    if not args.quiet:
        print_summary(report.document)
        for reason in gate.reasons:
            print(f"gate: {reason}", file=sys.stderr)
        written = [p for p in (json_path, html_path) if p]
        if written:
            print(f"report: {', '.join(written)}", file=sys.stderr)
    return report


def _check_models(args, settings) -> int:
    """Every [[tool.preflight.models]] entry in turn; one failing model does not stop the others."""
    from preflight.render.markdown import render_models_markdown
    from preflight.render.terminal import print_models_summary

    report_dir = Path(settings.report_dir)
    results = []
    for entry in settings.models:
        json_path, html_path = str(report_dir / f"{entry.name}.json"), str(report_dir / f"{entry.name}.html")
        if not args.quiet:
            print(f"preflight: {entry.name} ({entry.path})", file=sys.stderr)
        result = {"name": entry.name, "path": entry.path, "json": json_path, "html": html_path, "document": None}
        try:
            report = _check_one(entry.path, entry.name, args, entry.settings(settings), json_path, html_path)
        except errors.PreflightError as exc:
            print(f"preflight: error: {entry.name}: {exc}", file=sys.stderr)
            result.update(exit_code=exc.exit_code, message=exc.message, json=None, html=None)
        except Exception as exc:  # noqa: BLE001 - a bug with one model: report it, check the others
            print(f"preflight: internal error: {entry.name}: {type(exc).__name__}: {exc}", file=sys.stderr)
            result.update(exit_code=errors.EXIT_INTERNAL, message=f"internal error: {type(exc).__name__}: {exc}",
                          json=None, html=None)
        else:
            result.update(exit_code=_exit_code(report.document), message="", document=report.document)
        results.append(result)
    markdown_path = settings.markdown or str(report_dir / "summary.md")
    _write_report(markdown_path, render_models_markdown(results))
    if not args.quiet:
        print_models_summary(results)
        print(f"summary: {markdown_path}", file=sys.stderr)
    # The codes are ordered by severity, so the worst is the largest: 4 > 3 > 2 > 1 > 0.
    return max(result["exit_code"] for result in results)


def _exit_code(document: dict) -> int:
    """3 when a search's dry-run configurations failed for the user's reason, else the gate's 0 or 1."""
    from preflight.analysis.verdict import verdict_state

    if verdict_state(document) == "trials-fail":
        return errors.EXIT_USER_CODE
    return errors.EXIT_OK if document["gate"]["passed"] else errors.EXIT_GATE_FAILED


def _check_search_file(model_file: str, args, settings):
    """A tune.py (build_model(hp), a HyperModel or a tuner): the search-space check, nothing searched."""
    from preflight.api import search_report
    from preflight.tuner.cli_support import check_search_file

    if not args.quiet:
        print("preflight: keras-tuner search file: checking the search space (a few dry runs)", file=sys.stderr)
    section = check_search_file(model_file, budget=settings.budget, target=settings.target,
                                batch_size=settings.batch_size, time_limit=args.time_limit, epochs=args.epochs,
                                n_measure=args.configs, n_samples=args.samples)
    return search_report(section, Path(model_file).stem, model_file)


def _write_report(path: str, text: str) -> None:
    """Atomically (preflight.report): a failed write leaves the earlier report, if any, as it was."""
    from preflight.report import write_atomically

    try:
        write_atomically(path, text)
    except OSError as exc:
        raise errors.UsageError(f"cannot write the report {path}: {exc.strerror or exc}",
                                hint="free space on that disk or give another path; "
                                     "an earlier report at that path is left as it was") from None


def _read_report(path: str | None, comparison: bool = False) -> dict | None:
    from preflight.report import Report

    return Report.load(path, comparison=comparison).document if path else None


def _render(argv: list[str]) -> int:
    from preflight.analysis.comparison import COMPARISON_KIND
    from preflight.render.comparison import render_comparison_html, render_comparison_markdown
    from preflight.render.html import render_html
    from preflight.render.markdown import render_markdown
    from preflight.validate import output_file

    parser = argparse.ArgumentParser(prog="python -m preflight render",
                                     description="Re-render a saved JSON report (or a `compare` JSON).")
    parser.add_argument("report_json")
    parser.add_argument("--html", help="write the HTML page here (default: next to the JSON)")
    parser.add_argument("--markdown", help="also write a Markdown summary (for CI comments)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return errors.EXIT_OK if exc.code == 0 else errors.EXIT_USAGE
    html_path = output_file(args.html or str(Path(args.report_json).with_suffix(".html")), "--html")
    markdown_path = output_file(args.markdown, "--markdown") if args.markdown else None
    document = _read_report(args.report_json, comparison=True)
    comparison = document.get("kind") == COMPARISON_KIND
    to_html = render_comparison_html if comparison else render_html
    to_markdown = render_comparison_markdown if comparison else render_markdown
    if html_path:
        _write_report(html_path, to_html(document))
    if markdown_path:
        _write_report(markdown_path, to_markdown(document))
    print(f"report: {', '.join(p for p in (html_path, markdown_path) if p)}", file=sys.stderr)
    return errors.EXIT_OK


def _compare_parser() -> argparse.ArgumentParser:
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


def _compare(argv: list[str]) -> int:
    from preflight.api import DEFAULT_BATCH_SIZE, literal_batch_size
    from preflight.compare import backends_to_compare, compare_backends, comparison_exit_code
    from preflight.config import load_settings
    from preflight.engine.backends import resolve_backend
    from preflight.render.comparison import print_comparison, render_comparison_html, render_comparison_markdown
    from preflight.validate import model_file, output_file

    try:
        args = _compare_parser().parse_args(argv)
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
        _write_report(json_path, json.dumps(comparison, indent=2) + "\n")
    if html_path:
        _write_report(html_path, render_comparison_html(comparison))
    if markdown_path:
        _write_report(markdown_path, render_comparison_markdown(comparison))
    if not args.quiet:
        print_comparison(comparison)
        written = [p for p in (json_path, html_path, markdown_path) if p]
        if written:
            print(f"report: {', '.join(written)}", file=sys.stderr)
    return comparison_exit_code(comparison, failures)


def _calibration(argv: list[str]) -> int:
    from preflight.calibration import ENVIRONMENT, read_records, store_path
    from preflight.render.calibration import calibration_table

    parser = argparse.ArgumentParser(
        prog="python -m preflight calibration",
        description="List the calibration store: each check's prediction and each real run recorded by "
                    "preflight.keras.MemoryCallback, runs next to the check of the same model.")
    parser.add_argument("--store", help=f"the store's file (default: {ENVIRONMENT}, else "
                                        "~/.cache/preflight/calibration.jsonl)")
    parser.add_argument("--model", help="only records of this model (its name or fingerprint)")
    parser.add_argument("--json", action="store_true", help="print the records as JSON lines instead")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return errors.EXIT_OK if exc.code == 0 else errors.EXIT_USAGE
    path = store_path(args.store)
    if path is None:
        raise errors.UsageError(f"the calibration store is turned off ({ENVIRONMENT}=none)",
                                hint=f"unset {ENVIRONMENT} or pass --store PATH")
    records = read_records(path)
    if args.model:
        records = [r for r in records if args.model in ((r.get("model") or {}).get("name"), r.get("fingerprint"))]
    if args.json:
        for record in records:
            print(json.dumps(record))
    else:
        print(calibration_table(records, str(path)))
    return errors.EXIT_OK


def _targets() -> int:
    from preflight.analysis.devices import get_target, list_targets
    from preflight.units import format_bytes

    for target in map(get_target, list_targets()):
        print(f"{target.name:<12} {target.kind:<4} {format_bytes(target.usable_bytes):>10}  {target.description}")
    return errors.EXIT_OK
