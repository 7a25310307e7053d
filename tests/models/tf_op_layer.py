"""A model with a custom layer that calls TensorFlow directly: it trains on the TensorFlow backend only."""
import keras
import numpy as np
import tensorflow as tf

batch_size = 16


class TfScale(keras.layers.Layer):
    def call(self, inputs):
        return tf.math.multiply(inputs, 2.0)  # a tf. op: a TensorFlow tensor under JAX or PyTorch too


def build_model():
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(16, activation="relu")(inputs)
    scaled = TfScale(name="tf_scale")(hidden)
    model = keras.Model(inputs, keras.layers.Dense(1)(scaled))
    model.compile(optimizer="adam", loss="mse")
    return model


def get_dataset():
    rng = np.random.default_rng(0)
    return rng.random((64, 8), dtype=np.float32), rng.random((64, 1), dtype=np.float32)
