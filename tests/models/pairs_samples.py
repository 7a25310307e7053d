"""A model whose step cannot take one sample, as a train_step that pairs the samples of its batch cannot: a
layer raises ValueError while tracing batch 1. Each trace appends "pid batch" to PREFLIGHT_TEST_TRACES, so a
test can tell which process measured which batch."""
import os

import keras


class PairsSamples(keras.layers.Layer):
    def call(self, inputs):
        batch = inputs.shape[0]
        with open(os.environ["PREFLIGHT_TEST_TRACES"], "a", encoding="utf-8") as traces:
            traces.write(f"{os.getpid()} {batch}\n")
        if batch == 1:
            raise ValueError("pairs the samples of its batch: needs at least two")
        return inputs


batch_size = 32
model = keras.Sequential([keras.Input((8,)), PairsSamples(), keras.layers.Dense(4)], name="pairs_samples")
model.compile("adam", "mse")
