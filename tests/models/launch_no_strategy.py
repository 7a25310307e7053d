"""Launch checks: built outside any tf.distribute strategy scope (accelerator-unused when a TPU address
is set or several GPUs are visible)."""
import keras

batch_size = 16


def build_model():
    model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(64, activation="relu", name="hidden"),
                              keras.layers.Dense(1, name="head")], name="no_strategy")
    model.compile(optimizer="adam", loss="mse")
    return model
