"""An MLP whose custom layer cannot train on a batch of one sample (its statistics are over the batch), as some
users' layers cannot: every batch from 2 up trains."""
import keras
import tensorflow as tf

batch_size = 16


class NeedsTwoSamples(keras.layers.Layer):
    def call(self, x):
        tf.debugging.assert_greater(tf.shape(x)[0], 1, message="batch statistics need at least two samples")
        return x - tf.reduce_mean(x, axis=0)


def build_model():
    model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(64, activation="relu"), NeedsTwoSamples(),
                              keras.layers.Dense(4, activation="softmax")], name="fails_at_batch_one")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model
