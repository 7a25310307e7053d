"""preflight's verdict under JAX and PyTorch on a GPU against a real run capped at the same budget (issue 14).

For each case (zoo model at its batch size N, a budget, a backend), in priority order (every model and
backend at the middle budget first, then the low, then the high one):
(a) preflight: `python -m preflight MODEL.py --backend B --budget X --batch-size N --json P --html none
    --no-whatif --quiet` in a subprocess; from its JSON: fits, peak, max and recommended batch, how the
    peak was read.
(b) the truth: `benchmarks/capped_fit.py` in a fresh process capped at the same budget (fraction = budget /
    the card's memory, from nvidia-smi), `model.fit` for 3 steps at batch N: "ok" or "oom"; then, while
    time is left, the same at preflight's recommended batch.
(c) TensorFlow on CPU at the same model and batch, read from results/gpu_backends_cpu.json, which
    `--cpu-only` writes on a machine with TensorFlow (the GPU machine has none).
Agreement: preflight says fits and the capped run ran out of memory: "unsafe"; says it does not fit and the
run ran: "cautious"; the same answer: "agree"; on a CPU nothing is capped: "uncapped".

The JSON is rewritten after every case, so a run stopped by `--time-budget` (no new case starts after it;
running ones are stopped `--grace` seconds later, 30 by default) still leaves everything measured.

On the lent GPU machine (H200, no TensorFlow, no registry): first, here, `bash benchmarks/device_wheels.sh`
(keras, namex, optree into .whl/, about 3 MB), then one device call with carry [".whl"], timeout_s 420:

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site
    .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD && PYTHONUNBUFFERED=1 python3 -m benchmarks.gpu_backends
    --out $OUT

Here (CPU): `python -m benchmarks.gpu_backends --cpu-only` (TensorFlow figures, ~10 minutes on 2 cores),
`python -m benchmarks.gpu_backends --smoke` (one model, one budget, JAX on the CPU: the plumbing, < 2 min).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from benchmarks import zoo  # noqa: E402
from benchmarks.capped_fit import is_out_of_memory  # noqa: E402
from preflight.common.units import parse_size  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"
CPU_REFERENCE_PATH = RESULTS_DIR / "gpu_backends_cpu.json"
MIB = 2**20
FORMAT = 1
TRUTH_STEPS = 3

# model: (batch size, budgets low / middle / high). The batch sizes are those of the GPU notes
# (gpu-findings.md); the budgets bracket where the notes saw a run start to fail under a cap.
CASES: dict[str, tuple[int, tuple[str, str, str]]] = {
    "unet": (64, ("512MiB", "1GiB", "2GiB")),
    "xception": (16, ("768MiB", "1GiB", "1536MiB")),
    "transformer": (128, ("512MiB", "768MiB", "1GiB")),
    "wide_cnn": (16, ("2560MiB", "3GiB", "4608MiB")),
}
BACKENDS = ("jax", "torch")
BUDGET_ORDER = (1, 0, 2)  # the middle budget first: a run cut short still covers every model and backend
SMOKE_CASE = ("mlp", 8, "256MiB", "jax")  # the zoo model JAX compiles fastest: the smoke stays under 2 min


@dataclass(frozen=True)
class Case:
    model: str
    batch_size: int
    budget_bytes: int
    backend: str

    @property
    def key(self) -> str:
        return f"{self.model}/bs{self.batch_size}/{self.budget_bytes // MIB}MiB/{self.backend}"


def plan_cases(cases: dict[str, tuple[int, tuple[str, ...]]], backends: tuple[str, ...] | list[str],
               budget_order: tuple[int, ...] = BUDGET_ORDER) -> list[Case]:
    """Every (model, budget, backend), ordered budget rank first, then model, then backend."""
    planned = []
    for rank in budget_order:
        for model, (batch_size, budgets) in cases.items():
            if rank < len(budgets):
                planned += [Case(model, batch_size, parse_size(budgets[rank]), backend) for backend in backends]
    return planned


def memory_fraction(budget_bytes: int, total_bytes: int | None) -> float | None:
    """The cap as a fraction of the whole card (what JAX and PyTorch take); None without a GPU."""
    if not total_bytes:
        return None
    return min(1.0, budget_bytes / total_bytes)


def preflight_summary(document: dict[str, Any] | None, returncode: int, stderr: str = "") -> dict[str, Any]:
    """What the comparison needs from preflight's JSON report (None when it wrote none)."""
    if document is None:
        return {"status": "error", "returncode": returncode, "fits": None,
                "message": _last_lines(stderr) or f"no JSON report (exit {returncode})"}
    backend = document.get("backend") or {}
    device = document.get("device") or {}
    return {
        "status": "measured", "returncode": returncode, "fits": document.get("fits"),
        "peak_bytes": document.get("peak_bytes"), "peak_source": document.get("peak_source"),
        "peak_upper_bytes": document.get("peak_upper_bytes"),
        "max_batch_size": document.get("max_batch_size"),
        "recommended_batch_size": document.get("recommended_batch_size"),
        "backend": backend.get("name"), "backend_version": backend.get("version"), "method": backend.get("method"),
        "device": device.get("name"), "allocator": device.get("allocator"),
        "memory_limit_bytes": device.get("memory_limit_bytes"),
        "probes": [{key: probe.get(key) for key in ("batch_size", "status", "peak_bytes", "step_seconds")}
                   for probe in document.get("probes") or []],
    }


def truth_from_process(returncode: int | None, stdout: str, stderr: str) -> dict[str, Any]:
    """The capped run's result: its JSON line when it printed one, else its death classified by the
    allocator's words (XLA may abort rather than raise). Its JSON line wins: XLA logs "out of memory"
    warnings while autotuning even in runs that then succeed."""
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if lines:
        try:
            return json.loads(lines[-1])
        except json.JSONDecodeError:
            pass
    if returncode is None:
        return {"status": "timeout", "message": _last_lines(stderr)}
    status = "oom" if is_out_of_memory(stderr) else "error"
    return {"status": status, "returncode": returncode, "message": _last_lines(stderr)}


def agreement(preflight_fits: bool | None, truth_status: str | None) -> str:
    """preflight's verdict against the capped run at the same batch and budget."""
    if truth_status == "ran":
        return "uncapped"
    if preflight_fits is None or truth_status not in ("ok", "oom"):
        return "n/a"
    if preflight_fits and truth_status == "oom":
        return "unsafe"
    if not preflight_fits and truth_status == "ok":
        return "cautious"
    return "agree"


def _mib(num_bytes: int | float | None) -> str:
    return "-" if num_bytes is None else f"{num_bytes / MIB:.0f}"


def _fits_text(fits: bool | None) -> str:
    return {True: "fits", False: "no", None: "-"}[fits]


def table_rows(results: list[dict[str, Any]], cpu_reference: dict[str, Any] | None) -> list[list[str]]:
    """One row per case: preflight's answer, the capped run's, their agreement, and TF on CPU alongside."""
    cpu_models = (cpu_reference or {}).get("models", {})
    rows = []
    for result in results:
        case, pre, truth = result["case"], result.get("preflight") or {}, result.get("truth") or {}
        at_recommended = result.get("truth_at_recommended") or {}
        cpu = cpu_models.get(case["model"], {})
        cpu_same_batch = cpu.get("batch_size") == case["batch_size"]
        rows.append([
            case["model"], str(case["batch_size"]), _mib(case["budget_bytes"]), case["backend"],
            _fits_text(pre.get("fits")) if pre.get("status") == "measured" else pre.get("status", "-"),
            _mib(pre.get("peak_bytes")),
            f"{pre.get('recommended_batch_size') or '-'}/{pre.get('max_batch_size') or '-'}",
            truth.get("status", "-"), _mib(truth.get("peak_bytes")),
            at_recommended.get("status", "-"),
            result.get("agreement", "n/a"),
            _mib(cpu.get("preflight_peak_bytes")) if cpu_same_batch else "-",
            _mib(cpu.get("truth_peak_bytes")) if cpu_same_batch else "-",
        ])
    return rows


TABLE_HEADER = ["model", "batch", "budget MiB", "backend", "preflight", "pf peak MiB", "rec/max batch",
                "capped run", "run peak MiB", "run at rec", "agreement", "TF CPU pf MiB", "TF CPU run MiB"]


def format_table(rows: list[list[str]], header: list[str] = TABLE_HEADER) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _last_lines(text: str, count: int = 6) -> str:
    return "\n".join(text.strip().splitlines()[-count:])[-1500:]


# --- running (subprocesses; nothing above this line starts one) ------------------------------------------

def run_bounded(command: list[str], env: dict[str, str], timeout_s: float) -> tuple[int | None, str, str]:
    """Run in its own session; past the timeout, SIGTERM (preflight then kills its dry-run child), then
    SIGKILL to the whole group. Returns (returncode or None when timed out, stdout, stderr)."""
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=max(1.0, timeout_s))
        return process.returncode, stdout, stderr
    except subprocess.TimeoutExpired:
        process.terminate()
        try:
            stdout, stderr = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            stdout = stderr = None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        if stdout is None:
            stdout, stderr = process.communicate()
        return None, stdout, stderr


def gpu_info() -> dict[str, Any]:
    """The first GPU as nvidia-smi names it; {} without one."""
    if shutil.which("nvidia-smi") is None:
        return {}
    try:
        output = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                                 "--format=csv,noheader,nounits"], capture_output=True, text=True,
                                timeout=20, check=True).stdout
        name, total_mib, driver = [part.strip() for part in output.splitlines()[0].split(",")]
        return {"name": name, "total_bytes": int(total_mib) * MIB, "driver": driver}
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return {}


def versions() -> dict[str, str | None]:
    found = {}
    for package in ("keras", "jax", "jaxlib", "torch", "tensorflow", "numpy"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def run_preflight(case: Case, model_file: Path, work_dir: Path, timeout_s: float) -> dict[str, Any]:
    json_path = work_dir / f"{case.key.replace('/', '_')}.json"
    command = [sys.executable, "-m", "preflight", str(model_file), "--backend", case.backend,
               "--budget", f"{case.budget_bytes // MIB}MiB", "--batch-size", str(case.batch_size),
               "--json", str(json_path), "--html", "none", "--no-whatif", "--quiet",
               "--timeout", str(int(max(30, timeout_s - 15)))]
    started = time.monotonic()
    returncode, _, stderr = run_bounded(command, dict(os.environ), timeout_s)
    document = json.loads(json_path.read_text(encoding="utf-8")) if json_path.exists() else None
    summary = preflight_summary(document, returncode if returncode is not None else -1, stderr)
    if returncode is None:
        summary["status"] = "timeout"
    summary["seconds"] = round(time.monotonic() - started, 1)
    return summary


def run_truth(model_file: Path, batch_size: int, backend: str, fraction: float | None,
              timeout_s: float) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.capped_fit", str(model_file), str(batch_size),
               "--backend", backend, "--steps", str(TRUTH_STEPS)]
    if fraction is not None:
        command += ["--memory-fraction", f"{fraction:.6f}"]
    env = {key: value for key, value in os.environ.items() if not key.startswith("XLA_PYTHON_CLIENT_")}
    started = time.monotonic()
    result = truth_from_process(*run_bounded(command, env, timeout_s))
    result.update(batch_size=batch_size, fraction=fraction, wall_seconds=round(time.monotonic() - started, 1))
    return result


class Session:
    """The run in progress: cases still to start, results so far, and the JSON written after each case."""

    def __init__(self, cases: list[Case], out_path: Path, header: dict[str, Any], time_budget_s: float,
                 grace_s: float, check_recommended: bool):
        self.pending = list(cases)
        self.results: list[dict[str, Any]] = []
        self.out_path, self.header = out_path, header
        self.started = time.monotonic()
        self.soft_deadline = self.started + time_budget_s
        self.hard_deadline = self.soft_deadline + grace_s
        self.check_recommended = check_recommended
        self.lock = threading.Lock()
        self.work_dir = Path(tempfile.mkdtemp(prefix="gpu_backends_"))

    def remaining(self) -> float:
        return self.hard_deadline - time.monotonic()

    def next_case(self) -> Case | None:
        with self.lock:
            if not self.pending or time.monotonic() >= self.soft_deadline:
                return None
            return self.pending.pop(0)

    def run_case(self, case: Case) -> dict[str, Any]:
        model_file = zoo.write_model_file(case.model, self.work_dir / f"{case.model}_{case.batch_size}.py",
                                          case.batch_size)
        fraction = memory_fraction(case.budget_bytes, self.header["gpu"].get("total_bytes"))
        result: dict[str, Any] = {"case": asdict(case), "key": case.key}
        result["preflight"] = run_preflight(case, model_file, self.work_dir, self.remaining())
        if self.remaining() > 5:
            result["truth"] = run_truth(model_file, case.batch_size, case.backend, fraction, self.remaining())
        recommended = result["preflight"].get("recommended_batch_size")
        if (self.check_recommended and recommended and recommended != case.batch_size
                and time.monotonic() < self.soft_deadline):
            rec_file = zoo.write_model_file(case.model, self.work_dir / f"{case.model}_{recommended}.py",
                                            recommended)
            result["truth_at_recommended"] = run_truth(rec_file, recommended, case.backend, fraction,
                                                       self.remaining())
        result["agreement"] = agreement(result["preflight"].get("fits"), (result.get("truth") or {}).get("status"))
        return result

    def record(self, result: dict[str, Any]) -> None:
        with self.lock:
            self.results.append(result)
            self.write()

    def write(self) -> None:
        document = {**self.header, "elapsed_seconds": round(time.monotonic() - self.started, 1),
                    "not_started": [case.key for case in self.pending], "cases": self.results}
        self.out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, self.out_path)

    def worker(self) -> None:
        while (case := self.next_case()) is not None:
            print(f"[{time.monotonic() - self.started:6.1f} s] start {case.key}", flush=True)
            try:
                result = self.run_case(case)
            except Exception as exc:  # noqa: BLE001 - one broken case must not lose the others' results
                result = {"case": asdict(case), "key": case.key, "agreement": "n/a",
                          "error": f"{type(exc).__name__}: {exc}"}
            self.record(result)
            truth = result.get("truth") or {}
            print(f"[{time.monotonic() - self.started:6.1f} s] done  {case.key}: preflight "
                  f"{(result.get('preflight') or {}).get('fits')}, run {truth.get('status')}, "
                  f"{result['agreement']}", flush=True)

    def run(self, jobs: int) -> None:
        self.write()
        threads = [threading.Thread(target=self.worker, daemon=True) for _ in range(max(1, jobs))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.write()
        shutil.rmtree(self.work_dir, ignore_errors=True)


def load_cpu_reference(path: Path = CPU_REFERENCE_PATH) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def cpu_only(models: list[str], out_path: Path) -> int:
    """TensorFlow on this CPU, each model at its GPU batch size: preflight's peak (no budget) and one
    real run's BFC peak (benchmarks.ground_truth.run_trial), written after each model."""
    from benchmarks import ground_truth

    reference = load_cpu_reference(out_path) or {}
    reference.update(format=FORMAT, description=(
        "TensorFlow on CPU (BFC allocator) at the GPU benchmark's batch sizes: preflight's peak without a "
        "budget, and one fresh process's peak over 3 train_on_batch steps after a warm-up"),
        created_at=_now(), versions=versions())
    reference.setdefault("models", {})
    work_dir = Path(tempfile.mkdtemp(prefix="gpu_backends_cpu_"))
    for model in models:
        batch_size = CASES[model][0]
        model_file = zoo.write_model_file(model, work_dir / f"{model}.py", batch_size)
        json_path = work_dir / f"{model}.json"
        started = time.monotonic()
        returncode, _, stderr = run_bounded(
            [sys.executable, "-m", "preflight", str(model_file), "--backend", "tensorflow",
             "--batch-size", str(batch_size), "--json", str(json_path), "--html", "none", "--no-whatif",
             "--quiet"], dict(os.environ), 1800)
        preflight_seconds = round(time.monotonic() - started, 1)
        document = json.loads(json_path.read_text(encoding="utf-8")) if json_path.exists() else None
        trial = ground_truth.run_trial(model, batch_size, steps=TRUTH_STEPS)
        reference["models"][model] = {
            "batch_size": batch_size,
            "preflight_peak_bytes": (document or {}).get("peak_bytes"),
            "preflight_seconds": preflight_seconds, "preflight_returncode": returncode,
            "preflight_message": "" if document else _last_lines(stderr),
            "truth_status": trial["status"], "truth_peak_bytes": trial.get("peak_bytes"),
            "truth_seconds": trial.get("wall_seconds"),
        }
        print(f"{model:12s} bs {batch_size:4d}: preflight {_mib(reference['models'][model]['preflight_peak_bytes'])} MiB "
              f"({preflight_seconds} s), run {trial['status']} {_mib(trial.get('peak_bytes'))} MiB", flush=True)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(reference, indent=1) + "\n", encoding="utf-8")
    shutil.rmtree(work_dir, ignore_errors=True)
    return 0


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.environ.get("OUT") or str(RESULTS_DIR),
                        help="folder for gpu_backends.json (default: $OUT when set, else benchmarks/results)")
    parser.add_argument("--models", nargs="*", choices=list(CASES), default=list(CASES))
    parser.add_argument("--backends", nargs="*", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--time-budget", type=float, default=280.0,
                        help="seconds after which no new case starts (default 280)")
    parser.add_argument("--grace", type=float, default=30.0,
                        help="seconds after the time budget at which running cases are stopped (default 30)")
    parser.add_argument("--jobs", type=int, help="cases at a time (default: 8 on a GPU, each capped; 1 on a CPU)")
    parser.add_argument("--no-recommended", action="store_true",
                        help="skip the capped run at preflight's recommended batch")
    parser.add_argument("--smoke", action="store_true",
                        help="one model, one budget, JAX on this machine (on a CPU nothing is capped)")
    parser.add_argument("--cpu-only", action="store_true",
                        help=f"TensorFlow on this CPU for each model at its batch: writes {CPU_REFERENCE_PATH.name}")
    args = parser.parse_args(argv)
    out_dir = Path(args.out)

    if args.cpu_only:
        return cpu_only(args.models, CPU_REFERENCE_PATH)

    gpu = gpu_info()
    if args.smoke:
        model, batch_size, budget, backend = SMOKE_CASE
        cases = [Case(model, batch_size, parse_size(budget), backend)]
        out_path = out_dir / "gpu_backends_smoke.json"
    else:
        cases = plan_cases({name: CASES[name] for name in args.models}, args.backends)
        out_path = out_dir / "gpu_backends.json"
    cpu_reference = load_cpu_reference()
    header = {"format": FORMAT, "created_at": _now(), "gpu": gpu, "versions": versions(),
              "time_budget_s": args.time_budget, "truth_steps": TRUTH_STEPS,
              "cpu_reference": cpu_reference}
    jobs = args.jobs or (8 if gpu else 1)
    print(f"{len(cases)} cases, {jobs} at a time, GPU: {gpu.get('name', 'none')}; writing {out_path}", flush=True)
    session = Session(cases, out_path, header, args.time_budget, args.grace, not args.no_recommended)
    session.run(jobs)
    order = {case.key: index for index, case in enumerate(cases)}
    results = sorted(session.results, key=lambda result: order[result["key"]])
    print(format_table(table_rows(results, cpu_reference)))
    counts = {label: sum(r.get("agreement") == label for r in results)
              for label in ("agree", "unsafe", "cautious", "uncapped", "n/a")}
    print(f"{len(results)} of {len(cases)} cases run; " + ", ".join(f"{k} {v}" for k, v in counts.items())
          + (f"; not started: {len(session.pending)}" if session.pending else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
