"""Launch checks: a layer that calls tf.py_function, which XLA cannot compile (xla-incompatible)."""
import keras
import tensorflow as tf

batch_size = 16


class NumpyScale(keras.layers.Layer):
    def call(self, x):
        y = tf.py_function(lambda t: t * 2.0, [x], tf.float32)
        y.set_shape(x.shape)
        return y

    def compute_output_shape(self, input_shape):
        return input_shape


def build_model():
    model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(64, name="hidden"),
                              NumpyScale(name="numpy_scale"), keras.layers.Dense(1, name="head")], name="py_function")
    model.compile(optimizer="adam", loss="mse")
    return model
