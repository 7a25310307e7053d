"""One what-if measured on its own: one variant of a model.py, one batch size, in a fresh engine child.

`measure_variant(model_file, spec, batch_size)` runs the dry-run engine (preflight.engine.runner.run_probes)
with the spec as the job's variant (None = the baseline) on synthetic data, single-threaded: a warm-up
step, then `steps` measured steps with the allocator stats reset before each. `list_variants_in_child`
asks an engine child which what-ifs the model allows. Used by the tests and by
benchmarks/whatif_savings.py; preflight.whatif.recommend measures the what-ifs of a real run the same way.
"""
from __future__ import annotations

from typing import Any


def measure_variant(model_file: str, spec: dict | None, batch_size: int, steps: int = 3,
                    single_thread: bool = True, timeout_s: float = 600) -> dict[str, Any]:
    """{"status": "ok", "peak_bytes", "peak_bytes_runs", "resident_bytes", "step_seconds", "params",
    "description", "output_dtypes"}, or {"status": "not_applicable" | "error" | a probe status, "message"}."""
    from preflight.errors import PreflightError
    from preflight.engine.runner import ProbeJob, run_probes

    job = ProbeJob(source={"kind": "file", "path": str(model_file)}, batch_sizes=[batch_size],
                   measured_steps=steps, timeout_seconds=timeout_s, single_thread=single_thread, variant=spec)
    try:
        outcome = run_probes(job)
    except PreflightError as exc:
        return {"status": "error", "message": exc.message}
    if spec and not (outcome.variant or {}).get("description"):
        return {"status": "not_applicable", "message": (outcome.variant or {}).get("message", ""),
                "kind": spec.get("kind")}
    probe = outcome.probes[0] if outcome.probes else None
    if probe is None or probe.status != "ok":
        return {"status": probe.status if probe else "error",
                "message": probe.message if probe else outcome.load_oom or "no probe result"}
    params = outcome.model.params_total
    description = outcome.variant["description"] if spec else {"kind": "baseline", "title": "baseline",
                                                               "params": params}
    return {"status": "ok", "peak_bytes": probe.peak_bytes, "peak_bytes_runs": probe.peak_bytes_runs,
            "resident_bytes": probe.resident_bytes, "step_seconds": probe.step_seconds, "params": params,
            "description": description, "output_dtypes": [layer.compute_dtype for layer in outcome.model.layers]}


def list_variants_in_child(model_file: str, target_kind: str = "CPU", timeout_s: float = 600) -> list[dict]:
    """list_variants for the model in `model_file`, from an engine child (it probes batch 1 first).

    Specs name layers, and Keras numbers auto-named layers per process ("dense_3"), so the listing must
    come from a process that built the model the same way as the one that will apply the spec.
    """
    from preflight.engine.runner import ProbeJob, run_probes

    job = ProbeJob(source={"kind": "file", "path": str(model_file)}, batch_sizes=[1], measured_steps=1,
                   timeout_seconds=timeout_s, single_thread=True, list_variants=True, target_kind=target_kind)
    specs = run_probes(job).variant_specs
    if specs is None:
        raise RuntimeError(f"listing the what-ifs of {model_file} failed: the dry run listed none")
    return specs
