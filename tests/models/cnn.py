"""A small CNN for tests: 32x32x3 input, two convolutions, Adam."""
import keras

batch_size = 32


def build_model():
    model = keras.Sequential(
        [
            keras.Input(shape=(32, 32, 3)),
            keras.layers.Conv2D(16, 3, activation="relu", padding="same", name="conv_a"),
            keras.layers.MaxPooling2D(name="pool"),
            keras.layers.Conv2D(32, 3, activation="relu", padding="same", name="conv_b"),
            keras.layers.GlobalAveragePooling2D(name="gap"),
            keras.layers.Dense(10, activation="softmax", name="head"),
        ],
        name="small_cnn",
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model
