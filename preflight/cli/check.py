"""`python -m preflight model.py [flags]`: check one model file (or every [[tool.preflight.models]] entry),
apply the CI gate, write the reports, and turn the verdict into the exit code."""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from preflight import errors
from preflight.analysis.verdict import exit_code as verdict_exit_code
from preflight.engine import zygote
from preflight.cli.files import read_report, write_report


def parser() -> argparse.ArgumentParser:
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
    parser.add_argument("--processes", type=int,
                        help="fresh processes that measure the planned batch (default 2; the peak is the max over "
                             "them and their spread widens the margin; 1 is faster)")
    parser.add_argument("--max-batch-time", type=float,
                        help="seconds the largest-batch search (model.fit in fresh processes under the budget) may "
                             "take after the verdict (default 180; 0 skips it)")
    parser.add_argument("--single-thread", action="store_true", default=None,
                        help="one inter-op and one intra-op thread: the steps of one process agree, slower steps")
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


def run(argv: list[str]) -> int:
    from preflight.settings.config import load_settings
    from preflight.engine.backends import resolve_backend
    from preflight.settings.validate import model_file, setting

    try:
        args = parser().parse_args(argv)
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
                "processes": args.processes, "max_batch_time": args.max_batch_time, "single_thread": args.single_thread, "backend": args.backend, "baseline": args.baseline, "max_increase": args.max_increase,
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
        return check_models(args, settings)
    model_file(args.model_file)
    report = check_one(args.model_file, Path(args.model_file).stem, args, settings,
                        settings.json, settings.html)
    if settings.markdown:
        from preflight.render.markdown import render_markdown

        write_report(settings.markdown, render_markdown(report.document))
    return verdict_exit_code(report.document)


def baseline_path(baseline: str | None, name: str) -> str | None:
    """A baseline folder holds one report per model, named <name>.json; a missing one means a new model."""
    if baseline and Path(baseline).is_dir():
        candidate = Path(baseline) / f"{name}.json"
        return str(candidate) if candidate.is_file() else None
    return baseline


def check_one(model_file: str, name: str, args, settings, json_path: str | None, html_path: str | None):
    """Check one model file, apply the gate, write its reports; the Report (its document has "gate")."""
    from preflight.api import check
    from preflight.settings.config import GATE_KEYS
    from preflight.render.terminal import print_summary
    from preflight.tuner.cli_support import looks_like_search_file

    baseline = read_report(baseline_path(settings.baseline, name))
    gate = {key: getattr(settings, key) for key in GATE_KEYS}
    if looks_like_search_file(model_file):
        report = check_search_file(model_file, args, settings, baseline, gate)
    else:
        report = check(model_file, batch_size=settings.batch_size, budget=settings.budget,
                       target=settings.target, timeout=settings.timeout, steps=settings.steps,
                       max_batch_time=settings.max_batch_time, processes=settings.processes,
                       single_thread=settings.single_thread, whatif=args.whatif, backend=settings.backend,
                       profile=settings.profile, progress=not args.quiet, epochs=args.epochs,
                       steps_per_epoch=args.steps_per_epoch, time_limit=args.time_limit,
                       checkpoint_dir=args.checkpoint_dir, checkpoints=args.checkpoints, rebuilds=args.rebuilds,
                       host_budget=args.host_budget, custom_objects=args.custom_objects, data=args.data,
                       seq_len=args.seq_len, baseline=baseline, gate=gate)
    if json_path:
        write_report(json_path, report.to_json() + "\n")
    if html_path:
        from preflight.render.html import render_html

        write_report(html_path, render_html(report.document))
    if not args.quiet:
        print_summary(report.document)
        for reason in report.document["gate"]["reasons"]:
            print(f"gate: {reason}", file=sys.stderr)
        written = [p for p in (json_path, html_path) if p]
        if written:
            print(f"report: {', '.join(written)}", file=sys.stderr)
    return report


def check_models(args, settings) -> int:
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
            report = check_one(entry.path, entry.name, args, entry.settings(settings), json_path, html_path)
        except errors.PreflightError as exc:
            print(f"preflight: error: {entry.name}: {exc}", file=sys.stderr)
            result.update(exit_code=exc.exit_code, message=exc.message, json=None, html=None)
        except Exception as exc:  # noqa: BLE001 - a bug with one model: report it, check the others
            print(f"preflight: internal error: {entry.name}: {type(exc).__name__}: {exc}", file=sys.stderr)
            result.update(exit_code=errors.EXIT_INTERNAL, message=f"internal error: {type(exc).__name__}: {exc}",
                          json=None, html=None)
        else:
            result.update(exit_code=verdict_exit_code(report.document), message="", document=report.document)
        results.append(result)
    markdown_path = settings.markdown or str(report_dir / "summary.md")
    write_report(markdown_path, render_models_markdown(results))
    if not args.quiet:
        print_models_summary(results)
        print(f"summary: {markdown_path}", file=sys.stderr)
    # The codes are ordered by severity, so the worst is the largest: 4 > 3 > 2 > 1 > 0.
    return max(result["exit_code"] for result in results)


@zygote.scoped
def check_search_file(model_file: str, args, settings, baseline: dict | None, gate: dict):
    """A tune.py (build_model(hp), a HyperModel or a tuner): the search-space check, nothing searched."""
    from preflight.api import search_report
    from preflight.settings.config import gate_thresholds_from
    from preflight.tuner.cli_support import check_search_file

    if not args.quiet:
        print("preflight: keras-tuner search file: checking the search space (a few dry runs)", file=sys.stderr)
    section = check_search_file(model_file, budget=settings.budget, target=settings.target,
                                batch_size=settings.batch_size, time_limit=args.time_limit, epochs=args.epochs,
                                n_measure=args.configs, n_samples=args.samples)
    return search_report(section, Path(model_file).stem, model_file, baseline=baseline,
                         thresholds=gate_thresholds_from(gate, origin="threshold"))
