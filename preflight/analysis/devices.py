"""The catalogue of named target devices and the memory a framework can really allocate on each.

`usable_bytes` is what TensorFlow's allocator may hand out on that device, not the marketing size:

- **GPUs**: TF's GPU allocator limit is the memory free after the CUDA context is created, minus a
  reserve TF keeps back (`MinSystemMemory` in `gpu_device.cc`: 500 MiB for compute capability <= 6,
  1050 MiB for 7.x, 1536 MiB for 8.x, 1800 MiB for 9.x). Where TF's own startup line
  ("Created device ... with N MB memory") was found in published logs, the entry uses the lowest value
  seen; otherwise it is `nvidia-smi total - MinSystemMemory - 550 MiB CUDA context` (the context
  observed on T4 and L4 logs was 300-550 MiB). Each entry says which.
- **TPUs** are per core (one replica): XLA's own capacity line ("Used X of C hbm") minus the ~0.5 GiB
  it reports as reserved.
- **cpu** is this host, read when asked: psutil's available memory minus 0.5 GiB for the TF runtime
  and graphs, which the allocator peak never sees (notes §1 and §10: RSS exceeds the BFC peak by
  350-600 MiB).

Pure Python apart from psutil; no TensorFlow.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from preflight.errors import UsageError

MIB = 1024**2
GIB = 1024**3
CUDA_CONTEXT_BYTES = 550 * MIB          # upper end of what the context took in T4/L4 logs
CPU_RUNTIME_BYTES = 512 * MIB           # TF runtime, graphs, Python objects outside the allocator
TPU_RESERVED_BYTES = 512 * MIB          # XLA:TPU's "reserved" line in its OOM reports (530M on a v3)
TARGET_KINDS = ("CPU", "GPU", "TPU")


def tf_min_system_memory(compute_capability_major: int) -> int:
    """The bytes TF keeps back from its GPU allocator (gpu_device.cc, MinSystemMemory, >= 2 GiB cards)."""
    if compute_capability_major <= 6:
        return 500 * MIB
    if compute_capability_major <= 7:
        return 1050 * MIB
    if compute_capability_major <= 8:
        return 1536 * MIB
    return 1800 * MIB


@dataclass(frozen=True)
class Target:
    """A device to fit into. `usable_bytes` is per replica (one GPU die, one TPU core)."""

    name: str
    kind: str                 # "CPU" | "GPU" | "TPU"
    usable_bytes: int
    description: str          # what the device is and how usable_bytes was derived
    xla_by_default: bool      # Keras 3 jit_compile="auto" turns XLA on for the train step here

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _gpu_from_log(name: str, usable_mib: int, card: str, compute_capability: str, seen: str) -> Target:
    return Target(name, "GPU", usable_mib * MIB,
                  f"{card} (cc {compute_capability}): {usable_mib} MiB usable, the lowest TF startup line "
                  f"'Created device ... with N MB memory' found in published logs ({seen})",
                  xla_by_default=True)


def _gpu_from_formula(name: str, total_mib: int, card: str, compute_capability: str) -> Target:
    major = int(compute_capability.split(".")[0])
    usable = total_mib * MIB - tf_min_system_memory(major) - CUDA_CONTEXT_BYTES
    return Target(name, "GPU", usable,
                  f"{card} (cc {compute_capability}): nvidia-smi total {total_mib} MiB minus TF's "
                  f"{tf_min_system_memory(major) // MIB} MiB reserve minus ~{CUDA_CONTEXT_BYTES // MIB} MiB CUDA "
                  f"context = {usable // MIB} MiB (derived, not seen in a log)",
                  xla_by_default=True)


def _tpu(name: str, capacity_gib: float, chip: str) -> Target:
    usable = int(capacity_gib * GIB) - TPU_RESERVED_BYTES
    return Target(name, "TPU", usable,
                  f"{chip}, per core: XLA:TPU reports {capacity_gib}G hbm capacity; minus "
                  f"~{TPU_RESERVED_BYTES // MIB} MiB it lists as reserved. Batch here is the per-replica batch",
                  xla_by_default=True)


_CATALOGUE: dict[str, Target] = {
    target.name: target
    for target in (
        _gpu_from_log("t4", 13627, "NVIDIA T4 16 GB", "7.5", "13627-13942 MB"),
        _gpu_from_log("k80", 10757, "NVIDIA K80, one of its two 12 GB dies", "3.7", "10757-10767 MB"),
        _gpu_from_formula("p100", 16280, "NVIDIA P100 16 GB", "6.0"),
        _gpu_from_log("v100-16gb", 14684, "NVIDIA V100 16 GB", "7.0", "14684-15024 MB"),
        _gpu_from_formula("v100-32gb", 32510, "NVIDIA V100 32 GB", "7.0"),
        _gpu_from_formula("a10g", 23028, "NVIDIA A10G 24 GB (AWS g5)", "8.6"),
        _gpu_from_log("l4", 20549, "NVIDIA L4 24 GB", "8.9", "20549-20967 MB"),
        _gpu_from_log("a100-40gb", 38068, "NVIDIA A100 40 GB", "8.0", "38068-38482 MB"),
        _gpu_from_formula("a100-80gb", 81920, "NVIDIA A100 80 GB", "8.0"),
        _gpu_from_log("h100-80gb", 78763, "NVIDIA H100 80 GB HBM3", "9.0", "78763 MB"),
        _tpu("tpu-v2", 7.48, "TPU v2 (8 GiB HBM per core)"),
        _tpu("tpu-v3", 15.48, "TPU v3 (16 GiB HBM per core)"),
        _tpu("tpu-v4", 31.25, "TPU v4 (32 GiB HBM per chip, one megacore device)"),
        _tpu("tpu-v5e", 15.75, "TPU v5e (16 GiB HBM per chip, one core)"),
    )
}


def _cpu_target() -> Target:
    import psutil

    available = int(psutil.virtual_memory().available)
    usable = max(available - CPU_RUNTIME_BYTES, 0)
    return Target("cpu", "CPU", usable,
                  f"this host: {available // MIB} MiB available now (psutil) minus {CPU_RUNTIME_BYTES // MIB} MiB "
                  f"for the TF runtime outside the allocator; input arrays held in numpy need room on top",
                  xla_by_default=False)


def list_targets() -> list[str]:
    """Every valid target name, `cpu` first."""
    return ["cpu", *_CATALOGUE]


def get_target(name: str) -> Target:
    """The target called `name` (case-insensitive). A typo raises UsageError listing the valid names."""
    key = str(name).strip().lower().replace("_", "-")
    if key == "cpu":
        return _cpu_target()
    if key in _CATALOGUE:
        return _CATALOGUE[key]
    import difflib

    close = difflib.get_close_matches(key, list_targets(), n=3, cutoff=0.5)
    suggestion = f" Did you mean {', '.join(close)}?" if close else ""
    raise UsageError(
        f"unknown target {name!r}.{suggestion}",
        hint=f"valid targets: {', '.join(list_targets())}; or give --budget SIZE for any other device",
    )
