"""A small image classifier whose Flatten feeds a wide Dense: most of its 8.5M parameters sit in one layer.

Try: `preflight check examples/wide_dense_cnn.py --budget 160MiB`. At batch 64 its step peaks near
205 MiB (BFC, CPU), so it does not fit; the what-ifs show which change makes it fit: global pooling
instead of Flatten removes almost all of the Dense layer's weights, their gradients and Adam's two
slots for each (about 130 MiB measured).
"""
import keras

batch_size = 64

model = keras.Sequential(
    [
        keras.Input(shape=(64, 64, 3)),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1"),
        keras.layers.MaxPooling2D(name="pool1"),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv2"),
        keras.layers.MaxPooling2D(name="pool2"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(512, activation="relu", name="wide_dense"),
        keras.layers.Dense(10, activation="softmax", name="classifier"),
    ],
    name="wide_dense_cnn",
)
model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
