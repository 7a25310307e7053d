"""A small MLP for the training callback's tests (tests/test_callback.py): checked by preflight, then fit
with preflight.keras.MemoryCallback in another process."""
import keras

batch_size = 64


def build_model():
    model = keras.Sequential([
        keras.Input(shape=(256,)),
        keras.layers.Dense(512, activation="relu"),
        keras.layers.Dense(512, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ], name="callback_mlp")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model
