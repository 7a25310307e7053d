"""Run as a child by tests/test_oom_forms.py, with the BFC allocator limited to 96 MiB and its stderr in
PREFLIGHT_CHILD_LOG: a real out-of-memory step, then preflight.engine.probe.out_of_memory_evidence asked
about exception forms that carry no type to go by. Prints one JSON line."""
import json
import os

import numpy as np
import tensorflow as tf
import keras

from preflight.engine.probe import child_log_size, out_of_memory_evidence
from preflight.engine.readers.tensorflow_reader import TensorFlowReader

LIMIT = int(os.environ["TF_CPU_BFC_MEM_LIMIT_IN_MB"]) * 2**20
reader = TensorFlowReader({"memory_limit_bytes": LIMIT})
# Many 8 MiB activations: the allocator fills up step by step before one allocation fails.
model = keras.Sequential([keras.Input((256,))] + [keras.layers.Dense(256, activation="relu") for _ in range(12)]
                         + [keras.layers.Dense(1)])
model.compile("adam", "mse")
# TF's own form of a failed temporary allocation after an earlier out-of-memory: the node and nothing else.
node_only = tf.errors.InternalError(None, None, "Graph execution error:\n\n[[{{node functional_1/ArithmeticOptimizer/"
                                    "AddOpsRewrite_Leaf_1_Add_2/tmp_var}}]] [Op:__inference_one_step_on_data_1]")
result = {}
offset = child_log_size()
reader.start_window()
try:
    model.train_on_batch(np.ones((8192, 256), "float32"), np.ones((8192, 1), "float32"))
    result["big_step"] = "ran"
except tf.errors.ResourceExhaustedError:
    result["big_step"] = "oom"
result["peak_fraction"] = reader.window_peak() / LIMIT
result["by_peak"] = out_of_memory_evidence(node_only, reader, LIMIT, None)
result["by_record"] = out_of_memory_evidence(node_only, reader, None, offset)
after_oom = child_log_size()
reader.start_window()
model.train_on_batch(np.ones((8, 256), "float32"), np.ones((8, 1), "float32"))
result["not_memory"] = out_of_memory_evidence(ValueError("a layer's own bug"), reader, LIMIT, after_oom)
result["memory_error"] = out_of_memory_evidence(MemoryError(), reader, LIMIT, after_oom)
print(json.dumps(result))
