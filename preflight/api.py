"""The Python entry points: `preflight.check(model, data)` and friends.

check() accepts a path to a model.py or a keras.Model living in the caller's process. The dry run
always happens in a child process by default, so an out-of-memory step ends the child, never the
caller's notebook kernel.
"""
from __future__ import annotations

import ast
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from preflight.analysis.assemble import CheckFacts, SearchFacts, assemble_check, assemble_search
from preflight.analysis.calibration import prediction_record
from preflight.analysis.calibration_store import append_record, read_records
from preflight.analysis.document import RunSettings, usable_bytes
from preflight.analysis.devices import get_target
from preflight.settings.config import Settings
from preflight.errors import UsageError
from preflight.engine import zygote
from preflight.engine.backends import resolve_backend
from preflight.engine.launch import file_facts, launch_section, plan_with_fit_call
from preflight.engine.loader import check_source
from preflight.engine.program import is_notebook, program_text, read_program
from preflight.engine.saved_model import is_saved_model, saved_model_source
from preflight.engine.plan import first_round
from preflight.engine.processes import PlannedRepeats
from preflight.whatif.recommend import confirm_largest_batch, confirm_recommended_batch
from preflight.render.progress import ProgressDisplay
from preflight.render.report import Report
from preflight.engine.runner import ProbeJob, run_probes
from preflight.common.units import parse_duration, parse_host_budget, parse_size
from preflight.settings.validate import batch_sizes, model_file, setting

DEFAULT_BATCH_SIZE = 32
HOST_SHARE_FOR_PROBES = 0.75  # never let a probe take more of the host's free memory than this


def literal_batch_size(path: str | os.PathLike) -> int | None:
    """The batch size the file plans, read without running it: its first fit(...) call's `batch_size=`
    (a literal or a module-level constant), else its module-level `batch_size = N`."""
    fit_batch = file_facts(path)["fit"].get("batch_size")
    if fit_batch and fit_batch > 0:
        return fit_batch
    try:
        tree = ast.parse(program_text(path) or "")
    except (SyntaxError, ValueError):
        return None  # the child reports a broken file with a proper message
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "batch_size" for t in node.targets):
            value = node.value.value if isinstance(node.value, ast.Constant) else None
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def probe_limit_bytes(host_free: int, usable: int | None) -> int:
    """The allocator limit of the probes: room above the budget, so a step just over it is still measured
    (the what-ifs need its peak), but nowhere near what would swap the host or take minutes to fail."""
    limit = int(host_free * HOST_SHARE_FOR_PROBES)
    if usable is not None:
        limit = min(limit, int(usable * 1.25) + 256 * 2**20)
    return limit


def host_available_bytes() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


@zygote.scoped
def check(model: Any, data: Any = None, *, batch_size: int | None = None, budget: str | int | None = None,
          target: str | None = None, timeout: float = 600.0, steps: int = 3, single_thread: bool = False,
          probe_batch_sizes: list[int] | None = None, whatif: bool | None = None, profile: str | None = None,
          progress: bool = True, epochs: int | None = None, steps_per_epoch: int | None = None,
          time_limit: str | float | None = None, checkpoint_dir: str | None = None, checkpoints: int | None = None,
          rebuilds: int | None = None, backend: str | None = None, max_batch_time: float | None = None,
          processes: int | None = None,
          host_budget: str | int | None = None, calibration: str | os.PathLike | None = None,
          custom_objects: str | None = None, seq_len: int | None = None,
          baseline: str | os.PathLike | dict | None = None, gate: dict[str, Any] | None = None) -> Report:
    """Dry-run real training steps of `model` and return a Report (verdict, peak, footprint, findings).

    model: a path to a model.py (see the README's conventions), a notebook (.ipynb: its code cells run up to
    the first model.fit(...), whose model, data, batch size, epochs and callbacks are the plan), a saved
    model (.keras, .h5), or a compiled keras.Model.
    data: optional; what model.fit takes: arrays x, (x, y) or (x, y, sample_weight), a tf.data.Dataset, a
    keras.utils.PyDataset or a generator of batches (read once, here). None: synthesized from the model.
    For a saved model: arrays x or (x, y), or the path of an .npz file holding arrays x and y.
    custom_objects: for a saved model, a module.py defining its custom layers, losses and models.
    seq_len: the size of the inputs' axes of no fixed size besides the batch (a sequence length): the data is
    synthesized at it, or cut or tiled to it. The report names such an axis and measures it like the batch:
    the planned batch at a few lengths, a peak-vs-length curve, and the longest length that fits.
    budget: '15GiB', '16GB' or bytes; target: a device name such as 't4' (its usable memory is the budget).
    whatif: measure variants (mixed precision, remat, shrinking, optimizers); None: only when it does not
    fit and a variant could plausibly make it fit. profile: a directory for a TensorBoard profile of the
    planned batch; its memory profile gives the report's "what holds memory at the peak".
    The launch checks (README "Launch checks"): epochs, steps_per_epoch, time_limit ('12h', 'colab'),
    checkpoint_dir and checkpoints (kept) size the run's time and disk, over what the file's fit(...) says;
    rebuilds=N measures host RAM over N build_model() calls (a model.py only).
    max_batch_time: seconds the largest-batch search (model.fit under the budget in fresh processes, up and
    down from the prediction) may take after the verdict; 0 skips it; None: PREFLIGHT_MAX_BATCH_TIME, else 180.
    The report gives both times.
    processes: fresh processes that measure the planned batch (the peak is the max over them, their spread
    widens the margin); None: PREFLIGHT_PROCESSES, else 2; 1 measures it once.
    backend: the Keras backend to measure under ('tensorflow', 'jax', 'torch'); None: Keras' own choice
    (KERAS_BACKEND, keras.json, tensorflow). A keras.Model object is measured under the backend it was
    built with, whatever this says.
    host_budget: the host RAM the input pipeline may use beside a GPU or TPU ('12GiB', or 'colab', 'kaggle');
    None: this host's available memory. On a CPU run the budget covers the step and the pipeline together.
    calibration: the calibration store (README "After the run"): the check reports earlier real runs of the
    same model recorded there and records its own prediction; None: PREFLIGHT_CALIBRATION, else
    ~/.cache/preflight/calibration.jsonl; 'none' turns it off.
    baseline: an earlier report (its JSON path, or its document) to compare with: the report's "Against the
    baseline". gate: the CI gate's thresholds over it, the --max-*-increase flags' keys, e.g.
    {"max_increase": "10%", "max_params_increase": "5%"}; the report's "gate" says whether it passed.
    """
    started = time.monotonic()
    batch_size, timeout, steps, probe_batch_sizes = _checked_arguments(
        batch_size=batch_size, budget=budget, target=target, timeout=timeout, steps=steps,
        probe_batch_sizes=probe_batch_sizes, profile=profile)
    if seq_len is not None:
        seq_len = setting("seq_len", seq_len, "seq_len")
    baseline_document, thresholds = _baseline_document(baseline), _gate_thresholds(gate)
    max_batch_time = _setting_or_environment("max_batch_time", max_batch_time)
    processes = _setting_or_environment("processes", processes)
    launch_flags = _checked_launch_arguments(epochs=epochs, steps_per_epoch=steps_per_epoch, time_limit=time_limit,
                                             checkpoint_dir=checkpoint_dir, checkpoints=checkpoints,
                                             rebuilds=rebuilds)
    rebuilds = launch_flags.pop("rebuilds")
    if backend is None and not isinstance(model, (str, os.PathLike)):
        import keras  # already imported by whoever built `model`: its backend is the one in use

        backend = keras.backend.backend()
    backend = resolve_backend(backend, origin="backend")
    host_free = host_available_bytes()
    host_ram = None
    if host_budget is not None:
        setting("host_budget", host_budget, "host_budget")
        host_ram = parse_host_budget(host_budget)
    settings = RunSettings(batch_size=0, budget_bytes=parse_size(budget) if budget is not None else None,
                           target_name=target, host_available_bytes=host_free,
                           host_budget_bytes=host_ram[0] if host_ram else None,
                           host_budget_source=host_ram[1] if host_ram else None)
    usable = usable_bytes(settings)  # also validates the target name before anything starts
    limit = probe_limit_bytes(host_free, usable)

    with tempfile.TemporaryDirectory(prefix="preflight-handoff-") as handoff_dir:
        if isinstance(model, (str, os.PathLike)) and is_saved_model(model):
            source = saved_model_source(model, custom_objects=custom_objects, data=data, directory=handoff_dir)
            batch_size = batch_size or DEFAULT_BATCH_SIZE
            launch = launch_section(None, os.environ, **launch_flags)
        elif isinstance(model, (str, os.PathLike)):
            check_source(model_file(model))
            if data is not None or custom_objects is not None:
                raise UsageError(f"{'data=' if data is not None else 'custom_objects='} goes with a keras.Model or "
                                 "a saved model; a model.py or notebook defines its own data and classes",
                                 hint="define get_dataset() in the file or call model.fit(x, y, ...) in it, or pass "
                                      "the model object")
            source = {"kind": "file", "path": str(Path(model).resolve())}
            batch_size = batch_size or literal_batch_size(model) or DEFAULT_BATCH_SIZE
            launch = launch_section(str(model), os.environ, **launch_flags)
        else:
            if custom_objects is not None:
                raise UsageError("custom_objects= goes with a saved model file; a keras.Model brings its classes",
                                 hint="leave custom_objects out")
            batch_size = batch_size or DEFAULT_BATCH_SIZE
            # The pool covers the planned batch twice over: later rounds may probe up to 2B.
            source = _hand_off(model, data, 2 * max(probe_batch_sizes or [batch_size]), handoff_dir, seq_len)
            launch = launch_section(None, os.environ, **launch_flags)
        target_kind = get_target(target).kind if target else None
        job = ProbeJob(source=source, batch_sizes=probe_batch_sizes or first_round(batch_size),
                       measured_steps=steps, memory_limit_bytes=limit, timeout_seconds=timeout,
                       single_thread=single_thread, adaptive=probe_batch_sizes is None,
                       # the largest-batch search below measures what the decision round would, in fresh processes
                       decision_round=not (max_batch_time > 0 and usable is not None and usable <= limit),
                       planned_batch_size=batch_size, usable_bytes=usable,
                       list_variants=whatif is not False, target_kind=target_kind,
                       profile_dir=str(Path(profile).resolve()) if profile else None,
                       readiness=True, rebuilds=rebuilds or 0, backend=backend, seq_len=seq_len,
                       length_curve=probe_batch_sizes is None)
        notebook_skipped = read_program(model).skipped if (
            isinstance(model, (str, os.PathLike)) and is_notebook(model)) else []
        with ProgressDisplay(enabled=progress) as display:
            # the verdict's peak: the max over fresh processes, the others started once the first measured it
            repeats = PlannedRepeats(job, display, processes if probe_batch_sizes is None else 1)
            try:
                outcome = run_probes(job, on_progress=repeats.watch)
                repeats.fold_into(outcome)
            finally:
                repeats.stop()
            if outcome.fit_plan is not None:  # the fit(...) call the code stopped at: its numbers plan the run
                launch = {**launch, "plan": plan_with_fit_call(str(model), outcome.fit_plan, batch_size, **launch_flags)}
            facts = CheckFacts(outcome, replace(settings, batch_size=batch_size, launch=launch), _model_name(model),
                               notebook_skipped=notebook_skipped, seq_len=seq_len, whatif=whatif,
                               baseline=baseline_document, thresholds=thresholds)
            verdict_seconds = time.monotonic() - started
            if probe_batch_sizes is None and max_batch_time > 0:
                display({"event": "stage", "text": "largest batch: model.fit under the budget in fresh processes "
                                                   f"(at most {max_batch_time:.0f} s, --max-batch-time)"})
                deadline = time.monotonic() + max_batch_time
                largest = confirm_largest_batch(assemble_check(facts), job, limit, display, deadline=deadline)
                facts.confirmations = {"largest": largest, "recommended": None}
                facts.confirmations["recommended"] = confirm_recommended_batch(
                    assemble_check(facts), largest, job, limit, display, deadline=deadline)
            facts.timing = {"verdict_seconds": round(verdict_seconds, 1),
                            "max_batch_seconds": round(time.monotonic() - started - verdict_seconds, 1)}
            facts.whatifs_measured = _measured_whatifs(assemble_check(facts), job, outcome, whatif, display)
            prediction = prediction_record(assemble_check(facts))  # the check's own figures, before earlier runs'
            facts.calibration_records = read_records(calibration)
            report = Report(assemble_check(facts))
            if prediction is not None:
                append_record(prediction, calibration)
            display.show_result(report)
    return report


def _setting_or_environment(name: str, value: Any) -> Any:
    """An argument checked as its flag is; None: its PREFLIGHT_* variable, else the default."""
    if value is not None:
        return setting(name, value, name)
    variable = "PREFLIGHT_" + name.upper()
    if variable in os.environ:
        return setting(name, os.environ[variable], variable)
    return getattr(Settings(), name)


def _baseline_document(baseline: str | os.PathLike | dict | None) -> dict | None:
    """An earlier report to compare with: its document, or the path of its JSON (validated as it loads)."""
    if baseline is None or isinstance(baseline, dict):
        return baseline
    return Report.load(str(baseline)).document


def _gate_thresholds(gate: dict[str, Any] | None):
    """The CI gate's thresholds from {"max_increase": "10%", ...} (the keys of the --max-*-increase flags)."""
    from preflight.settings.config import gate_thresholds_from

    return gate_thresholds_from(gate or {}, origin="gate")


def _checked_arguments(*, batch_size, budget, target, timeout, steps, probe_batch_sizes, profile):
    """check()'s arguments against the same ranges as the flags (preflight.settings.validate), before any work."""
    for name, value in (("budget", budget), ("target", target), ("profile", profile)):
        if value is not None:
            setting(name, value, name)
    return (None if batch_size is None else setting("batch_size", batch_size, "batch_size"),
            setting("timeout", timeout, "timeout"), setting("steps", steps, "steps"),
            None if probe_batch_sizes is None else batch_sizes(probe_batch_sizes, "probe_batch_sizes"))


def _checked_launch_arguments(**arguments: Any) -> dict[str, Any]:
    """The launch checks' settings, validated like the flags; time_limit becomes seconds."""
    checked = {name: None if value is None else setting(name, value, name) for name, value in arguments.items()}
    if checked["time_limit"] is not None:
        checked["time_limit"] = parse_duration(checked["time_limit"])
    checked["time_limit_seconds"] = checked.pop("time_limit")
    return checked


def _measured_whatifs(document: dict, job: ProbeJob, outcome, whatif: bool | None, display) -> list[dict] | None:
    """The what-ifs measured, each in its own children, when asked (--whatif) or when it does not fit and one
    could make it fit; None when none was measured."""
    from preflight.whatif.recommend import measure_variants, should_measure_whatifs
    from preflight.whatif.shard import shard_whatif

    # The floor over one device: the weights split over several (issue 25), measured under JAX.
    sharded = [] if whatif is False else [item for item in [shard_whatif(document, job)] if item]
    if not outcome.variant_specs or not (whatif is True or (whatif is None and should_measure_whatifs(document))):
        return sharded or None
    return measure_variants(job, outcome.variant_specs, display, document, outcome.variant_floors) + sharded


def _model_name(model: Any) -> str:
    if isinstance(model, (str, os.PathLike)):
        return Path(model).stem
    return str(getattr(model, "name", "model"))


def _hand_off(model: Any, data: Any, pool_size: int, directory: str, length: int | None = None) -> dict:
    from preflight.engine.data import make_pool
    from preflight.engine.handoff import write_handoff
    from preflight.engine.loader import check_compiled

    import keras

    if not isinstance(model, keras.Model):
        raise UsageError(f"check() takes a keras.Model or a path to a model.py, not {type(model).__name__}")
    from preflight.engine.readiness import strategy_of

    check_compiled(model)
    write_handoff(model, make_pool(data, model, pool_size, length), directory)
    # The .keras file does not keep the strategy the variables were created under: say it here.
    strategy, replicas = strategy_of(model)
    return {"kind": "saved", "dir": directory, "strategy": {"strategy": strategy, "replicas": replicas}}


@zygote.scoped
def check_search(hypermodel_or_tuner: Any, data: Any = None, *, batch_size: int = 32, budget: str | int | None = None,
                 target: str | None = None, time_limit: str | float | None = None, epochs: int | None = None,
                 baseline: str | os.PathLike | dict | None = None, gate: dict[str, Any] | None = None,
                 name: str | None = None, **options: Any) -> Report:
    """Check a keras-tuner search before it starts: worst case, share that fits, bounds, time and disk.

    `hypermodel_or_tuner`: a tuner (not searched), a `kt.HyperModel` or a `build_model(hp)` function.
    A few configurations are dry-run in child processes; the rest are predicted from their shapes.
    baseline and gate: as for check(). name: the report's name (default: the hypermodel's or function's).
    """
    from preflight.tuner.plan import check_search as plan_search

    _check_search_arguments(batch_size=batch_size, budget=budget, target=target, time_limit=time_limit,
                            epochs=epochs)
    baseline_document, thresholds = _baseline_document(baseline), _gate_thresholds(gate)
    section = plan_search(hypermodel_or_tuner, data, batch_size=batch_size,
                          budget_bytes=parse_size(budget) if budget is not None else None,
                          target=target, time_limit=time_limit, epochs=epochs, **options)
    name = name or getattr(getattr(hypermodel_or_tuner, "hypermodel", None), "name", None) \
        or getattr(hypermodel_or_tuner, "__name__", None) or type(hypermodel_or_tuner).__name__
    from preflight.tuner.cli_support import tuner_distribution

    section["distribution"] = tuner_distribution(hypermodel_or_tuner if hasattr(hypermodel_or_tuner, "oracle")
                                                 else None)
    return search_report(section, str(name), baseline=baseline_document, thresholds=thresholds)


def search_report(section: dict, name: str, source_file: str | None = None, *, baseline: dict | None = None,
                  thresholds: Any = None) -> Report:
    """A search's one document, whichever way in (`python -m preflight tune.py` or check_search in a
    notebook): the facts the assembly needs besides the search section, the backend its configurations
    were measured under and the launch checks (versions: keras-tuner needs tensorboard; a tuner without
    distribution_strategy= beside a TPU or GPUs)."""
    from preflight.engine.backends import installed_version

    backend = _search_backend_name()
    sources = [m.get("source") for m in section.get("measurements") or [] if m.get("status") == "ok"]
    facts = SearchFacts(section, name, backend={"name": backend, "version": installed_version(backend),
                                                "method": sources[0] if sources else "no configuration measured"},
                        launch=launch_section(source_file, os.environ), baseline=baseline,
                        thresholds=thresholds if thresholds is not None else _gate_thresholds(None))
    return Report(assemble_search(facts))


def _search_backend_name() -> str:
    """The backend the search's configurations ran under: Keras's own once imported (a notebook), else
    KERAS_BACKEND (the CLI sets it before the search file runs)."""
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "backend"):
        return keras.backend.backend()
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def _check_search_arguments(**arguments: Any) -> None:
    for name, value in arguments.items():
        if value is not None:
            setting(name, value, name)


def guard(tuner: Any, budget: str | int | None = None, predictor: Any = None, *, target: str | None = None,
          batch_size: int = 32, **options: Any):
    """Keep a search alive: configurations predicted not to fit are never built; see preflight.tuner.guard.

    `predictor` may be the Report from check_search (its fitted predictor is reused).
    """
    from preflight.tuner.guard import guard as install_guard

    _check_search_arguments(batch_size=batch_size, budget=budget, target=target)
    if isinstance(predictor, Report):
        predictor = predictor.document.get("search")
    return install_guard(tuner, parse_size(budget) if budget is not None else None, predictor,
                         batch_size=batch_size, target=target, **options)
