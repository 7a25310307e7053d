"""The issue-16 search with one-hot labels, as HyperResNet's categorical_crossentropy wants: it runs."""
import keras_tuner as kt
import numpy as np

rng = np.random.default_rng(0)
x = rng.random((64, 32, 32, 3), dtype=np.float32)
y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, size=64)]
tuner = kt.RandomSearch(kt.applications.HyperResNet(input_shape=(32, 32, 3), classes=10),
                        objective="val_accuracy", max_trials=3, overwrite=True)
tuner.search(x, y, epochs=1, batch_size=16, validation_split=0.2)
