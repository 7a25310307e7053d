"""Parent side of the dry run: starts the child process, follows its events, survives its failures.

The child may run out of memory (a clean "oom" event, or a crash: with oneDNN on, TF aborts or segfaults
on an allocator OOM, and the kernel's OOM killer sends SIGKILL), hang past the timeout, or crash. Each of
these becomes a probe status; whatever was measured before is kept, and the caller carries on.
"""
from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from preflight import errors
from preflight.engine import recordings, zygote
from preflight.engine.backends import default_backend
from preflight.engine.launch import gpu_total_bytes
from preflight.common.measurements import DeviceInfo, ModelInfo, ProbeOutcome, ProbeResult

MIB = 2**20
# Lines the allocator or the OS leave when memory ran out; a crash with one of these is an OOM.
_OOM_MARKERS = ("ran out of memory", "resourceexhausted", "out of memory", "std::bad_alloc", "oom when allocating")
_ERROR_CLASSES = {cls.slug: cls for cls in (
    errors.UsageError, errors.ConfigError, errors.TargetLoadError, errors.ModelError,
    errors.DataError, errors.ProbeError, errors.IsolationError)}

ProgressCallback = Callable[[dict], None]
# A child ends after a step that failed, and the next batch size starts in a fresh process; with the
# shrink rounds after out-of-memory (engine.plan) a run may need that many processes.
MAX_CHILD_STARTS = 8


@dataclass(frozen=True)
class ProbeJob:
    # {"kind": "file", "path", "hp_values"?} (a model.py or notebook), {"kind": "saved", "dir"} (a handed-over
    # model), {"kind": "keras_file", "path", "custom_objects", "data"} (engine.saved_model) or
    # {"kind": "hypermodel", "dir", "hp_values"} (a handed-over search space, preflight.engine.handoff)
    source: dict
    batch_sizes: list[int]
    measured_steps: int = 3
    memory_limit_bytes: int | None = None
    timeout_seconds: float = 600.0     # per probe; loading the model gets the same allowance
    single_thread: bool = False
    adaptive: bool = False             # let the child add rounds of batch sizes (preflight.engine.plan)
    # with adaptive: after a size ran, measure the sizes that decide the largest batch (plan.decision_round);
    # off where the largest-batch search in fresh processes follows and measures them under model.fit
    decision_round: bool = True
    planned_batch_size: int | None = None
    usable_bytes: int | None = None    # the budget or target memory the recommendation aims at
    prior_probes: list[dict] = field(default_factory=list)  # results of an earlier child of the same run
    variant: dict | None = None        # a what-if (preflight.whatif) applied before probing
    list_variants: bool = False        # ask the child which what-ifs this model allows
    target_kind: str | None = None     # what the what-ifs aim at (mixed_float16 on GPU, bfloat16 elsewhere)
    profile_dir: str | None = None     # profile the planned batch after the probes (peak composition)
    variant_from_shapes: bool = False  # the base model does not fit: build the variant from shapes alone
    readiness: bool = False            # record strategy and XLA after the probes (preflight.engine.readiness)
    rebuilds: int = 0                  # with readiness: RSS over this many build_model() calls
    as_fit: bool = False               # measured_steps of model.fit itself per batch (engine.probe.fit_probe)
    seq_len: int | None = None         # the size of the inputs' None axes besides the batch (--seq-len)
    length_curve: bool = False         # after the probes, measure the planned batch at other lengths of that axis
    # The Keras backend the steps run under (preflight.engine.backends): the caller's own by default.
    backend: str = field(default_factory=default_backend)


def child_environment(job: ProbeJob) -> dict[str, str]:
    env = dict(os.environ)
    env["TF_CPU_ALLOCATOR_USE_BFC"] = "true"  # stats from the same BFC allocator a GPU uses (notes §1)
    # The allocator's "ran out of memory" lines are warnings: a higher level inherited from the caller (a
    # test suite, a notebook) would hide what tells an out-of-memory abort from a crash. The log is ours.
    env["TF_CPP_MIN_LOG_LEVEL"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    if job.memory_limit_bytes:
        env["TF_CPU_BFC_MEM_LIMIT_IN_MB"] = str(max(1, job.memory_limit_bytes // MIB))
    env.update(backend_environment(job.backend, job.memory_limit_bytes))
    # The folder that holds the preflight package (preflight/engine/runner.py -> its parents[2]), never the
    # package's own folder: on sys.path that would shadow `keras` (preflight/keras.py), `config`, `notebook`...
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, os.getcwd(), env.get("PYTHONPATH")) if p)
    return env


def backend_environment(backend: str, memory_limit_bytes: int | None) -> dict[str, str]:
    """What the child needs before it imports Keras: the backend, and its memory settings on a GPU."""
    env = {"KERAS_BACKEND": backend}
    if backend != "tensorflow":
        # Keras may import TensorFlow for file I/O even on another backend; unchecked, TF then takes the
        # whole card and the measured backend's allocations fail (gpu-findings.md, keras-core #473).
        env["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
    if backend == "jax":
        # JAX takes 75 % of the card at start unless told not to; then the cap is a fraction of the card.
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
        total = gpu_total_bytes()
        if memory_limit_bytes and total:
            env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{min(1.0, memory_limit_bytes / total):.6f}"
    return env


def forkable(job: ProbeJob) -> bool:
    """A what-if variant or a search configuration: one of many children, each measured once. They are forked
    from the fork server (preflight.engine.zygote). The verdict's probes, the planned batch's other processes
    and the largest batch's fit runs start a new interpreter: forked children reach a step's high modes less
    often (benchmarks/forked_children.py, 16 each: the LSTM fixture's upper mode in 31 % of forked children
    against 62 % of fresh processes, the cnn's highest peak 7.83 MB against 8.26 MB), and those figures must
    hold for the fresh process a real run is. `PREFLIGHT_FORK_SERVER=all` forks them too: for a test suite,
    whose assertions are about what is done with the figures, not about their spread."""
    if os.environ.get("PREFLIGHT_FORK_SERVER") == "all":
        return True
    return job.variant is not None or job.source.get("kind") == "hypermodel" or "hp_values" in job.source


class Cancelled(Exception):
    """run_probes was told to stop (its `cancel` event set): its child was killed."""


def run_probes(job: ProbeJob, on_progress: ProgressCallback | None = None,
               cancel: threading.Event | None = None) -> ProbeOutcome:
    """Probe the job's batch sizes (and, if adaptive, the child's later rounds) in one child process.

    After an out-of-memory, hang or crash at one batch size nothing larger is tried: it would fail the
    same way, after a long wait. `cancel`: for a run on another thread, set to kill its child (Cancelled).
    """
    outcome = ProbeOutcome()
    current = job
    for _ in range(MAX_CHILD_STARTS):
        run = _ChildRun(current, on_progress, cancel)
        run.run(outcome)
        if run.restart is None:
            break
        # A step failed (out of memory), or the process died of it: what is left runs in a fresh process,
        # so that no probe inherits a failed step's model, optimizer or allocator state.
        current = replace(job, batch_sizes=run.restart.batch_sizes, adaptive=job.adaptive and not run.restart.decided,
                          prior_probes=[p.to_dict() for p in outcome.probes])
    return outcome


@dataclass(frozen=True)
class Restart:
    """What a fresh child takes over from one that stopped after a failed step."""

    batch_sizes: list[int]   # the rest of the child's round ([]: the next round is the new child's to plan)
    decided: bool            # the decision round was already planned: no more rounds after these


class _ChildRun:
    """One child process: spawn, follow events until done, timeout or death."""

    def __init__(self, job: ProbeJob, on_progress: ProgressCallback | None, cancel: threading.Event | None = None):
        self.job = job
        self.cancel = cancel
        self.on_progress = on_progress or (lambda event: None)
        self.restart: Restart | None = None  # set when the child stopped after a failed step, or died of it
        self.stage = "starting"             # the child's last progress stage, for a death before the model
        self.seen: list[dict] = []          # the child's events as read (engine.recordings)
        self.ended_by_itself = False        # the child said it was done, or its process ended: not a timeout

    def run(self, outcome: ProbeOutcome) -> None:
        with tempfile.TemporaryDirectory(prefix="preflight-") as workdir:
            job_path = Path(workdir) / "job.json"
            job_path.write_text(json.dumps(asdict(self.job)), encoding="utf-8")
            log_path = Path(workdir) / "child.log"
            env = child_environment(self.job)
            record_key = recordings.key_for(self.job, env)  # None unless a test suite asks (engine.recordings)
            recorded = recordings.load(record_key)
            if recorded is not None:
                self._replay(recorded, outcome, log_path)
                return
            read_fd, write_fd = os.pipe()
            env["PREFLIGHT_EVENTS_FD"] = str(write_fd)
            env["PREFLIGHT_CHILD_LOG"] = str(log_path)  # the allocator's own out-of-memory records land there
            with open(log_path, "wb") as log:
                # forked from a process that has TensorFlow imported (preflight.engine.zygote), or a fresh one
                forked = zygote.start_child(str(job_path), env, log.fileno(), write_fd) if forkable(self.job) else None
                process = forked or subprocess.Popen(
                    [sys.executable, "-m", "preflight.child", str(job_path)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                    pass_fds=(write_fd,), start_new_session=True,
                )
            os.close(write_fd)
            events: queue.Queue = queue.Queue()
            reader = threading.Thread(target=_read_events, args=(read_fd, events), daemon=True)
            reader.start()
            try:
                self._follow(process, events, outcome, log_path)
            finally:
                returncode = process.poll()
                _kill_group(process)
                reader.join(timeout=5)
                if self.ended_by_itself:
                    recordings.save(record_key, self.seen, returncode, _tail(log_path))

    def _replay(self, recorded: dict, outcome: ProbeOutcome, log_path: Path) -> None:
        log_path.write_text(recorded["log"], encoding="utf-8")
        events: queue.Queue = queue.Queue()
        for event in [*recorded["events"], {"event": "eof"}]:
            events.put(event)
        self._follow(recordings.Replayed(recorded["returncode"]), events, outcome, log_path)

    def _follow(self, process, events: queue.Queue, outcome: ProbeOutcome, log_path: Path) -> None:
        pending = list(self.job.batch_sizes)
        deadline = time.monotonic() + self.job.timeout_seconds
        while True:
            try:
                event = events.get(timeout=0.2)
            except queue.Empty:
                event = None
            if self.cancel is not None and self.cancel.is_set():
                raise Cancelled("stopped by its caller")
            if event is None:
                if time.monotonic() > deadline:
                    self._record_failure(outcome, pending, "timeout",
                                         f"no result within the {self.job.timeout_seconds:.0f} s timeout")
                    return
                if process.poll() is not None and events.empty():
                    self.ended_by_itself = True
                    self._child_died(process.returncode, outcome, pending, log_path)
                    return
                continue
            if event.get("event") == "eof":
                process.wait()
                if events.empty():
                    self.ended_by_itself = True
                    self._child_died(process.returncode, outcome, pending, log_path)
                    return
                continue
            self.seen.append(event)
            kind = event["event"]
            self.ended_by_itself = kind in ("restart", "error", "done")
            if kind == "progress":
                self.stage = event.get("stage", self.stage)
                self.on_progress(event)
            elif kind == "model":
                outcome.model = ModelInfo.from_dict(event["model"])
                outcome.device = DeviceInfo.from_dict(event["device"])
                outcome.data = event.get("data")
                deadline = time.monotonic() + self.job.timeout_seconds
                self.on_progress(event)
            elif kind == "graph_estimate":
                outcome.graph_estimates = {int(b): int(v) for b, v in event["estimates"].items()}
            elif kind == "variant":
                outcome.variant = {"description": event["description"], "message": event["message"]}
            elif kind == "variants":
                outcome.variant_specs = event["specs"]
            elif kind == "device":
                outcome.device = DeviceInfo.from_dict(event["device"])
            elif kind == "floor":
                outcome.floor = event["floor"]
            elif kind == "variant_floors":
                outcome.variant_floors = event["floors"]
            elif kind == "load_oom":
                outcome.load_oom = event["message"]
            elif kind == "peak_composition":
                outcome.peak_composition = {"composition": event["composition"], "message": event["message"]}
            elif kind == "readiness":
                outcome.readiness = event["readiness"]
            elif kind == "fit_plan":
                outcome.fit_plan = event["plan"]
            elif kind == "dynamic_axes":
                outcome.dynamic_axes = {k: v for k, v in event.items() if k != "event"}
            elif kind == "length_probe":
                outcome.length_probes.append({"length": int(event["length"]),
                                              "probe": ProbeResult.from_dict(event["probe"])})
                deadline = time.monotonic() + self.job.timeout_seconds
            elif kind == "plan":
                pending[:] = event["batch_sizes"]  # the child finished its previous round
            elif kind == "probe":
                probe = ProbeResult.from_dict(event["probe"])
                outcome.probes.append(probe)
                pending.remove(probe.batch_size)
                deadline = time.monotonic() + self.job.timeout_seconds
                self.on_progress(event)
            elif kind == "restart":
                self.restart = Restart([int(b) for b in event["batch_sizes"]], bool(event["decided"]))
                return
            elif kind == "error":
                cls = _ERROR_CLASSES.get(event.get("slug"), errors.ProbeError)
                raise cls(event["message"], hint=event.get("hint"))
            elif kind == "done":
                return

    def _child_died(self, returncode: int | None, outcome: ProbeOutcome, pending: list[int],
                    log_path: Path) -> None:
        if not pending:
            return
        log_tail = _tail(log_path)
        ran_out = returncode == -signal.SIGKILL or any(marker in log_tail.lower() for marker in _OOM_MARKERS)
        if outcome.model is None and ran_out:
            # The process died building the model: the allocator aborted (oneDNN) or the kernel killed it.
            outcome.load_oom = f"out of memory while building the model (process ended: {_describe_exit(returncode)})"
            return
        if outcome.model is None:
            raise errors.ProbeError(
                f"the dry-run process ended ({_describe_exit(returncode)}) while {self.stage}, before the model "
                f"was loaded: {_last_line(log_tail)}",
                hint="run `python your_model.py` to check it loads: an os._exit() at import, or a crash in code it "
                     "imports, ends the process" if self.job.source["kind"] == "file"
                else "save the model and load it in a fresh kernel to see the error: model.save('m.keras'), "
                     "then keras.saving.load_model('m.keras')",
            )
        if ran_out:
            self._record_failure(outcome, pending, "oom",
                                 f"out of memory in the probe (process ended: {_describe_exit(returncode)})")
            # With oneDNN on, an allocator OOM can abort the process; smaller batches still deserve a probe,
            # and with none left in this round, an adaptive job's next round is the fresh child's to plan.
            smaller = [b for b in pending[1:] if b < pending[0]]
            if smaller or (self.job.adaptive and not any(p.status == "ok" for p in outcome.probes)):
                self.restart = Restart(smaller, decided=not self.job.adaptive)
        else:
            self._record_failure(outcome, pending, "crashed",
                                 f"the probe process crashed ({_describe_exit(returncode)}): {_last_line(log_tail)}")

    def _record_failure(self, outcome: ProbeOutcome, pending: list[int], status: str, message: str) -> None:
        outcome.probes.append(ProbeResult(pending[0], status, message=message))


def _read_events(fd: int, events: queue.Queue) -> None:
    with os.fdopen(fd, "r", encoding="utf-8") as stream:
        for line in stream:
            try:
                events.put(json.loads(line))
            except json.JSONDecodeError:
                continue
    events.put({"event": "eof"})


def _kill_group(process: subprocess.Popen | zygote.ForkedChild) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:  # not a group leader yet (a forked child before its setsid)
            try:
                os.kill(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    process.wait()


def _describe_exit(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"code {returncode}"


def _tail(path: Path, max_bytes: int = 20000) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-max_bytes:].decode("utf-8", errors="replace")


# TensorFlow's C++ log lines ("E0000 00:00:1796089164.709571 5794 cuda_platform.cc:52] ...") say nothing
# about the user's failure.
_NATIVE_LOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip() and not _NATIVE_LOG_LINE.match(line.strip())]
    return lines[-1][:300] if lines else "no output"
