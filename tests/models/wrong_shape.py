"""Data of shape (28, 28) for a model that expects flat (784,) vectors."""
import keras
import numpy as np

model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10, activation="softmax")], name="flat")
model.compile("adam", "sparse_categorical_crossentropy")
train_data = (np.zeros((64, 28, 28), "float32"), np.zeros((64,), "int32"))
