"""A custom layer, as a user would define one next to their notebook."""
import keras


class ScaledDense(keras.layers.Layer):
    def __init__(self, units, scale=2.0, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.scale = scale

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_uniform")

    def call(self, inputs):
        return self.scale * keras.ops.matmul(inputs, self.kernel)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "scale": self.scale}


class Scaler:
    """A plain Python object: Keras cannot serialize it as a layer argument."""

    def __init__(self, factor):
        self.factor = factor


class NoConfigLayer(keras.layers.Layer):
    """Takes a plain object in its constructor and has no get_config(): Keras cannot save it."""

    def __init__(self, units, scaler, **kwargs):
        super().__init__(**kwargs)
        self.scaler = scaler
        self.dense = keras.layers.Dense(units)

    def call(self, inputs):
        return self.scaler.factor * self.dense(inputs)
