"""A model that needs far more memory than a small machine has: about 50 GiB at its batch size.

Each sample's hidden activation is 1 MiB (262,144 float32 units) and the backward pass keeps about two
such tensors per sample alive (the probes measure 2 MiB per sample), so batch 24576 needs about 48 GiB
while the weights stay small (7.1 M params). `python -m preflight examples/too_big.py --budget 8GiB`
says it does not fit, without ever allocating that much.
"""
import keras

batch_size = 24576


def build_model():
    model = keras.Sequential(
        [
            keras.Input(shape=(16,), name="features"),
            keras.layers.Dense(262_144, activation="relu", name="very_wide"),
            keras.layers.Dense(10, activation="softmax", name="classes"),
        ],
        name="too_big",
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model
