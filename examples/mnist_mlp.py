"""A small MNIST-shaped MLP: the README's first example.

preflight runs this file as a module (without its __main__ block), finds `build_model()` and
`batch_size`, and synthesizes inputs and labels from the model because no data is defined here.
"""
import keras

batch_size = 256


def build_model():
    model = keras.Sequential(
        [
            keras.Input(shape=(784,), name="pixels"),
            keras.layers.Dense(1024, activation="relu", name="hidden_1"),
            keras.layers.Dense(1024, activation="relu", name="hidden_2"),
            keras.layers.Dense(10, activation="softmax", name="digits"),
        ],
        name="mnist_mlp",
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


if __name__ == "__main__":
    import numpy as np

    x = np.random.rand(60000, 784).astype("float32")
    y = np.random.randint(0, 10, 60000)
    build_model().fit(x, y, batch_size=batch_size, epochs=1)
