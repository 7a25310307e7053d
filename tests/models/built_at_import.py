"""A model built at import (module-level `model`) whose weights alone need about 1.5 GiB.

Dense(20000) on 20000 inputs: 400 M weights in float32. Under a 256 MiB budget the probe's allocator
limit is 576 MiB, so building it runs out of memory while the file is being run: a memory verdict.
"""
import keras

model = keras.Sequential(
    [
        keras.Input(shape=(20000,), name="features"),
        keras.layers.Dense(20000, name="square"),
    ],
    name="built_at_import",
)
model.compile(optimizer="adam", loss="mse")
