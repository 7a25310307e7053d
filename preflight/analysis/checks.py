"""Diagnostic checks: each is a small function (context) -> Finding | None, kept in one registry.

A new check is one function with the @check decorator and one test. Checks read the assembled
analysis context only; they never run TensorFlow. A check returns one Finding, a list of them, or None.
The launch checks near the end read what the child recorded (preflight.engine.readiness: strategy, XLA,
rebuilds) and what the parent read without TensorFlow (preflight.engine.launch: plan, GPU settings, versions).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

import math

from preflight.common.units import format_bytes

# A search's finding (preflight.tuner.plan) that the renderers and the CLI's exit code (3) look for.
CONFIGURATION_FAILED = "search-configuration-failed"


@dataclass(frozen=True)
class Finding:
    id: str
    severity: str  # "info" | "warning" | "error"
    message: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class CheckContext:
    document: dict[str, Any]        # the report document assembled so far
    host_available_bytes: int | None
    facts: Any = None               # the whole check's facts (preflight.analysis.assemble.CheckFacts), late checks


CheckResult = Finding | list[Finding] | None
CHECKS: list[Callable[[CheckContext], CheckResult]] = []
# Checks of the assembled report: they read what the later measurements added (confirmed batch sizes, the
# measured what-ifs) and the facts of the check (preflight.analysis.report_checks), run once at the end.
REPORT_CHECKS: list[Callable[[CheckContext], CheckResult]] = []


def check(fn: Callable[[CheckContext], CheckResult]) -> Callable[[CheckContext], CheckResult]:
    CHECKS.append(fn)
    return fn


def report_check(fn: Callable[[CheckContext], CheckResult]) -> Callable[[CheckContext], CheckResult]:
    REPORT_CHECKS.append(fn)
    return fn


def run_checks(context: CheckContext, registry: list[Callable[[CheckContext], CheckResult]] | None = None
               ) -> list[dict[str, str]]:
    findings: list[dict[str, str]] = []
    for fn in CHECKS if registry is None else registry:
        result = fn(context)
        findings.extend(f.to_dict() for f in (result if isinstance(result, list) else [result] if result else []))
    return findings


@check
def floor_over_budget(ctx: CheckContext) -> Finding | None:
    doc = ctx.document
    floor, budget = doc.get("floor") or {}, doc.get("budget_bytes")
    if not budget or floor.get("total_bytes", 0) <= budget:
        return None
    largest = ", ".join(f"{layer['name']} ({layer['class_name']}, {layer['params']:,} params, "
                        f"{format_bytes(layer['parameter_bytes'])})" for layer in floor.get("largest_layers") or [])
    return Finding("floor-over-budget", "error",
                   f"No batch size fits: parameters {format_bytes(floor['parameter_bytes'])} + gradients "
                   f"{format_bytes(floor['gradient_bytes'])} + optimizer state {format_bytes(floor['optimizer_bytes'])} "
                   f"({floor.get('optimizer')}) = {format_bytes(floor['total_bytes'])} before any activation, "
                   f"over the budget of {format_bytes(budget)}."
                   + (f" Largest layers: {largest}." if largest else "")
                   + " Only a smaller model, lighter optimizer state or the weights split over several devices "
                     "help; see the what-ifs.")


@check
def out_of_memory_while_building(ctx: CheckContext) -> Finding | None:
    message = ctx.document.get("load_oom")
    if not message:
        return None
    limit = ctx.document["device"].get("memory_limit_bytes")
    where = f" under the probe's {format_bytes(limit)} limit" if limit else ""
    return Finding("load-oom", "error", f"The model could not even be built{where}: {message}. This is a memory "
                   "verdict, not an error in the model.")


@check
def fits_at_no_batch(ctx: CheckContext) -> Finding | None:
    doc = ctx.document
    floor, budget = doc.get("floor") or {}, doc.get("budget_bytes")
    if not doc.get("fits_at_no_batch") or doc.get("load_oom") or floor.get("total_bytes", 0) > (budget or 0):
        return None  # the two checks above already say why
    if (doc.get("host") or {}).get("pipeline_is_cause"):
        return None  # the input pipeline is the cause: pipeline_over_host_budget says so
    batch_one = next((p for p in doc["probes"] if p["batch_size"] == 1), {})
    why = (f"batch 1's measured peak {format_bytes(batch_one['peak_bytes'])} is over the budget of "
           f"{format_bytes(budget)}" if batch_one.get("status") == "ok" else "batch 1 ran out of memory")
    return Finding("no-batch-fits", "error",
                   f"No batch size fits: {why}, so a smaller batch does not help; change the model (see the "
                   "measured what-ifs).")


@check
def probe_failed(ctx: CheckContext) -> Finding | None:
    failed = [p for p in ctx.document["probes"] if p["status"] != "ok"]
    if not failed:
        return None
    # Out of memory above the planned batch is the curve's measured top end, which the probes look for.
    serious = [p for p in failed if not (p["status"] == "oom" and p["batch_size"] > ctx.document["batch_size"])]
    probe = (serious or failed)[0]
    what = {"oom": "ran out of memory", "timeout": "timed out", "crashed": "crashed", "error": "failed"}[probe["status"]]
    limit = ctx.document["device"].get("memory_limit_bytes")
    where = f" under a {format_bytes(limit)} limit" if limit else ""
    message = f"The training step at batch {probe['batch_size']} {what}{where}: {probe['message']}"
    if not serious:
        return Finding("probe-oom", "info", f"{message}. It is above the planned batch "
                       f"{ctx.document['batch_size']}: the probes measure where memory runs out.")
    return Finding("probe-" + probe["status"], "error", message)


@check
def over_budget(ctx: CheckContext) -> Finding | None:
    doc = ctx.document
    if doc.get("fits") is not False or doc.get("peak_bytes") is None:
        return None
    if (doc.get("host") or {}).get("fits") is False and doc["peak_bytes"] <= doc["budget_bytes"]:
        return None  # the input pipeline is what is over: pipeline_over_host_budget says so
    return Finding("over-budget", "error",
                   f"Peak {format_bytes(doc['peak_bytes'])} at batch {doc['batch_size']} exceeds the budget "
                   f"of {format_bytes(doc['budget_bytes'])} by {format_bytes(doc['peak_bytes'] - doc['budget_bytes'])}.")


@check
def near_budget(ctx: CheckContext) -> Finding | None:
    doc = ctx.document
    if not doc.get("fits") or not doc.get("budget_bytes") or doc.get("peak_bytes") is None:
        return None
    used = doc["peak_bytes"] / doc["budget_bytes"]
    if used < 0.9:
        return None
    return Finding("near-budget", "warning",
                   f"The peak uses {used:.0%} of the budget: fragmentation or a longer input could tip it over.")


@check
def peak_varies(ctx: CheckContext) -> Finding | None:
    spreads = [(p["spread"], p["batch_size"]) for p in ctx.document["probes"]
               if p["status"] == "ok" and p.get("spread", 0) > 0.05]
    if not spreads:
        return None
    spread, batch = max(spreads)
    probe = next(p for p in ctx.document["probes"] if p["batch_size"] == batch and p["status"] == "ok")
    where = f"{probe['processes']} fresh processes" if probe.get("processes", 1) > 1 else "measured steps"
    return Finding("peak-varies", "info" if spread < 0.15 else "warning",
                   f"The same step's peak varied by {spread:.0%} across {where} at batch {batch} "
                   "(the executor orders ops differently each time); verdicts use the largest, and the "
                   "prediction's margin carries the spread between fresh processes at every batch and one "
                   "process's spread between steps beside the batch that showed it.")


@check
def dataset_in_host_memory(ctx: CheckContext) -> Finding | None:
    data = ctx.document.get("data") or {}
    held = data.get("host_bytes")
    if not held or not ctx.host_available_bytes:
        return None
    share = held / ctx.host_available_bytes
    if share < 0.25:
        return None
    return Finding("dataset-in-memory", "warning" if share < 0.6 else "error",
                   f"The training data is held in host memory ({format_bytes(held)}, {share:.0%} of the "
                   f"{format_bytes(ctx.host_available_bytes)} available), and model.fit copies NumPy input "
                   "into a tensor once more. Stream it with tf.data from files instead.")


@check
def measured_on_cpu_for_accelerator(ctx: CheckContext) -> Finding | None:
    target = ctx.document.get("target") or {}
    if ctx.document["device"]["kind"] != "CPU" or target.get("kind") not in ("GPU", "TPU"):
        return None
    return Finding("projected-target", "info",
                   f"Measured on the CPU and projected to {target.get('name')}: on a {target.get('kind')} "
                   "Keras compiles the step with XLA by default, which changes memory; confirm on the device.")


@check
def pipeline_over_host_budget(ctx: CheckContext) -> Finding | None:
    """The input pipeline (with the step, on a CPU) is over the host's memory: named as the cause."""
    host = ctx.document.get("host") or {}
    if host.get("fits") is not False:
        return None
    held, budget = host["pipeline_bytes"], host["budget_bytes"]
    if host["step_on_host"]:
        step = (f"the model's own step fits (its peak {format_bytes(host['step_bytes'])} is within the budget)"
                if host["step_fits_alone"] else f"the step's own peak is {format_bytes(host['step_bytes'])}")
        cause = "the input pipeline holds most of it, so fix its buffers (below), not the model" \
            if host["pipeline_is_cause"] else "both count against the budget on a CPU"
        return Finding("pipeline-over-budget", "error",
                       f"Does not fit because of the input pipeline: it holds {format_bytes(held)} of host memory "
                       f"({host['pipeline_source']}), and with the step {format_bytes(host['total_bytes'])} is over "
                       f"the budget of {format_bytes(budget)}; {step}; {cause}.")
    return Finding("pipeline-over-host-ram", "error",
                   f"The input pipeline holds {format_bytes(held)} of host RAM ({host['pipeline_source']}), over "
                   f"{format_bytes(budget)} ({host['budget_source']}): the device step is not the problem, the "
                   "host runs out first (\"Your session crashed after using all available RAM\"). Fix its buffers (below).")


_BUFFER_FIXES = {
    ("shuffle", True): "shuffle before decoding: the file names (tf.data.Dataset.list_files(pattern, shuffle=True)) "
                       "or the encoded records (.shuffle(1000) before .map(decode)), or a smaller buffer",
    ("shuffle", False): "a smaller buffer (.shuffle(1000)); for arrays in memory, shuffle their indices or the arrays "
                        "once with NumPy instead of a buffer of the whole dataset",
    ("cache", True): "cache before the decoding map (.cache() then .map(decode): encoded records are smaller), or cache "
                     "on disk: .cache('/tmp/train.cache')",
    ("cache", False): "cache on disk: .cache('/tmp/train.cache')",
    ("prefetch", True): "a fixed small buffer (.prefetch(1)) or smaller batches",
    ("prefetch", False): "a fixed small buffer (.prefetch(1)) or smaller batches",
    ("copy", False): "stream the samples instead of handing fit whole arrays: tf.data from files (TFRecord), or "
                     "a keras.utils.PyDataset that reads each batch from a memory-mapped .npy (np.load(mmap_mode='r'))",
}


@check
def pipeline_buffers(ctx: CheckContext) -> list[Finding]:
    """One finding per tf.data buffer that holds a large part of the host budget: bytes, line, fix."""
    host = ctx.document.get("host") or {}
    findings = []
    for buffer in host.get("large_buffers") or []:
        kind = buffer["kind"]
        lines = (host.get("lines") or {}).get(kind) or []
        where = f" (model file line {', '.join(map(str, lines))})" if lines else ""
        what = {"shuffle": f"The shuffle buffer{where} holds {buffer['elements']:,} "
                           f"{'decoded ' if buffer['decoded'] else ''}elements",
                "cache": f"The in-memory .cache(){where} holds the whole dataset once the first epoch has passed, "
                         f"{buffer['elements']:,} {'decoded ' if buffer['decoded'] else 'encoded '}elements",
                "prefetch": f"The prefetch buffer{where} holds {buffer['elements']} batches"
                            + (" (AUTOTUNE, counted as 2; it may grow)" if buffer.get("autotune") else ""),
                "copy": f"model.fit copies the NumPy arrays into one tensor before the first step and holds it "
                        f"through training: {buffer['elements']:,} samples"}[kind]
        shared = " (the same tensors as the cache it reads from, counted once)" if buffer.get("shares_cache") else ""
        share = f", {buffer['bytes'] / host['budget_bytes']:.0%} of {format_bytes(host['budget_bytes'])}" \
            if host.get("budget_bytes") else ""
        findings.append(Finding(f"pipeline-{kind}", "error" if host.get("fits") is False else "warning",
                                f"{what} of {format_bytes(buffer['element_bytes'])}: {format_bytes(buffer['bytes'])} "
                                f"of host memory{share}{shared}. Fix: {_BUFFER_FIXES[(kind, buffer['decoded'])]}."))
    return findings


OTHER_SHARE_WORTH_A_LOOK = 1 / 3   # "other" beyond this share of the peak is named, with where to look ...
OTHER_BYTES_WORTH_A_LOOK = 16 * 2**20  # ... once it is this large: a tiny model's peak is mostly TF's own buffers
                                       # (a Dense(4) at batch 4: 10.3 KiB of a 12.6 KiB peak)


@check
def other_holds_much_of_the_peak(ctx: CheckContext) -> Finding | None:
    """The breakdown leaves over a third of the peak unexplained: temporaries the layer outputs do not show
    (attention scores, a fused op's workspace, gradients of intermediate tensors). Say so, and where to look."""
    doc = ctx.document
    peak, other = doc.get("peak_bytes"), (doc.get("footprint") or {}).get("other", 0)
    if not peak or other <= OTHER_SHARE_WORTH_A_LOOK * peak or other < OTHER_BYTES_WORTH_A_LOOK:
        return None
    return Finding("other-large", "info",
                   f"{format_bytes(other)} of the {format_bytes(peak)} peak ({other / peak:.0%}) is not parameters, "
                   "gradients, optimizer state, layer outputs or inputs: temporaries inside the step (attention "
                   "scores, gradients of intermediate tensors, op workspace). "
                   + ("The memory profile's list of what holds memory at the peak names them."
                      if doc.get("peak_composition") else
                      "To see which ops hold it, run with --profile DIR and open DIR in TensorBoard's memory profile "
                      "(tensorboard --logdir DIR); the report then lists what holds memory at the peak."))


def axes_text(axes: list[dict]) -> str:
    """"input 'token_ids' axis 1, input 'padding_mask' axis 1": the dynamic axes a report names."""
    return ", ".join(f"input {a['input']!r} axis {'/'.join(str(x) for x in a['axes'])}" for a in axes)


@check
def dynamic_axis(ctx: CheckContext) -> Finding | None:
    """An input axis of no fixed size besides the batch: name it, and its planned length or its absence."""
    section = ctx.document.get("length_curve")
    if not section:
        return None
    named = axes_text(section["axes"])
    planned = section.get("planned_length")
    if section.get("length_source") == "synthesized" and (planned or 1) <= 1:
        return Finding("dynamic-axis-unset", "warning",
                       f"The model's inputs have an axis of no fixed size besides the batch ({named}); with no data "
                       f"and no --seq-len it was synthesized at length {planned or 1}, which says little about a real "
                       "run. Pass --seq-len N (seq_len=N in preflight.check) with the length you will train at.")
    longest = section.get("max_length")
    if longest is not None and planned and longest < planned:
        return Finding("length-over-budget", "error",
                       f"At batch {section['batch_size']} the planned length {planned} ({named}) does not fit; the "
                       f"longest that fits is {longest}.")
    return None


@check
def loss_not_finite(ctx: CheckContext) -> Finding | None:
    for probe in ctx.document["probes"]:
        bad = [loss for loss in probe.get("losses") or [] if isinstance(loss, str)]
        if bad:
            return Finding("loss-not-finite", "error",
                           f"The loss was {bad[0]} in {len(bad)} of {len(probe['losses'])} measured steps at batch "
                           f"{probe['batch_size']}: the model fits but cannot train. Check the data for NaN, the "
                           "loss for log(0) or a division by zero, and the learning rate.")
    return None


@check
def weights_unchanged(ctx: CheckContext) -> Finding | None:
    compared = [p for p in ctx.document["probes"] if p.get("weights_changed") is not None]
    if not compared or any(p["weights_changed"] for p in compared):
        return None
    probe = compared[0]
    return Finding("weights-unchanged", "warning",
                   f"No trainable weight changed over the warm-up and {len(probe.get('losses') or [])} measured "
                   f"steps at batch {probe['batch_size']}: every gradient was zero, or the learning rate is 0. "
                   "Check that the loss depends on the trainable layers (no stop_gradient in the path).")


# --- How the run will be launched (preflight.engine.readiness in the child, preflight.engine.launch in the parent) ---

TPU_FIX = ("resolver = tf.distribute.cluster_resolver.TPUClusterResolver(); "
           "tf.config.experimental_connect_to_cluster(resolver); tf.tpu.experimental.initialize_tpu_system(resolver); "
           "strategy = tf.distribute.TPUStrategy(resolver); with strategy.scope(): model = build_model()")
GPUS_FIX = "strategy = tf.distribute.MirroredStrategy(); with strategy.scope(): model = build_model()"
TPU_CORES = 8  # a v2-8 / v3-8, what Colab and Kaggle lend


def _readiness(ctx: CheckContext, part: str) -> dict:
    return (ctx.document.get("readiness") or {}).get(part) or {}


def _launch(ctx: CheckContext, part: str):
    return (ctx.document.get("launch") or {}).get(part)


@check
def accelerator_unused(ctx: CheckContext) -> Finding | None:
    """A TPU or several GPUs are there, and the model's variables were created outside any strategy."""
    dist = _readiness(ctx, "distribution")
    if not dist or dist.get("strategy"):
        return None
    batch = ctx.document["batch_size"]
    if dist.get("tpu_address") or dist.get("tpu_devices"):
        where = dist.get("tpu_address") or f"{dist['tpu_devices']} TPU devices"
        return Finding("accelerator-unused", "error",
                       f"A TPU is attached ({where}) but the model's variables were created outside a "
                       "tf.distribute strategy scope: training runs on the host CPU and the TPU idles. Under "
                       f"TPUStrategy the batch is global: batch {batch} over {TPU_CORES} cores is "
                       f"{math.ceil(batch / TPU_CORES)} per core, so raise it (e.g. {batch * TPU_CORES}). "
                       f"Fix: {TPU_FIX}; keras-tuner: pass distribution_strategy=strategy to the tuner.")
    if dist.get("gpus", 0) > 1:
        gpus = dist["gpus"]
        return Finding("accelerator-unused", "warning",
                       f"{gpus} GPUs are visible but the model's variables were created outside a tf.distribute "
                       f"strategy scope: Keras trains on GPU:0 alone and {gpus - 1} idle. Under MirroredStrategy "
                       f"batch {batch} is global: {math.ceil(batch / gpus)} per GPU. Fix: {GPUS_FIX}; keras-tuner: "
                       "pass distribution_strategy=tf.distribute.MirroredStrategy() to the tuner.")
    return None


@check
def distributed_batch(ctx: CheckContext) -> Finding | None:
    """Under a strategy the planned batch is global: say what each replica steps."""
    dist = _readiness(ctx, "distribution")
    if not dist.get("strategy"):
        return None
    replicas, batch = dist.get("replicas", 1), ctx.document["batch_size"]
    return Finding("distributed-batch", "info",
                   f"The model was built under {dist['strategy']} with {replicas} replica(s): batch {batch} is "
                   f"global, each replica steps {math.ceil(batch / max(replicas, 1))} samples "
                   "(per-replica batch = global / replicas).")


@check
def device_setup(ctx: CheckContext) -> list[Finding]:
    """Where the file's own device setup (logical devices, memory growth) met the budget (issue 25)."""
    notes = (ctx.document.get("device") or {}).get("setup_notes") or []
    return [Finding("device-setup", "warning" if "GPU" in note else "info", note) for note in notes]


@check
def per_device(ctx: CheckContext) -> Finding | None:
    """Several replicas measured at once: each device's figure and its verdict against its own budget."""
    section = ctx.document.get("per_device")
    if not section:
        return None
    budget = section.get("budget_bytes")
    verdict = ("" if budget is None else
               f"; against {format_bytes(budget)} per device it {'fits' if section['fits'] else 'does not fit'}")
    severity = "error" if section.get("fits") is False else "info"
    if section.get("total_peak_bytes") is None:  # one device's figure, measured as it is
        origin = section["source"].removeprefix("measured: ")
    else:
        origin = (f"from the total of {format_bytes(section['total_peak_bytes'])} / {section['devices']} + "
                  f"{section.get('replica_margin_fraction', 0):.0%} ({section['margin_fraction']:.0%} over the measured share; the logical "
                  f"devices share one allocator)")
        if section.get("above_real_at_most_fraction") is not None:
            origin += (f"; at least a real run's peak and at most {section['above_real_at_most_fraction']:.0%} "
                       f"above it (this measurement's process may be the high one)")
    return Finding("per-device", severity,
                   f"Per device ({section['devices']} {section['device_kind']} devices under "
                   f"{section['strategy'] or 'a strategy'}, batch {section['per_replica_batch_size']} each): "
                   f"{format_bytes(section['peak_bytes'])}, {origin}{verdict}.")


@check
def xla_incompatible(ctx: CheckContext) -> Finding | None:
    """The train step does not compile under XLA: it fails on a TPU and under Keras's default on a GPU."""
    xla = _readiness(ctx, "xla")
    if xla.get("status") == "fails":
        target = (ctx.document.get("target") or {}).get("kind")
        op = f"op {xla['op']}" if xla.get("op") else "an op"
        layer = f" in layer '{xla['layer']}'" if xla.get("layer") else ""
        return Finding("xla-incompatible", "error" if target == "TPU" else "warning",
                       f"XLA cannot compile the training step: {op}{layer} ({xla.get('message')}). On a TPU the "
                       "run fails; on a GPU Keras compiles the step with XLA by default (jit_compile='auto') and "
                       "fit() fails the same way. Fix: rewrite the layer with TensorFlow ops (no tf.py_function, "
                       "NumPy on tensors or string ops in call()), or on a GPU compile with "
                       "model.compile(..., jit_compile=False).")
    if xla.get("status") in ("timeout", "unknown"):
        return Finding("xla-unchecked", "info",
                       f"Whether XLA compiles the step is unknown: {xla.get('message')}.")
    return None


@check
def version_problems(ctx: CheckContext) -> list[Finding]:
    """Known-bad TF / Keras / keras-tuner / tensorboard combinations (preflight.engine.versions)."""
    findings = [Finding(p["id"], p["severity"], p["message"]) for p in _launch(ctx, "version_problems") or []]
    if _launch(ctx, "old_tuner_import"):
        findings.append(Finding("versions-kerastuner-name", "warning",
                                "The file imports `kerastuner`, keras-tuner's old name: a deprecated alias that "
                                "newer releases drop. Fix: import keras_tuner as kt"))
    return findings


@check
def gpu_memory_settings(ctx: CheckContext) -> list[Finding]:
    """On a GPU (measured or targeted): TF reserves nearly the whole card unless memory growth is on."""
    settings = _launch(ctx, "gpu_memory") or {}
    on_gpu = ctx.document["device"]["kind"] == "GPU" or (ctx.document.get("target") or {}).get("kind") == "GPU"
    if not settings or not on_gpu:
        return []
    findings = []
    if not settings.get("grows"):
        findings.append(Finding(
            "gpu-preallocates", "warning",
            "TensorFlow will reserve nearly all GPU memory when it starts (TF_FORCE_GPU_ALLOW_GROWTH is not "
            "true, the file never calls set_memory_growth(gpu, True), TF_GPU_ALLOCATOR is not cuda_malloc_async): "
            "a second process on this GPU (another notebook, TensorBoard, a second run) fails out of memory, and "
            "nvidia-smi shows the card full whatever the model needs. Fix: before any TensorFlow op, "
            "for gpu in tf.config.list_physical_devices('GPU'): tf.config.experimental.set_memory_growth(gpu, True) "
            "- or export TF_FORCE_GPU_ALLOW_GROWTH=true (TF_GPU_ALLOCATOR=cuda_malloc_async also fragments less)."))
    others = settings.get("other_processes") or []
    if others:
        held = sum(p["used_bytes"] for p in others)
        findings.append(Finding(
            "gpu-shared", "warning",
            f"{len(others)} other process(es) hold {format_bytes(held)} of GPU memory now (pids "
            f"{', '.join(str(p['pid']) for p in others[:5])}): this run gets the card minus that. Fix: stop them "
            "(restart the other notebook's runtime), or give each process a share with "
            "tf.config.set_logical_device_configuration(gpu, "
            "[tf.config.LogicalDeviceConfiguration(memory_limit=MB)])."))
    return findings


def _steps_per_epoch(ctx: CheckContext) -> tuple[int | None, str]:
    plan = _launch(ctx, "plan") or {}
    if plan.get("steps_per_epoch"):
        return plan["steps_per_epoch"], plan.get("steps_source") or "flag"
    data = ctx.document.get("data") or {}
    per_sample = ctx.document["model"].get("input_bytes_per_sample") or 0
    if data.get("kind") == "numpy" and data.get("host_bytes") and per_sample:
        samples = data["host_bytes"] // per_sample
        return math.ceil(samples / ctx.document["batch_size"]), f"{samples:,} samples in the data"
    return None, ""


def _run_seconds(ctx: CheckContext) -> tuple[float, str] | None:
    """(seconds, how) for the whole run: measured step time x steps per epoch x epochs; None when a part is
    missing (see time_over_limit)."""
    plan = _launch(ctx, "plan") or {}
    planned = next((p for p in ctx.document["probes"]
                    if p["batch_size"] == ctx.document["batch_size"] and p["status"] == "ok"), None)
    steps, steps_source = _steps_per_epoch(ctx)
    if not (planned and steps and plan.get("epochs")):
        return None
    total = planned["step_seconds"] * steps * plan["epochs"] + (planned.get("warmup_seconds") or 0)
    epochs_source = plan.get("epochs_source") or "flag"
    how = (f"{planned['step_seconds']:.3f} s per step measured on the {ctx.document['device']['kind']} x {steps:,} "
           f"steps per epoch ({steps_source}) x {plan['epochs']:,} epochs"
           + (f" ({epochs_source})" if epochs_source not in ("flag", "fit()") else ""))
    return total, how


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min" if seconds >= 60 \
        else f"{seconds:.0f} s"


@check
def time_over_limit(ctx: CheckContext) -> Finding | None:
    """Measured step time x steps per epoch x epochs against the time limit (--time-limit, 'colab' = 12 h);
    within it (or without one), the estimate itself, as information."""
    plan = _launch(ctx, "plan") or {}
    limit = plan.get("time_limit_seconds")
    estimate = _run_seconds(ctx)
    if estimate is None:
        if not limit:
            return None
        planned = any(p["batch_size"] == ctx.document["batch_size"] and p["status"] == "ok"
                      for p in ctx.document["probes"])
        missing = [what for what, value in (("epochs (--epochs, or epochs= in fit())", plan.get("epochs")),
                                            ("steps per epoch (--steps-per-epoch)", _steps_per_epoch(ctx)[0]),
                                            ("a measured step at the planned batch", planned)) if not value]
        return Finding("time-unknown", "info", f"No run-time estimate against the {limit / 3600:.1f} h limit: "
                                               f"missing {', '.join(missing)}.")
    total, how = estimate
    if not limit or total <= limit:
        within = f", within the {limit / 3600:.1f} h limit" if limit else ""
        return Finding("run-time", "info", f"The run takes about {_duration(total)} ({how}){within}.")
    resume = (f" The fit call's BackupAndRestore('{plan['backup_dir']}') lets the next session resume where this "
              "one stopped." if plan.get("backup_dir") else "")
    return Finding("time-over-limit", "error",
                   f"The run needs about {total / 3600:.1f} h ({how}), "
                   f"over the {limit / 3600:.1f} h limit: the session ends before training does.{resume} Fix: fewer "
                   f"epochs (about {max(1, int(plan['epochs'] * limit / total))} fit), save progress with "
                   "keras.callbacks.BackupAndRestore('backup/') to resume in the next session, or a faster device.")


@check
def checkpoints_over_disk(ctx: CheckContext) -> Finding | None:
    """Checkpoint bytes (weights + optimizer state) x checkpoints kept against the free disk; below 80 % of
    it, the size itself, as information."""
    checkpoint = (_launch(ctx, "plan") or {}).get("checkpoint")
    if not checkpoint or checkpoint.get("free_disk_bytes") is None:
        return None
    model = ctx.document["model"]
    one = model["param_bytes"] + (0 if checkpoint.get("weights_only") else model["optimizer_bytes"])
    total, free = one * checkpoint["kept"], checkpoint["free_disk_bytes"]
    what = "weights" if checkpoint.get("weights_only") else "weights + optimizer state"
    named = f"ModelCheckpoint('{checkpoint['filepath']}'" + (", save_best_only=True)" if checkpoint.get(
        "save_best_only") else ")") if checkpoint.get("filepath") else "checkpoints"
    if total <= 0.8 * free:
        return Finding("checkpoint-disk", "info",
                       f"Checkpoints take {format_bytes(total)} ({format_bytes(one)} of {what} x {checkpoint['kept']:,} "
                       f"kept, {named}) in {checkpoint['dir']}, which has {format_bytes(free)} free.")
    return Finding("checkpoints-over-disk", "error" if total > free else "warning",
                   f"Checkpoints need {format_bytes(total)} ({format_bytes(one)} of {what} x {checkpoint['kept']:,} "
                   f"kept) in {checkpoint['dir']}, which has {format_bytes(free)} free: the run "
                   f"{'fails' if total > free else 'nearly fills the disk'} when they are written. Fix: keep one "
                   "checkpoint (ModelCheckpoint('ckpt/best.keras', save_best_only=True)), save_weights_only=True, "
                   "or a checkpoint folder on a larger disk (--checkpoint-dir).")


def sustained_growth(growths: list[int | None]) -> dict[str, int] | None:
    """The trailing run of steps (trials, rebuilds) over which RSS grew every time: its length, mean and total
    growth; None when the last step did not grow. Shared with preflight.analysis.checks' rebuild check."""
    run: list[int] = []
    for growth in reversed(growths):
        if growth is None or growth <= 0:
            break
        run.append(growth)
    if not run:
        return None
    return {"steps": len(run), "mean_growth_bytes": int(sum(run) / len(run)), "total_growth_bytes": int(sum(run))}



REBUILD_GROWTH_WARN_BYTES = 2**20   # per build, sustained
REBUILD_MIN_GROWING = 3             # consecutive growing builds before warning


def _longest_growth(growths: list[int]) -> dict[str, int] | None:
    """The longest run of steps over which RSS grew every time, wherever it lies: the garbage collector frees
    lingering models every few builds, so the series can end on a drop after builds that grew."""
    best: list[int] = []
    run: list[int] = []
    for growth in growths:
        run = run + [growth] if growth > 0 else []
        if len(run) > len(best):
            best = run
    if not best:
        return None
    return {"steps": len(best), "mean_growth_bytes": int(sum(best) / len(best)), "total_growth_bytes": int(sum(best))}


def _trailing_net_growth(rss: list[int]) -> dict | None:
    """RSS over the last REBUILD_MIN_GROWING builds: their net growth, when none of them freed as much as a
    build added on average (a collection that frees the lingering models frees at least that). A leak's series
    may dip by less at one build (the leaking fixture, 4 MiB a build: 823, 830, 829 MiB, and 455.9, 462.0,
    461.0 MiB), which a run of strictly growing builds would read as no leak."""
    steps = REBUILD_MIN_GROWING
    if len(rss) <= steps:
        return None
    tail = rss[-steps - 1:]
    total = tail[-1] - tail[0]
    freed_at_most = max(REBUILD_GROWTH_WARN_BYTES, total / steps)
    if any(after - before < -freed_at_most for before, after in zip(tail, tail[1:])):
        return None
    return {"steps": steps, "mean_growth_bytes": int(total / steps), "total_growth_bytes": int(total)}


def _rebuild_growth(rss: list[int], *, trailing: bool) -> dict | None:
    growths = [after - before for before, after in zip(rss, rss[1:])]
    growth = _trailing_net_growth(rss) if trailing else _longest_growth(growths)
    if growth and growth["steps"] >= REBUILD_MIN_GROWING and growth["mean_growth_bytes"] > REBUILD_GROWTH_WARN_BYTES:
        return growth
    return None


@check
def rebuild_ram_growth(ctx: CheckContext) -> Finding | None:
    """Host RAM growing over repeated build_model() calls (--rebuilds N), and whether clearing stops it."""
    rebuilds = _readiness(ctx, "rebuilds")
    if rebuilds.get("skipped"):
        return Finding("rebuilds-skipped", "info", f"RAM over rebuilds was not measured: {rebuilds['skipped']}.")
    if not rebuilds:
        return None
    # A leak still grows at the end even with gc.collect() before each build; growth as written may end on a
    # collection that freed the dropped models, so any sustained run counts.
    as_written = _rebuild_growth(rebuilds["rss_as_written"], trailing=False)
    cleared = _rebuild_growth(rebuilds["rss_cleared"], trailing=True)
    count = rebuilds["count"]
    if cleared:
        return Finding("rebuild-ram-leak", "warning",
                       f"Host RAM grew by {format_bytes(cleared['mean_growth_bytes'])} per build_model() call over "
                       f"the last {cleared['steps']} of {count} builds, even with keras.backend.clear_session() and "
                       "gc.collect() before each: something keeps every model alive (a module-level list or cache, "
                       "a callback or closure holding the model). At this rate 100 builds take "
                       f"{format_bytes(cleared['mean_growth_bytes'] * 100)} more. Fix: drop those references.")
    if as_written:
        return Finding("rebuild-ram-growth", "warning",
                       f"Host RAM grew by {format_bytes(as_written['mean_growth_bytes'])} per build_model() call over "
                       f"{as_written['steps']} of {count} builds made like a training loop (the previous model "
                       "dropped); with keras.backend.clear_session() and gc.collect() before each build it did not "
                       f"grow. At this rate 100 builds take {format_bytes(as_written['mean_growth_bytes'] * 100)} "
                       "more. Fix: import gc; keras.backend.clear_session(); gc.collect() before each build_model().")
    return None
