"""A model whose training step fails by batch size, as a host that runs out of memory fails it: a layer
raises MemoryError while tracing a batch over 16 samples, and RuntimeError (not memory) over 8 when
PREFLIGHT_TEST_NOT_MEMORY_OVER_8 is set. Each trace appends "pid batch" to PREFLIGHT_TEST_TRACES, so a
test can tell which process measured which batch."""
import os

import keras


class AllocatesByBatch(keras.layers.Layer):
    def call(self, inputs):
        batch = inputs.shape[0]
        with open(os.environ["PREFLIGHT_TEST_TRACES"], "a", encoding="utf-8") as traces:
            traces.write(f"{os.getpid()} {batch}\n")
        if batch is not None and batch > 16:
            raise MemoryError(f"cannot allocate the scratch buffer for {batch} samples")
        if batch is not None and batch > 8 and os.environ.get("PREFLIGHT_TEST_NOT_MEMORY_OVER_8"):
            raise RuntimeError("the layer's own bug at this batch size")
        return inputs


batch_size = 32
model = keras.Sequential([keras.Input((8,)), AllocatesByBatch(), keras.layers.Dense(4)], name="memory_error_step")
model.compile("adam", "mse")
