"""A tiny regressor: the model a pull request leaves alone in the CI-gate tests."""
import keras

batch_size = 16


def build_model():
    model = keras.Sequential(
        [
            keras.Input(shape=(32,), name="features"),
            keras.layers.Dense(64, activation="relu", name="encoder"),
            keras.layers.Dense(1, name="value"),
        ],
        name="regressor",
    )
    model.compile(optimizer="sgd", loss="mse")
    return model
