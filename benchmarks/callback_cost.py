"""What preflight.keras.MemoryCallback costs a training step (issue 24: "no measurable slowdown").

Two measures, in one process per backend with TF_CPU_ALLOCATOR_USE_BFC=true (the allocator the callback reads):

1. Time inside the callback: a subclass adds up the seconds spent in each of its hooks (perf_counter around
   every call), over a whole fit; per step and per epoch.
2. Steady-state step time with and without the callback: the same model (freshly built and compiled each
   time) fit for `--epochs` epochs, with and without the callback, alternating, `--reps` times. The step
   time is the wall time of epochs 2.. (the first holds the tracing) over their steps, read by a timer
   callback that has only epoch hooks (so it leaves Keras's asynchronous batch-end dispatch on, as
   MemoryCallback does). The spread between repetitions of the same variant is the noise floor: a
   difference inside it is not measurable.

    python -m benchmarks.callback_cost                 # TensorFlow; --backend jax in a second run
Results: `benchmarks/results/callback_cost_<backend>.json`.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ["TF_CPU_ALLOCATOR_USE_BFC"] = "true"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"

MODELS = {  # name -> (layers builder, input size, batch): a ~1 ms step and a ~30 ms step on 2 cores
    "mlp-small": ((512, 512), 256, 64),
    "mlp-mnist": ((1024, 1024), 784, 256),
}


def build(name: str):
    import keras

    hidden, inputs, _ = MODELS[name]
    model = keras.Sequential([keras.Input(shape=(inputs,))] + [keras.layers.Dense(u, activation="relu") for u in hidden]
                             + [keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def epoch_timer():
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._t)

    return EpochTimer()


def instrumented(store: str):
    from preflight.keras import MemoryCallback

    hooks = ("on_train_begin", "on_epoch_begin", "on_train_batch_begin", "on_epoch_end", "on_train_end")

    class Timed(MemoryCallback):
        spent = {hook: 0.0 for hook in hooks}
        calls = {hook: 0 for hook in hooks}

    def wrap(hook):
        original = getattr(MemoryCallback, hook)

        def timed(self, *args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(self, *args, **kwargs)
            finally:
                Timed.spent[hook] += time.perf_counter() - t0
                Timed.calls[hook] += 1
        return timed

    for hook in hooks:
        setattr(Timed, hook, wrap(hook))
    return Timed(store=store, verbose=False)


def measure(name: str, epochs: int, steps: int, reps: int, store: str) -> dict:
    import numpy as np

    _, inputs, batch = MODELS[name]
    x = np.random.rand(batch * steps, inputs).astype("float32")
    y = np.random.randint(0, 10, len(x))
    step_ms = {"without": [], "with": []}
    for _ in range(reps):
        for variant in ("without", "with"):
            model = build(name)
            timer = epoch_timer()
            extra = [instrumented(store)] if variant == "with" else []
            model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, shuffle=False, callbacks=[timer] + extra)
            step_ms[variant].append(1000 * sum(timer.seconds[1:]) / ((epochs - 1) * steps))
            if extra:
                spent, calls = dict(extra[0].spent), dict(extra[0].calls)
    median = {v: statistics.median(t) for v, t in step_ms.items()}
    noise = max(max(t) - min(t) for t in step_ms.values())
    total_steps = calls["on_train_batch_begin"]
    return {
        "model": name, "batch_size": batch, "epochs": epochs, "steps_per_epoch": steps, "reps": reps,
        "step_ms": {v: [round(t, 4) for t in ts] for v, ts in step_ms.items()},
        "median_step_ms": {v: round(m, 4) for v, m in median.items()},
        "difference_ms": round(median["with"] - median["without"], 4),
        "difference_fraction": round(median["with"] / median["without"] - 1, 4),
        "noise_ms": round(noise, 4),
        # the hooks' own time over the last fit with the callback (reps x fits share the class counters)
        "hook_seconds": {k: round(v, 6) for k, v in spent.items()},
        "hook_calls": calls,
        "batch_hook_us_per_step": round(1e6 * spent["on_train_batch_begin"] / max(1, total_steps), 2),
        "epoch_end_ms_per_epoch": round(1000 * spent["on_epoch_end"] / max(1, calls["on_epoch_end"]), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default=os.environ.get("KERAS_BACKEND", "tensorflow"))
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=50, help="steps per epoch")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    os.environ["KERAS_BACKEND"] = args.backend
    import keras

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = str(Path(tmp) / "calibration.jsonl")
        for name in args.models:
            rows.append(measure(name, args.epochs, args.steps, args.reps, store))
    result = {"backend": args.backend, "keras": keras.__version__, "rows": rows}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"callback_cost_{args.backend}.json"
    path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"backend {args.backend}; step time of epochs 2..{args.epochs}, median of {args.reps} fits each; "
          "noise = the largest spread between fits of one variant")
    print(f"{'model':10s} {'batch':>5s} {'without ms':>11s} {'with ms':>8s} {'diff ms':>8s} {'diff':>7s} "
          f"{'noise ms':>9s} {'hook us/step':>13s} {'epoch end ms':>13s}")
    for r in rows:
        print(f"{r['model']:10s} {r['batch_size']:5d} {r['median_step_ms']['without']:11.3f} "
              f"{r['median_step_ms']['with']:8.3f} {r['difference_ms']:+8.3f} {r['difference_fraction']:+7.1%} "
              f"{r['noise_ms']:9.3f} {r['batch_hook_us_per_step']:13.2f} {r['epoch_end_ms_per_epoch']:13.3f}")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
