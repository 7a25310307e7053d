"""A CNN that fits at no batch size in 2 GiB: Flatten -> Dense(2048) on 73,728 features.

The Dense kernel alone is 151 M weights (576 MiB in float32); with its gradient and Adam's two slots
the static floor is about 2.3 GiB. Only shrinking helps (global pooling instead of Flatten, a narrower
Dense); a smaller batch does not.
"""
import keras

batch_size = 64


def build_model():
    model = keras.Sequential(
        [
            keras.Input(shape=(96, 96, 3), name="image"),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv"),
            keras.layers.MaxPooling2D(2, name="pool"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(2048, activation="relu", name="wide_dense"),
            keras.layers.Dense(10, activation="softmax", name="classes"),
        ],
        name="flatten_cnn",
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model
