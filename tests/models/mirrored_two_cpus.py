"""Two logical CPUs for a MirroredStrategy, set up at the top as multi-device scripts do (issue 25)."""
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(1024, activation="relu"),
                              keras.layers.Dense(10)], name="mirrored_mlp")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
x = np.random.rand(256, 32).astype("float32")
y = np.random.randint(0, 10, 256)
batch_size = 32
dataset = (x, y)  # preflight steps on these arrays, as the test's model.fit(x, y) does (it copies them in)
