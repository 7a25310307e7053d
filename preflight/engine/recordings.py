"""Recorded child runs, replayed through the runner: for preflight's own test suite, never a user's check.

A child run is what costs a test its seconds (TensorFlow builds and steps a model). With `PREFLIGHT_REPLAY_DIR`
set, each child run is recorded there: the events the child sent, how its process ended, its log. A later run
of the same job replays a record through the runner (engine.runner) instead of starting a child, so everything
after the child (the runner's reading of events, the analysis, the report, the exit code) runs as it did, on
figures a real child measured. `PREFLIGHT_REPLAY_FROM` names more folders to replay from, read only: the
records committed with the tests (tests/recorded, made by tests/record_children.py from a passing run).

A record is found by its key: the job, the bytes of the model file (or of the folder a model or search space
was handed over in), the environment variables that change
what a child does, the installed versions of what it imports (its backend's), and the source of the preflight package that
recorded it. Paths are made relative to the package's folder and pytest's temporary folders, so a record
made in one checkout replays in another; any change to preflight's code makes every record stale, and those
jobs are measured again. Not recorded: a run that ended by timeout, a run that writes a profile, a run
whose fixture model a test observes (PREFLIGHT_TEST_* variables).
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import tempfile
from dataclasses import asdict
from functools import lru_cache
from importlib import metadata
from pathlib import Path

VARIABLE = "PREFLIGHT_REPLAY_DIR"
READ_ONLY_VARIABLE = "PREFLIGHT_REPLAY_FROM"
# Variables that change what the child runs; the rest of the environment (PATH, HOME, CI's own) does not.
_RELEVANT_PREFIXES = ("KERAS_", "TF_", "XLA_", "JAX_", "CUDA_", "PREFLIGHT_", "COLAB_", "TPU_", "KAGGLE_",
                      "OMP_", "PYTHONPATH", "PYTHONHASHSEED")
# Set per child (the events pipe, the log's path, the shared fork server's socket) or naming these folders;
# TensorFlow sets the TPU_ML_PLATFORM* and TPU_SKIP_MDS_QUERY ones when it is imported: whether a test worker
# imported it before depends on which tests ran there first, and the child imports it either way.
_VOLATILE = ("PREFLIGHT_EVENTS_FD", "PREFLIGHT_CHILD_LOG", "PREFLIGHT_FORK_SERVER_SOCKET", VARIABLE,
             READ_ONLY_VARIABLE, "TPU_ML_PLATFORM", "TPU_ML_PLATFORM_VERSION", "TPU_SKIP_MDS_QUERY")
# A test's fixture model told to write what the test then reads (a marker, the batches it traced), or to fail
# on cue: the child itself is what that test looks at.
_OBSERVED = "PREFLIGHT_TEST_"
# What the child imports, by backend (Keras imports TensorFlow for its I/O under every backend).
_VERSIONED = ("tensorflow", "keras", "numpy", "keras-hub", "keras-tuner")
_BACKEND_PACKAGES = {"jax": ("jax", "jaxlib"), "torch": ("torch",)}
_PACKAGE = Path(__file__).resolve().parents[1]          # preflight/
_PYTEST_TEMPORARY = re.compile(r"/pytest-of-[^/]+/pytest-\d+(/popen-gw\d+)?")
_runs_in_scope: dict[tuple[str, str], int] = {}
_spelled_here: dict[str, dict[str, str]] = {}
_asked: dict[str, str] = {}  # key -> the job and environment it was made from, portable


def key_for(job, env: dict[str, str]) -> str | None:
    """The record's name for this job in this environment; None when replay is off or the job is not kept."""
    if not os.environ.get(VARIABLE) or job.profile_dir or any(k.startswith(_OBSERVED) for k in env):
        return None
    relevant = {k: v for k, v in env.items() if k.startswith(_RELEVANT_PREFIXES) and k not in _VOLATILE}
    fields = asdict(job)
    if job.usable_bytes is None and job.memory_limit_bytes:
        # No budget: the probes' limit is a share of the host's free memory, which moves by a few hundred MiB
        # between runs; a test model's step is far under it, and runs the same under either figure.
        fields["memory_limit_bytes"] = relevant["TF_CPU_BFC_MEM_LIMIT_IN_MB"] = "the host's free memory"
    handed_over = job.source.get("dir")  # a new folder for each check: what it holds is what counts
    spelled = json.dumps([fields, relevant], sort_keys=True, default=str)
    digest = hashlib.sha256(_fingerprint(job.backend).encode())
    digest.update(_portable(spelled.replace(handed_over, "<handed-over>") if handed_over else spelled).encode())
    try:
        for path in _source_files(job.source):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())  # a test may write another model at one path
    except OSError:
        return None
    # The same job twice in one test is two processes (the planned batch's repeats, the largest batch's
    # confirmations): the n-th run of a job in a test replays the n-th record, never the first one again.
    scope = (os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0], digest.hexdigest())
    _runs_in_scope[scope] = _runs_in_scope.get(scope, -1) + 1
    key = f"{digest.hexdigest()[:24]}-{_runs_in_scope[scope]}"
    # A record's paths (a message naming the model file, a traceback in the log) are spelled back as this run's.
    here = _PYTEST_TEMPORARY.search(spelled)
    _spelled_here[key] = {"<checkout>": str(_PACKAGE.parent), "<pytest>": here.group(0) if here else "<pytest>",
                          "<tmp>": tempfile.gettempdir()}
    _asked[key] = _portable(spelled)
    return key


def load(key: str | None) -> dict | None:
    if key is None:
        return None
    for folder in _folders():
        try:
            text = (folder / f"{key}.json").read_text(encoding="utf-8")
        except OSError:
            continue
        for placeholder, spelling in _spelled_here.get(key, {}).items():
            text = text.replace(placeholder, json.dumps(spelling)[1:-1])
        record = json.loads(text)
        _count(key, replayed=True)
        return record
    _count(key, replayed=False)
    misses = _folders()[0] / "misses"  # what was asked and not found: beside a record's "job", why it is stale
    misses.mkdir(exist_ok=True)
    (misses / f"{key}.json").write_text(_asked.get(key, ""), encoding="utf-8")
    return None


def save(key: str | None, events: list[dict], returncode: int | None, log_text: str) -> None:
    if key is None:
        return
    folder = _folders()[0]
    temporary = folder / f"{key}.{os.getpid()}.tmp"
    text = json.dumps({"job": _asked.get(key), "events": events, "returncode": returncode, "log": log_text},
                      sort_keys=True)
    temporary.write_text(_portable(text), encoding="utf-8")
    temporary.replace(folder / f"{key}.json")  # whole or not at all: the other test worker may read it


class Replayed:
    """Stands where the child process stood: it has already ended, with the recorded exit code."""

    pid = None

    def __init__(self, returncode: int | None):
        self.returncode = returncode

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        return self.returncode


def counts(folder: Path | None = None) -> tuple[int, int]:
    """(runs measured, runs replayed) through the writable folder (or `folder`) so far."""
    try:
        words = ((folder or _folders()[0]) / "runs.log").read_text(encoding="utf-8").split()
    except OSError:
        return 0, 0
    return words.count("measured"), words.count("replayed")


def _count(key: str, replayed: bool) -> None:
    test = os.environ.get("PYTEST_CURRENT_TEST", "").replace(" ", "_")
    with open(_folders()[0] / "runs.log", "a", encoding="utf-8") as log:
        log.write(f"{key} {'replayed' if replayed else 'measured'} {test}\n")


def _folders() -> list[Path]:
    """The writable folder first, then the read-only ones."""
    writable = Path(os.environ[VARIABLE])
    writable.mkdir(parents=True, exist_ok=True)
    extra = [Path(p) for p in os.environ.get(READ_ONLY_VARIABLE, "").split(os.pathsep) if p]
    return [writable, *extra]


def _source_files(source: dict) -> list[Path]:
    if source.get("path"):
        return [Path(source["path"])]
    if source.get("dir"):
        return sorted(p for p in Path(source["dir"]).rglob("*") if p.is_file())
    return []


def _portable(text: str) -> str:
    """Paths as they read in any checkout: the package's folder and pytest's temporary folders named, not spelled."""
    text = text.replace(str(_PACKAGE.parent), "<checkout>")
    text = _PYTEST_TEMPORARY.sub("<pytest>", text)
    return text.replace(tempfile.gettempdir(), "<tmp>")


@lru_cache(maxsize=None)
def _fingerprint(backend: str) -> str:
    """What recorded the record: the preflight source, the versions it ran under."""
    digest = hashlib.sha256(platform.python_version().encode())
    for name in (*_VERSIONED, *_BACKEND_PACKAGES.get(backend, ())):
        try:
            digest.update(f"{name}={metadata.version(name)}".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{name}=none".encode())
    for path in sorted(_PACKAGE.rglob("*.py")):
        digest.update(str(path.relative_to(_PACKAGE)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()
