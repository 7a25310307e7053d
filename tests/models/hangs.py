"""A model whose training step never finishes: its loss sleeps in a py_function."""
import time

import keras
import tensorflow as tf

batch_size = 4


def slow_loss(y_true, y_pred):
    tf.py_function(lambda: time.sleep(3600), [], [])
    return keras.losses.mean_squared_error(y_true, y_pred)


model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)], name="hangs")
model.compile("sgd", slow_loss)
