"""A real training run with preflight.keras.MemoryCallback, for tests/test_callback.py, in a fresh process
(the backend and the allocator are chosen before Keras starts). Prints the run record as the last line.

usage: python callback_fit.py STORE [--leak] [--budget 8MiB] [--time-limit 0.001] [--epochs 3] [--report R.json]
"""
import argparse
import json
import os
import runpy
import sys
import warnings
from pathlib import Path

os.environ["TF_CPU_ALLOCATOR_USE_BFC"] = "true"  # a device peak on a CPU under TensorFlow
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from preflight.errors import RunWarning  # noqa: E402
from preflight.keras import MemoryCallback  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("store")
parser.add_argument("--leak", action="store_true")
parser.add_argument("--budget")
parser.add_argument("--time-limit")
parser.add_argument("--report")
parser.add_argument("--epochs", type=int, default=3)
args = parser.parse_args()

BATCH = 64


class Leak(keras.callbacks.Callback):
    """Keeps 16 MiB of host memory (a NumPy array) and 4 MiB of device memory (a tensor) alive per epoch."""

    def __init__(self):
        super().__init__()
        self.kept = []

    def on_epoch_end(self, epoch, logs=None):
        self.kept.append(np.ones(2**21, dtype="float64"))
        self.kept.append(keras.ops.ones((2**20,), dtype="float32") + float(epoch))


model = runpy.run_path(str(Path(__file__).parent / "models" / "callback_mlp.py"))["build_model"]()
rng = np.random.default_rng(0)
x = rng.random((BATCH * 6, 256), dtype="float32")
y = rng.integers(0, 10, len(x))
callback = MemoryCallback(budget=args.budget, time_limit=args.time_limit, store=args.store, report=args.report)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    model.fit(x, y, batch_size=BATCH, epochs=args.epochs, verbose=0, shuffle=False,
              callbacks=[callback] + ([Leak()] if args.leak else []))
run_warnings = [str(w.message) for w in caught if issubclass(w.category, RunWarning)]
print(json.dumps({"record": callback.record, "comparison": callback.comparison, "warnings": run_warnings}))
