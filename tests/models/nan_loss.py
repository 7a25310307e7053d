"""Data with NaN in it: the step runs and fits, but the loss is NaN."""
import keras
import numpy as np

model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="head")], name="nan_loss")
model.compile("sgd", "mse")
train_data = (np.full((64, 8), np.nan, "float32"), np.zeros((64, 4), "float32"))
