"""A small LSTM over integer tokens, fed by a tf.data pipeline defined in the file."""
import keras
import numpy as np
import tensorflow as tf

batch_size = 16


def build_model():
    model = keras.Sequential(
        [
            keras.Input(shape=(40,), dtype="int32"),
            keras.layers.Embedding(500, 32, name="embed"),
            keras.layers.LSTM(64, name="lstm"),
            keras.layers.Dense(1, activation="sigmoid", name="score"),
        ],
        name="small_lstm",
    )
    model.compile(optimizer=keras.optimizers.SGD(momentum=0.9), loss="binary_crossentropy")
    return model


def get_dataset():
    tokens = np.random.randint(0, 500, size=(100, 40)).astype("int32")
    labels = np.random.randint(0, 2, size=(100, 1)).astype("float32")
    return tf.data.Dataset.from_tensor_slices((tokens, labels)).shuffle(100).batch(8)
