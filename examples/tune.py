"""A keras-tuner search space that mostly does not fit a 1 GiB budget at batch 32.

`python -m preflight examples/tune.py --budget 1GiB` checks the space before any search: the worst case
(8 layers of 8192 units, ~470M parameters with Adam) needs several GiB, most random configurations do
not fit, and the small ones (a few narrow layers) do.
"""
import keras
import keras_tuner as kt
import numpy as np

INPUT_FEATURES = 256
CLASSES = 10
batch_size = 32


def build_model(hp):
    inputs = keras.Input(shape=(INPUT_FEATURES,))
    x = inputs
    for i in range(hp.Int("num_layers", 1, 8)):
        x = keras.layers.Dense(hp.Int(f"units_{i}", 256, 8192, step=256), activation="relu")(x)
    if hp.Boolean("dropout"):
        x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(CLASSES, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(hp.Float("learning_rate", 1e-4, 1e-2, sampling="log")),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


rng = np.random.default_rng(0)
x = rng.standard_normal((512, INPUT_FEATURES)).astype("float32")
y = rng.integers(0, CLASSES, size=(512,))
train_data = (x, y)

if __name__ == "__main__":
    tuner = kt.RandomSearch(build_model, objective="val_accuracy", max_trials=10,
                            directory="runs", project_name="tune_example", overwrite=True)
    tuner.search(x, y, epochs=2, batch_size=batch_size, validation_split=0.2)
