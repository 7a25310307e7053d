"""An independent measurement for the engine tests: real training steps at one batch size, in a fresh
process with the BFC allocator, written without preflight's code. Prints one JSON line.

usage: python independent_peak.py MODEL_FILE BATCH_SIZE RUNS
"""
import json
import os
import runpy
import sys

os.environ["TF_CPU_ALLOCATOR_USE_BFC"] = "true"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

path, batch, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
model = runpy.run_path(path, run_name="independent")["build_model"]()
spec = model.inputs[0]
shape = (batch,) + tuple(spec.shape[1:])
if "int" in str(spec.dtype):
    x = np.random.randint(0, 500, size=shape).astype("int32")
else:
    x = np.random.rand(*shape).astype("float32")
out_shape = (batch,) + tuple(model.outputs[0].shape[1:])
y = np.random.randint(0, 2, size=out_shape[:-1] if out_shape[-1] > 1 else out_shape).astype("float32")
model.train_on_batch(x, y)  # warm-up: tracing and optimizer slots
peaks = []
for _ in range(runs):
    tf.config.experimental.reset_memory_stats("CPU:0")
    model.train_on_batch(x, y)
    peaks.append(tf.config.experimental.get_memory_info("CPU:0")["peak"])
print(json.dumps({"peaks": peaks}))
