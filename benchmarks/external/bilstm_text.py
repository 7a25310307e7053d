"""keras-io "Bidirectional LSTM on IMDB", architecture as published: Embedding(20,000, 128), two
Bidirectional(LSTM(64)), a sigmoid head; reviews cut to 200 tokens. Token ids here are random."""
import numpy as np
import keras
from keras import layers

MAX_FEATURES = 20_000
MAXLEN = 200


def build_model():
    inputs = keras.Input(shape=(None,), dtype="int32")
    x = layers.Embedding(MAX_FEATURES, 128)(inputs)
    x = layers.Bidirectional(layers.LSTM(64, return_sequences=True))(x)
    x = layers.Bidirectional(layers.LSTM(64))(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs)
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    return model


def get_dataset():
    rng = np.random.default_rng(0)
    return rng.integers(1, MAX_FEATURES, size=(512, MAXLEN)).astype("int32"), rng.integers(0, 2, size=(512,))


batch_size = 32
