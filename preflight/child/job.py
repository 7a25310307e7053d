"""The dry-run child's program: a fresh process that runs real training steps and reports what the allocator saw.

It is the child process's door, as preflight.cli is the parent's: it loads what the job names (a model.py or a
notebook, a saved .keras/.h5 file, a handed-over model, a search configuration, a what-if variant of either) and has preflight.engine.probe
measure its steps with the job's backend's memory reader (preflight.engine.readers). The parent
(preflight.engine.runner) starts `python -m preflight.child JOB.json` with KERAS_BACKEND and the allocator
settings already in the environment (both must be set before Keras and TensorFlow start, which is why
this is a separate process), and reads JSON-line events from the file descriptor named by
PREFLIGHT_EVENTS_FD. Events: progress, model, probe, restart, error, done. A step that runs out of memory
is reported as a probe with status "oom", and the child then stops with "restart": what is left runs in a
fresh process; a crash or a hang is diagnosed by the parent.
"""
from __future__ import annotations

import gc
import json
import os
import sys
import time
from dataclasses import dataclass, replace
from typing import Any

from preflight.engine import plan
from preflight.engine.data import at_length, dynamic_axes, longest_accepted_length
from preflight.engine.probe import EventWriter, describe_model, dynamic_axis_sizes, fit_probe, graph_slope, probe_batch_size
from preflight.engine.readers import start_reader
from preflight.engine.step_errors import error_line, fix_for
from preflight.errors import DataError, ModelError, PreflightError, is_out_of_memory
from preflight.common.measurements import BACKEND_DISPLAY_NAMES, DeviceInfo, ProbeResult


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0], encoding="utf-8") as handle:
        job = json.load(handle)
    fd = os.environ.get("PREFLIGHT_EVENTS_FD")
    events = EventWriter(int(fd) if fd else None)
    try:
        run_job(job, events)
    except PreflightError as exc:
        events.emit("error", slug=exc.slug, message=exc.message, hint=exc.hint, exit_code=exc.exit_code)
        return exc.exit_code
    events.emit("done")
    return 0


def run_job(job: dict, events: EventWriter) -> None:
    # A child forked from the fork server (preflight.child.zygote) had TensorFlow imported before it: its
    # clock starts where a fresh process's would, so the decision round's time allowance is the same.
    started = time.monotonic() - float(os.environ.get("PREFLIGHT_STARTUP_SECONDS") or 0)
    backend = job.get("backend") or "tensorflow"
    events.emit("progress", stage=f"starting {BACKEND_DISPLAY_NAMES.get(backend, backend)}", elapsed=0.0)
    reader = start_reader(job)
    events.emit("progress", stage="loading model", elapsed=time.monotonic() - started)
    try:
        # The file's own device setup (logical devices, memory growth) runs first; the reader's device is
        # read after it, since reading it initializes TensorFlow's devices (issue 25).
        loaded = load_model_and_data(job)
        device = _device(reader, events, loaded.model)
        if loaded.fit_plan is not None:
            events.emit("fit_plan", plan=loaded.fit_plan)
        model = loaded.model  # the data stays in `loaded`: dropped once the pool is read (_pool_apart_from_pipeline)
        if loaded.floor_over_budget:
            report_floor_only(job, loaded, device, events)
            return
        if job.get("variant"):
            from preflight.whatif.variants import VariantNotApplicable

            try:
                model, description = _apply_variant(model, job["variant"], loaded.shapes_only)
            except VariantNotApplicable as exc:
                events.emit("variant", description=None, message=exc.message)
                return
            events.emit("variant", description=description, message="")
            gc.collect()  # the original model and throw-away optimizers must not hold allocator memory

        # The optimizer's slots are left to the first step, as model.fit leaves them: built beforehand they
        # land elsewhere in the allocator, and an MLP batch that fails under model.fit with a 256 MiB limit
        # ran three times. Their bytes are counted from shapes (preflight.engine.static_floor).
        pool = _pool_apart_from_pipeline(reader, loaded, model, _largest_batch(job), job)
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        report_load_oom(job, exc, _device(reader, events), events)
        return
    events.emit("model", model=describe_model(model, pool).to_dict(), device=device.to_dict(),
                data={"kind": pool.kind, "host_bytes": pool.host_bytes, "pipeline": pool.pipeline})

    measured_steps = int(job.get("measured_steps", 3))
    probes: list[ProbeResult] = [ProbeResult.from_dict(p) for p in job.get("prior_probes", [])]
    round_sizes = list(dict.fromkeys(int(b) for b in job["batch_sizes"]))  # in the job's order
    decided = not job.get("adaptive")
    for _ in range(plan.MAX_SHRINK_ROUNDS + 2):
        for index, batch_size in enumerate(round_sizes):
            smallest_oom = min((p.batch_size for p in probes if p.status == "oom"), default=None)
            if smallest_oom is not None and batch_size >= smallest_oom:
                continue  # it would run out of memory too, after a long wait
            if job.get("as_fit") and backend == "tensorflow":
                probe = fit_probe(reader, model, pool, batch_size, measured_steps, events, started,
                                  limit_bytes=job.get("memory_limit_bytes"))
            else:
                probe = probe_batch_size(reader, model, pool, batch_size, measured_steps, events, started,
                                         first=not any(p.status == "ok" for p in probes),
                                         source_kind=job["source"]["kind"], limit_bytes=job.get("memory_limit_bytes"))
            probes.append(probe)
            events.emit("probe", probe=probe.to_dict())
            if probe.status not in ("ok", "oom"):
                return  # a broken step would only fail again
            rest = [b for b in round_sizes[index + 1:] if b < batch_size]
            if probe.status == "oom" and probe.peak_bytes is None and (rest or not decided):
                # A step failed here (an "oom" with a peak was refused before running): the model, its
                # optimizer and the allocator are no longer what a real run starts with (after an out-of-memory
                # a jit-compiled Xception reported NaN losses at every smaller batch). What is left is
                # measured in a fresh process (preflight.engine.runner).
                events.emit("restart", batch_sizes=rest, decided=decided)
                return
        if decided:
            break
        if any(p.status == "ok" for p in probes):
            decided = True
            if not job.get("decision_round", True):
                break
            # The liveness estimate reads a TF graph; XLA's buffer assignment needs no such help.
            slope = graph_slope(model, pool, job["planned_batch_size"], events) if backend == "tensorflow" else 0.0
            round_sizes = plan.decision_round(
                job["planned_batch_size"], probes, local_limit_bytes=job.get("memory_limit_bytes"),
                usable_bytes=job.get("usable_bytes"),
                min_bytes_per_sample=max(pool.bytes_per_sample(), slope),
                measured_steps=measured_steps,
                time_allowance_seconds=plan.DECISION_SHARE * (time.monotonic() - started))
        else:
            round_sizes = plan.shrink_round(job["planned_batch_size"], probes)
        if not round_sizes:
            break
        events.emit("plan", batch_sizes=round_sizes)
    after_probes(job, model, pool, probes, device, events)
    if job.get("length_curve"):
        measure_lengths(job, reader, model, pool, probes, events, started)
    if job.get("readiness") and backend == "tensorflow":
        report_readiness(reader.tf, job, model, pool, events)


def _device(reader, events: EventWriter, model=None) -> DeviceInfo:
    """The measured device, read once the user's file has set up its devices, with the strategy the model
    was built under (its probes' batches are global, split over the replicas); emitted to the parent."""
    device = replace(reader.device, method=reader.method)
    if model is not None and reader.backend == "tensorflow":
        from preflight.engine.readiness import strategy_of

        strategy, replicas = strategy_of(model)
        device = replace(device, strategy=strategy or "", replicas=replicas)
    events.emit("device", device=device.to_dict())
    return device


def after_probes(job: dict, model, pool, probes: list[ProbeResult], device: DeviceInfo, events: EventWriter) -> None:
    """What the parent asked for beyond the probes: the what-ifs this model allows, a memory profile."""
    if job.get("list_variants"):
        from preflight.whatif.variants import list_variants

        # Listed here because specs name layers, and auto-generated names are only stable per process.
        events.emit("variants", specs=list_variants(model, job.get("target_kind") or device.kind))
    planned = job.get("planned_batch_size")
    planned_ran = any(p.batch_size == planned and p.status == "ok" for p in probes)
    if job.get("profile_dir") and device.backend == "tensorflow" and planned_ran:
        from preflight.engine.peak_profile import profile_training_step

        x, y, sample_weight = pool.unpacked(planned)
        try:
            composition = profile_training_step(model, x, y, sample_weight, logdir=job["profile_dir"])
        except Exception as exc:  # noqa: BLE001 - the profile is an extra; the measurement stands
            events.emit("peak_composition", composition=None, message=f"{type(exc).__name__}: {error_line(exc)}")
            return
        events.emit("peak_composition", composition=composition, message="")


def measure_lengths(job: dict, reader, model, pool, probes: list[ProbeResult], events: EventWriter,
                    started: float) -> None:
    """The inputs' dynamic axis (a sequence length) measured like the batch: the planned batch stepped at
    the lengths of plan.length_round, shortest first, each a real probe, then at the longest length predicted
    to fit the budget. A longer length is not tried once one failed, or once the curve so far
    (analysis.predict, lengths for batch sizes) puts it over the allocator limit."""
    from preflight.analysis.predict import PeakModel

    axes = dynamic_axes(model)
    if not axes:
        return
    sizes = dynamic_axis_sizes(model, pool)
    planned = max(sizes) if sizes else None
    source = "--seq-len" if job.get("seq_len") else ("synthesized" if pool.kind == "synthetic" else "data")
    longest = longest_accepted_length(model)
    events.emit("dynamic_axes", axes=axes, planned_length=planned, length_source=source, max_length=longest)
    batch_size = job["planned_batch_size"]
    # The planned batch at the planned length: measured, or out of memory (then only shorter lengths are tried,
    # for the longest that fits).
    at_planned = next((p for p in probes if p.batch_size == batch_size and p.status in ("ok", "oom")), None)
    if planned is None or at_planned is None or (source == "synthesized" and planned <= 1):
        return  # no planned length to vary around (the report asks for --seq-len)
    points = [replace(at_planned, batch_size=planned)]
    limit, usable = job.get("memory_limit_bytes"), job.get("usable_bytes")

    def curve():
        return PeakModel(points, convex=True, memory_limit_bytes=limit)

    for length in plan.length_round(planned, longest):
        if length > planned and (at_planned.status != "ok" or (limit and curve().predict_peak(length).peak_bytes > limit)):
            break
        probe = _length_probe(job, reader, model, pool, length, events, started)
        if probe.status != "ok":
            return
        points.append(replace(probe, batch_size=length))
    if not usable or not any(p.status == "ok" for p in points):
        return
    # As the batch's decision round: the predicted longest length that fits, measured when this machine
    # can run it, so the number the report gives rests on a step; after an out-of-memory there (the
    # extrapolation fell short), a quarter shorter, up to LENGTH_TRIES steps in all.
    candidate = curve().max_batch_size(usable)
    for _ in range(LENGTH_TRIES):
        ran = max(p.batch_size for p in points if p.status == "ok")
        if not candidate or candidate <= ran or (longest is not None and candidate > longest):
            return
        probe = _length_probe(job, reader, model, pool, candidate, events, started)
        if probe.status != "oom":
            return
        candidate = int(candidate * 0.75)


LENGTH_TRIES = 3


def _length_probe(job: dict, reader, model, pool, length: int, events: EventWriter, started: float) -> ProbeResult:
    """The planned batch stepped with the dynamic axes at `length`, reported as a length_probe event."""
    probe = probe_batch_size(reader, model, at_length(pool, model, length), job["planned_batch_size"],
                             int(job.get("measured_steps", 3)), events, started, first=False,
                             source_kind=job["source"]["kind"], limit_bytes=job.get("memory_limit_bytes"))
    events.emit("length_probe", length=length, probe=probe.to_dict())
    gc.collect()
    return probe


def report_readiness(tf, job: dict, model, pool, events: EventWriter) -> None:
    """How the real run will be launched (strategy, XLA, rebuilds): preflight.engine.readiness."""
    from preflight.engine.readiness import readiness_record

    events.emit("readiness", readiness=readiness_record(tf, model, pool, job))


@dataclass
class LoadedJob:
    model: Any                       # the real model, or a shape-only one when the floor is over budget
    data: Any
    floor: dict | None = None        # preflight.engine.static_floor.static_floor of the model
    floor_over_budget: bool = False  # the floor alone exceeds the job's usable bytes: nothing was allocated
    shapes_only: bool = False        # the model was built from shapes alone (no weights in memory)
    fit_plan: dict | None = None     # the fit(...) call the program stopped at (preflight.engine.fit_plan)


def load_model_and_data(job: dict) -> LoadedJob:
    """The model and data the job names. For a model.py with a build function the static floor comes
    first, from a shape-only build: when it alone exceeds the budget the real model is never built."""
    source = job["source"]
    if source.get("hp_values") is not None:
        return _load_configuration(source)
    if source["kind"] == "file":
        from preflight.engine.loader import check_compiled, find_data, find_model, model_and_data, model_factory, run_program

        name = os.path.basename(source["path"])
        run = run_program(source["path"])
        if run.plan is not None:
            # The code stopped at its fit(...) call (the plan): that model, already built, and that data.
            model, data = model_and_data(run)
            return LoadedJob(model, data, fit_plan=run.plan.record)
        namespace = run.namespace
        factory = model_factory(namespace, name)
        if factory is not None and job.get("variant") and job.get("variant_from_shapes"):
            from preflight.engine.static_floor import build_floor_model

            # The base model does not fit: only the variant is given memory (see _apply_variant).
            return LoadedJob(build_floor_model(factory[1]), find_data(namespace, name), shapes_only=True)
        if factory is not None and not job.get("variant"):
            from preflight.engine.static_floor import build_floor_model, static_floor

            try:
                floor_model = build_floor_model(factory[1])
                check_compiled(floor_model)
                floor = static_floor(floor_model)
            except Exception:  # noqa: BLE001 - the real build below reports the user's error properly
                return LoadedJob(find_model(namespace, name), find_data(namespace, name))
            if _over(floor, job):
                return LoadedJob(floor_model, find_data(namespace, name), floor, floor_over_budget=True)
            import keras

            del floor_model
            keras.backend.clear_session()
            return LoadedJob(find_model(namespace, name), find_data(namespace, name), floor)
        return LoadedJob(find_model(namespace, name), find_data(namespace, name))
    if source["kind"] in ("saved", "keras_file"):
        return _load_saved(job)
    raise ModelError(f"unknown source kind {source['kind']!r}")


def _load_configuration(source: dict) -> LoadedJob:
    """One keras-tuner configuration: the search space of a tune.py ("file") or one handed over from the
    caller's process ("hypermodel", preflight.engine.handoff), built with the source's hp_values."""
    from preflight.engine.loader import check_compiled, find_data, run_model_file
    from preflight.tuner.space import build_with_values, load_hypermodel_from_module

    if source["kind"] == "file":
        from preflight.tuner.cli_support import searches_recorded

        with searches_recorded():  # a tune.py that searches at top level must not search here
            namespace = run_model_file(source["path"])
        hypermodel = load_hypermodel_from_module(namespace)
    elif source["kind"] == "hypermodel":
        from preflight.engine.handoff import load_hypermodel_handoff

        hypermodel, batch = load_hypermodel_handoff(source["dir"])
    else:
        raise ModelError(f"unknown source kind {source['kind']!r} for a search configuration")
    try:
        model = build_with_values(hypermodel, source["hp_values"])
    except Exception as exc:  # noqa: BLE001 - the user's build function may raise anything
        if is_out_of_memory(exc):
            raise
        message = f"{type(exc).__name__}: {error_line(exc)}"
        raise ModelError(f"building the configuration failed: {message}", hint=fix_for(message)) from None
    check_compiled(model)
    if source["kind"] == "file":
        return LoadedJob(model, find_data(namespace, os.path.basename(source["path"])))
    return LoadedJob(model, batch)


def _load_saved(job: dict) -> LoadedJob:
    """A model handed over from the caller's process (a notebook), or a saved .keras/.h5 file
    (preflight.engine.saved_model), floor first as for a model.py: it is built from its config in
    `shapes_only()`, so weights that exceed the budget are never read."""
    import keras

    from preflight.engine.loader import check_compiled
    from preflight.engine.static_floor import static_floor

    source = job["source"]
    if source["kind"] == "saved":
        from preflight.engine.handoff import load_handoff

        def load_real():
            return load_handoff(source["dir"])

        def load_shapes():
            return _saved_shapes_only(source["dir"])
    else:
        from preflight.engine.saved_model import load_saved_model

        def load_real():
            return load_saved_model(source)

        def load_shapes():
            return _keras_file_shapes_only(source)
    if job.get("variant") and job.get("variant_from_shapes"):
        model, data = load_shapes()
        return LoadedJob(model, data, shapes_only=True)
    floor = None
    if not job.get("variant"):
        try:
            floor_model, data = load_shapes()
            check_compiled(floor_model)
            floor = static_floor(floor_model)
        except Exception:  # noqa: BLE001 - the real load below reports the user's error properly
            floor_model = None
        if floor is not None and _over(floor, job):
            return LoadedJob(floor_model, data, floor, floor_over_budget=True)
        del floor_model
        keras.backend.clear_session()
    model, data = load_real()
    return LoadedJob(model, data, floor)


def _keras_file_shapes_only(source: dict):
    """(shape-only model of a saved .keras file, its data)."""
    from preflight.engine.saved_model import saved_model_data, saved_model_from_config
    from preflight.engine.static_floor import build_floor_model

    return build_floor_model(lambda: saved_model_from_config(source)), saved_model_data(source)


def _saved_shapes_only(directory: str):
    """(shape-only model with its optimizer sized, pool) of a handed-over model."""
    from preflight.engine.handoff import load_handoff_config, read_pool
    from preflight.engine.static_floor import build_floor_model

    pool = read_pool(directory)  # first: it restores the sys.path the custom classes import from
    return build_floor_model(lambda: load_handoff_config(directory)), pool


def _make_pool(data, model, size: int, length: int | None = None):
    """The data pool (preflight.engine.data); an error raised by the user's generator or pipeline is a DataError."""
    from preflight.engine.data import make_pool

    try:
        return make_pool(data, model, size, length)
    except PreflightError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's generator or pipeline may raise anything
        if is_out_of_memory(exc):
            raise
        raise DataError(f"reading the data failed: {type(exc).__name__}: {error_line(exc)}",
                        hint="iterate over your data once yourself (next(iter(get_dataset()))) to see the full "
                             "error") from None


def _pool_apart_from_pipeline(reader, loaded: LoadedJob, model, size: int, job: dict):
    """The pool, read with the allocator watching; then the user's dataset is dropped, so its shuffle
    buffers and caches are not in the steps' window (they are host memory, reported apart: issue 26).

    Under TensorFlow the pipeline's figures are measured: `measured_peak_bytes`, the allocator's peak while
    the first batch was read, and `held_bytes`, what the dataset object still held afterwards (a cache,
    its source tensors), both above what remains once the dataset is gone.
    """
    measure = getattr(reader, "backend", None) == "tensorflow"
    before = reader.start_window() if measure else None
    pool = _make_pool(loaded.data, model, size, job.get("seq_len"))
    if pool.pipeline is None or job["source"]["kind"] != "file":
        return pool  # a handed-over pool was read in the caller's process: only its estimates travel
    from preflight.engine.data import pipeline_call_lines

    pool.pipeline["lines"] = pipeline_call_lines(job["source"]["path"])
    if measure:
        gc.collect()
        peak, held = reader.window_peak(), reader.start_window()
    loaded.data = None
    if not measure:
        return pool
    gc.collect()
    remaining = reader.start_window()
    pool.pipeline.update(measured_peak_bytes=max(0, max(peak, before) - remaining),
                         held_bytes=max(0, held - remaining), measured_by=reader.method)
    return pool


def _apply_variant(model, spec: dict, base_is_shapes_only: bool):
    """(variant model, description). From a shape-only base the variant is built from shapes too, and then
    only its own weights are given memory (fresh initial values: the same bytes as copied ones)."""
    from preflight.whatif.variants import apply_variant

    if not base_is_shapes_only:
        return apply_variant(model, spec)
    from preflight.engine.static_floor import initialize_deferred_variables, shapes_only

    with shapes_only():
        variant, description = apply_variant(model, spec)
    initialize_deferred_variables(keep_deferred=model)
    return variant, description


def _largest_batch(job: dict) -> int:
    """The largest batch the job names (a process restarted after a failed step may have only rounds to come)."""
    return max(job["batch_sizes"], default=job.get("planned_batch_size") or 1)


def _over(floor: dict, job: dict) -> bool:
    usable = job.get("usable_bytes")
    return bool(usable) and floor["total_bytes"] > usable


def report_floor_only(job: dict, loaded: LoadedJob, device: DeviceInfo, events: EventWriter) -> None:
    """The floor alone is over budget: describe the shape-only model, list the what-ifs with their own
    floors (which of them bring the floor under the budget), and stop before allocating anything."""
    pool = _make_pool(loaded.data, loaded.model, _largest_batch(job), job.get("seq_len"))
    events.emit("floor", floor=loaded.floor)
    events.emit("model", model=describe_model(loaded.model, pool).to_dict(), device=device.to_dict(),
                data={"kind": pool.kind, "host_bytes": pool.host_bytes, "pipeline": pool.pipeline})
    if job.get("list_variants"):
        from preflight.engine.static_floor import shapes_only
        from preflight.whatif.variants import list_variants, variant_floors

        with shapes_only():
            specs = list_variants(loaded.model, job.get("target_kind") or device.kind)
        events.emit("variant_floors", floors=variant_floors(loaded.model, specs))
        events.emit("variants", specs=specs)


def report_load_oom(job: dict, exc: BaseException, device: DeviceInfo, events: EventWriter) -> None:
    """Out of memory while building the model, its optimizer or its data: a memory verdict. The real
    objects are dropped and the model is built again from shapes alone, for the floor and the what-ifs."""
    import keras

    message = f"out of memory while building the model: {error_line(exc)}"
    del exc  # its traceback holds the half-built model's tensors
    keras.backend.clear_session()
    gc.collect()
    try:
        loaded = _load_shapes_only(job)
    except Exception as static_exc:  # noqa: BLE001 - the verdict stands without the floor
        events.emit("load_oom", message=message, floor_message=f"{type(static_exc).__name__}: "
                                                                f"{error_line(static_exc)}")
        return
    events.emit("load_oom", message=message, floor_message="")
    report_floor_only(job, loaded, device, events)


def _load_shapes_only(job: dict) -> LoadedJob:
    """Run the model file (or its build function) again inside `shapes_only()`: nothing is allocated."""
    from preflight.engine.loader import model_and_data, run_program
    from preflight.engine.static_floor import build_optimizer_shapes_only, initialize_optimizer_scalars, shapes_only, static_floor

    source = job["source"]
    if source["kind"] in ("saved", "keras_file"):
        model, data = _saved_shapes_only(source["dir"]) if source["kind"] == "saved" else _keras_file_shapes_only(source)
        return LoadedJob(model, data, static_floor(model), floor_over_budget=True)
    if source["kind"] != "file" or source.get("hp_values") is not None:
        raise ModelError("the static floor needs a model.py or a handed-over model")
    with shapes_only():
        model, data = model_and_data(run_program(source["path"]))
        build_optimizer_shapes_only(model)
    initialize_optimizer_scalars(model.optimizer)
    return LoadedJob(model, data, static_floor(model), floor_over_budget=True)

