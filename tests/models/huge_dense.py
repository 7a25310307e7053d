"""A model too big for its budget before any activation: about 1.6e9 parameters.

Dense(40000) on 20000 inputs holds 800 M weights (3.0 GiB in float32); with its gradients and Adam's two
slots the static floor is about 12 GiB, far above an 8 GiB budget. Building it for real would allocate
the weights, so preflight must say "does not fit" from shapes alone.
"""
import keras

batch_size = 32


def build_model():
    model = keras.Sequential(
        [
            keras.Input(shape=(20000,), name="features"),
            keras.layers.Dense(40000, activation="relu", name="huge"),
            keras.layers.Dense(20000, name="reconstruction"),
        ],
        name="huge_dense",
    )
    model.compile(optimizer="adam", loss="mse")
    return model
