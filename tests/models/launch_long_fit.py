"""Launch checks: its fit(...) runs 1,000,000 epochs of 1,000 steps and keeps a checkpoint per epoch
(time-over-limit against Colab's 12 h, checkpoints-over-disk)."""
import keras

batch_size = 16
EPOCHS = 1_000_000


def build_model():
    model = keras.Sequential([keras.Input((256,)), keras.layers.Dense(512, activation="relu", name="hidden"),
                              keras.layers.Dense(1, name="head")], name="long_fit")
    model.compile(optimizer="adam", loss="mse")
    return model


if __name__ == "__main__":
    import numpy as np

    model = build_model()
    model.fit(np.ones((16000, 256)), np.ones((16000, 1)), epochs=EPOCHS, steps_per_epoch=1000,
              callbacks=[keras.callbacks.ModelCheckpoint("ckpt/epoch{epoch:06d}.keras")])
