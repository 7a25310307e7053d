"""The issue-16 search: HyperResNet compiles categorical_crossentropy, the labels are class ids, so every
trial fails ("target and output must have the same rank"). preflight must exit 3 and name the fix."""
import keras_tuner as kt
import numpy as np

rng = np.random.default_rng(0)
x = rng.random((64, 32, 32, 3), dtype=np.float32)
y = rng.integers(0, 10, size=64)
tuner = kt.RandomSearch(kt.applications.HyperResNet(input_shape=(32, 32, 3), classes=10),
                        objective="val_accuracy", max_trials=3, overwrite=True)
tuner.search(x, y, epochs=1, batch_size=16, validation_split=0.2)
