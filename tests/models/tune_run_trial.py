"""A Tuner subclass that overrides run_trial to tune the batch size (keras-tuner's FAQ pattern): the
hyperparameter lives in run_trial, not in build_model, so preflight cannot see it by building models."""
import keras
import keras_tuner as kt
import numpy as np


def build_model(hp):
    inputs = keras.Input((32,))
    x = keras.layers.Dense(hp.Int("units", 32, 512, step=32), activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


class BatchSizeTuner(kt.RandomSearch):
    def run_trial(self, trial, *args, **kwargs):
        kwargs["batch_size"] = trial.hyperparameters.Int("batch_size", 16, 128, step=16)
        return super().run_trial(trial, *args, **kwargs)


rng = np.random.default_rng(0)
x = rng.standard_normal((64, 32)).astype("float32")
y = rng.integers(0, 10, size=64)
tuner = BatchSizeTuner(build_model, objective="val_accuracy", max_trials=3, overwrite=True)
tuner.search(x, y, epochs=1, validation_split=0.2)
