"""A small model (20 K parameters) whose activations at batch 1 already exceed a 64 MiB budget.

Two 3x3 convolutions on 512x512 images keep 32 MiB tensors per sample alive through the backward pass.
No batch size fits; a lower input resolution or fewer filters might, and only a measurement can say.
"""
import keras

batch_size = 2


def build_model():
    model = keras.Sequential(
        [
            keras.Input(shape=(512, 512, 3), name="image"),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv_a"),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv_b"),
            keras.layers.GlobalAveragePooling2D(name="pool"),
            keras.layers.Dense(10, activation="softmax", name="classes"),
        ],
        name="big_activations",
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model
