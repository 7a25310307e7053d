"""Keras's ModelParallel over two host devices under JAX: the Dense kernels split over the model axis by a
layout map (issue 25); run with --backend jax."""
import os

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

mesh = keras.distribution.DeviceMesh((1, 2), ["batch", "model"], devices=jax.devices())
layout_map = keras.distribution.LayoutMap(mesh)
layout_map[".*/dense.*/kernel"] = (None, "model")  # matched against the whole path (re.fullmatch)
keras.distribution.set_distribution(keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch"))
model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(1024, activation="relu", name="dense_big"),
                          keras.layers.Dense(10, name="dense_out")], name="model_parallel_mlp")
model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
x = np.random.rand(256, 64).astype("float32")
y = np.random.randint(0, 10, 256).astype("int32")
batch_size = 64
