"""Keras's DataParallel over two host devices under JAX, set up at the top as the file's own (issue 25);
run with --backend jax."""
import os

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(256, activation="relu"), keras.layers.Dense(10)],
                         name="data_parallel_mlp")
model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
x = np.random.rand(256, 64).astype("float32")
y = np.random.randint(0, 10, 256).astype("int32")
batch_size = 64
