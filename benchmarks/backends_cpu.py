"""The same zoo models under each installed Keras backend on this CPU: peak, step time, method, time taken.

For each zoo model a generated model.py goes through `python -m preflight compare`'s engine
(`preflight.cli.compare.compare_backends`: one check per backend at the planned batch, each its own child, no
budget, no what-ifs). The peaks are read by different methods (TensorFlow: BFC allocator; JAX: XLA's
buffer assignment of the compiled step; PyTorch: live tensor storages through the dispatcher), which the
table names; they are what each backend would hold for that step on this CPU, not one truth measured
three ways. JAX's figure is the same in every process (checked against an independent compile in
tests/test_backends.py); TF's varies between processes (README, "How it measures").

    python -m benchmarks.backends_cpu                       # the default models, batch 32
    python -m benchmarks.backends_cpu --models cnn mlp --batch-size 16
Writes benchmarks/results/backends_cpu.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from benchmarks import zoo  # noqa: E402
from preflight.cli.compare import compare_backends  # noqa: E402
from preflight.engine.backends import installed_backends  # noqa: E402
from preflight.common.units import format_bytes  # noqa: E402

RESULTS_PATH = REPO_ROOT / "benchmarks" / "results" / "backends_cpu.json"
DEFAULT_MODELS = ["mlp", "cnn", "lstm", "gru", "transformer", "unet", "recommender", "autoencoder"]


def measure(models: list[str], batch_size: int, backends: list[str]) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="preflight-backends-") as folder:
        for name in models:
            path = zoo.write_model_file(name, Path(folder) / f"{name}.py", batch_size)
            started = time.monotonic()
            comparison, _ = compare_backends(str(path), backends=backends, chosen_backend=backends[0],
                                             batch_size=batch_size, budget=None, progress=False)
            seconds = time.monotonic() - started
            for row in comparison["rows"]:
                rows.append({"model": name, "batch_size": batch_size, "backend": row["backend"],
                             "version": row.get("version"), "status": row["status"],
                             "peak_bytes": row.get("peak_bytes"), "step_seconds": row.get("step_seconds"),
                             "method": row.get("method"), "message": row.get("message") or "",
                             "compare_seconds": round(seconds, 1)})
            print(f"{name}: done in {seconds:.0f} s", file=sys.stderr)
    return rows


def print_table(rows: list[dict], backends: list[str]) -> None:
    models = list(dict.fromkeys(row["model"] for row in rows))
    print("| model | " + " | ".join(f"{b} peak | {b} step" for b in backends) + " |")
    print("|---|" + "---|---|" * len(backends))
    for model in models:
        cells = []
        for backend in backends:
            row = next((r for r in rows if r["model"] == model and r["backend"] == backend), None)
            if row is None or row["peak_bytes"] is None:
                cells += [row["status"] if row else "-", "-"]
                continue
            step = f"{row['step_seconds'] * 1000:.1f} ms" if row.get("step_seconds") else "-"
            cells += [format_bytes(row["peak_bytes"]), step]
        print(f"| {model} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", default=str(RESULTS_PATH))
    args = parser.parse_args(argv)
    backends = installed_backends()
    rows = measure(args.models, args.batch_size, backends)
    print_table(rows, backends)
    Path(args.out).write_text(json.dumps({"batch_size": args.batch_size, "backends": backends, "rows": rows},
                                         indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
