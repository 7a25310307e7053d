"""Launch checks: a keras-tuner search whose tuner has no distribution_strategy= (accelerator-unused when a
TPU address is set or several GPUs are visible). Only checked, never searched."""
import keras
import keras_tuner as kt
import numpy as np

batch_size = 16


def build_model(hp):
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(hp.Int("units", 8, 32, step=8), name="hidden"),
                              keras.layers.Dense(1, name="head")])
    model.compile(optimizer="adam", loss="mse")
    return model


tuner = kt.RandomSearch(build_model, objective="loss", max_trials=2, overwrite=True, project_name="no_strategy")
tuner.search(np.ones((64, 16), "float32"), np.ones((64, 1), "float32"), epochs=1)
