"""How the real run will be launched, read in the parent without TensorFlow: the model file's own
`fit(...)` call and GPU memory settings (from its source, not run), the environment, the free disk.

`file_facts(path)` reads the source's syntax tree (a notebook's code cells, preflight.engine.program);
`fit_call_facts` puts the fit(...) call the dry run stopped at in its place (its values as computed);
`training_plan(...)` merges them with the flags into the report's "launch" section (epochs, steps per epoch, time limit, checkpoints, free disk, GPU settings,
versions). preflight.analysis.checks turns the section into findings.
"""
from __future__ import annotations

import ast
import functools
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Mapping

GPU_QUERY_SECONDS = 5.0


def _literal(node: ast.AST | None, constants: dict[str, ast.AST]) -> Any:
    """A literal value, following a module-level `name = literal` once; None when not a literal."""
    if isinstance(node, ast.Name) and node.id in constants:
        node = constants[node.id]
    try:
        return ast.literal_eval(node) if node is not None else None
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def _call_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _keyword(call: ast.Call, name: str, position: int | None = None) -> ast.AST | None:
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value
    if position is not None and len(call.args) > position:
        return call.args[position]
    return None


def file_facts(path: str | os.PathLike) -> dict[str, Any]:
    """What the source says, read without running it: {"imports", "fit", "checkpoint", "memory_growth"}."""
    from preflight.engine.program import program_text

    try:
        tree = ast.parse(program_text(path) or "")
    except (SyntaxError, ValueError):
        return {"imports": [], "fit": {}, "checkpoint": None, "memory_growth": False}
    constants = {target.id: node.value for node in tree.body if isinstance(node, ast.Assign)
                 for target in node.targets if isinstance(target, ast.Name)}
    imports: set[str] = set()
    fit: dict[str, Any] = {}
    checkpoint = None
    memory_growth = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imports.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call):
            name = _call_name(node)
            if name == "fit" and (not fit or node.lineno < fit["line"]):  # the first one is the plan
                fit = {key: value for key in ("epochs", "steps_per_epoch", "batch_size")
                       if isinstance(value := _literal(_keyword(node, key), constants), int)} | {"line": node.lineno}
            elif name == "ModelCheckpoint":
                checkpoint = {"filepath": _literal(_keyword(node, "filepath", 0), constants),
                              "save_best_only": bool(_literal(_keyword(node, "save_best_only"), constants)),
                              "save_weights_only": bool(_literal(_keyword(node, "save_weights_only"), constants))}
            elif name == "set_memory_growth" and _literal(_keyword(node, "enable", 1), constants) is True:
                memory_growth = True
    return {"imports": sorted(imports), "fit": fit, "checkpoint": checkpoint, "memory_growth": memory_growth}


def fit_call_facts(facts: dict[str, Any], record: dict[str, Any], batch_size: int) -> dict[str, Any]:
    """The source's facts with the fit(...) call the dry run stopped at (preflight.engine.fit_plan's record)
    in place of what the source read gave: its values are the ones the call computed. Steps per epoch
    counted from the samples follow the batch measured (a --batch-size other than the call's)."""
    from preflight.engine.fit_plan import STEPS_GIVEN

    record = dict(record)
    if record.get("samples") and record.get("steps_source") != STEPS_GIVEN:
        record["steps_per_epoch"] = -(-record["samples"] // batch_size)
        record["steps_source"] = f"{record['samples']:,} training samples / batch {batch_size}"
    fit = {key: record[key] for key in ("epochs", "steps_per_epoch", "batch_size") if record.get(key)}
    return {**facts, "fit": fit, "fit_call": record, "checkpoint": record.get("checkpoint")}


def plan_with_fit_call(model_path: str, record: dict[str, Any], batch_size: int, **flags: Any) -> dict[str, Any]:
    """The launch section's "plan" from the fit(...) call the dry run stopped at (flags still win)."""
    return training_plan(fit_call_facts(file_facts(model_path), record, batch_size), **flags)


def checkpoints_kept(checkpoint: dict | None, epochs: int | None) -> int:
    """ModelCheckpoint keeps one file unless its path names the epoch (one per epoch, or the best only)."""
    if not checkpoint or checkpoint.get("save_best_only"):
        return 1
    return (epochs or 1) if "{epoch" in str(checkpoint.get("filepath") or "") else 1


def free_disk_bytes(folder: str | os.PathLike) -> int | None:
    """Free bytes on the disk of `folder`, or of its nearest existing parent (it may not exist yet)."""
    import psutil

    path = Path(folder).resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return int(psutil.disk_usage(str(path)).free)
    except OSError:
        return None


def _nvidia_smi(query: str) -> list[list[str]] | None:
    """Rows of `nvidia-smi --query-<query> --format=csv,noheader,nounits`, each split on commas,
    time-bounded; None without nvidia-smi (no NVIDIA GPU) or when it does not answer."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        output = subprocess.run(["nvidia-smi", f"--query-{query}", "--format=csv,noheader,nounits"],
                                capture_output=True, text=True, timeout=GPU_QUERY_SECONDS, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return [[part.strip() for part in line.split(",")] for line in output.splitlines() if line.strip()]


def gpu_processes() -> list[dict[str, int]] | None:
    """Other processes holding GPU memory now ([{"pid", "used_bytes"}]), from nvidia-smi, time-bounded;
    None without nvidia-smi (no NVIDIA GPU)."""
    rows = _nvidia_smi("compute-apps=pid,used_memory")
    if rows is None:
        return None
    return [{"pid": int(row[0]), "used_bytes": int(row[1]) * 2**20} for row in rows
            if len(row) == 2 and row[0].isdigit() and row[1].isdigit() and int(row[0]) != os.getpid()]


@functools.lru_cache(maxsize=1)
def gpu_total_bytes() -> int | None:
    """The first GPU's memory from nvidia-smi, asked once per process; None without one. (A JAX child
    cannot ask JAX: its memory cap is read when JAX starts.)"""
    rows = _nvidia_smi("gpu=memory.total")
    if not rows or not rows[0][0].isdigit():
        return None
    return int(rows[0][0]) * 2**20


def gpu_memory_settings(facts: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Whether TF will grow GPU memory as needed or reserve nearly the whole card at start."""
    growth_variable = environ.get("TF_FORCE_GPU_ALLOW_GROWTH", "").lower() == "true"
    allocator = environ.get("TF_GPU_ALLOCATOR") or None
    return {"growth_variable": growth_variable, "growth_in_file": bool(facts.get("memory_growth")),
            "allocator": allocator,
            "grows": growth_variable or bool(facts.get("memory_growth")) or allocator == "cuda_malloc_async",
            "other_processes": gpu_processes()}


def training_plan(facts: dict[str, Any], *, epochs: int | None = None, steps_per_epoch: int | None = None,
                  time_limit_seconds: float | None = None, checkpoint_dir: str | None = None,
                  checkpoints: int | None = None) -> dict[str, Any]:
    """Epochs, steps per epoch and checkpoints: a flag wins over the file's fit(...) call."""
    fit = facts.get("fit") or {}
    call = facts.get("fit_call")
    label = f"fit() at {call['where']}" if call else "fit()"
    epochs_source = "flag" if epochs else label if fit.get("epochs") else None
    epochs = epochs or fit.get("epochs")
    steps_source = "flag" if steps_per_epoch else None
    if not steps_per_epoch and fit.get("steps_per_epoch"):
        steps_source = call["steps_source"] if call and call.get("steps_source") else label
    checkpoint = facts.get("checkpoint")
    folder = checkpoint_dir
    if folder is None and checkpoint and checkpoint.get("filepath"):
        folder = str(Path(str(checkpoint["filepath"])).parent)
    plan: dict[str, Any] = {
        "epochs": epochs, "epochs_source": epochs_source,
        "steps_per_epoch": steps_per_epoch or fit.get("steps_per_epoch"), "steps_source": steps_source,
        "time_limit_seconds": time_limit_seconds, "checkpoint": None,
        "call": call, "backup_dir": call.get("backup_dir") if call else None,
    }
    if folder is not None:
        plan["checkpoint"] = {
            "dir": folder, "source": "flag" if checkpoint_dir else "ModelCheckpoint",
            "filepath": checkpoint.get("filepath") if checkpoint else None,
            "save_best_only": bool(checkpoint and checkpoint.get("save_best_only")),
            "kept": checkpoints or checkpoints_kept(checkpoint, epochs),
            "weights_only": bool(checkpoint and checkpoint.get("save_weights_only")),
            "free_disk_bytes": free_disk_bytes(folder),
        }
    return plan


def launch_section(model_path: str | None, environ: Mapping[str, str], **flags: Any) -> dict[str, Any]:
    """The report's "launch" section: the training plan, GPU memory settings and installed versions."""
    from preflight.engine.versions import installed_versions, version_problems

    facts = file_facts(model_path) if model_path else {"imports": [], "fit": {}, "checkpoint": None,
                                                         "memory_growth": False}
    uses_tuner = bool({"keras_tuner", "kerastuner"} & set(facts["imports"]))
    versions = installed_versions()
    return {"plan": training_plan(facts, **flags), "gpu_memory": gpu_memory_settings(facts, environ),
            "versions": versions, "old_tuner_import": "kerastuner" in facts["imports"],
            "version_problems": version_problems(versions, uses_tuner, environ)}
