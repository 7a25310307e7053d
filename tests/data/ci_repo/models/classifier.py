"""A tiny classifier: the model a pull request changes in the CI-gate tests."""
import keras

batch_size = 32


def build_model():
    model = keras.Sequential(
        [
            keras.Input(shape=(64,), name="features"),
            keras.layers.Dense(128, activation="relu", name="hidden"),
            keras.layers.Dense(10, activation="softmax", name="classes"),
        ],
        name="classifier",
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model
