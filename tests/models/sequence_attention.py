"""A tiny self-attention classifier over token ids of no fixed length: its input's axis 1 is dynamic, so the
report measures it like the batch (--seq-len, a peak-vs-length curve). Used by tests/test_dynamic_axes.py."""
import keras

batch_size = 8


def build_model():
    tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(500, 32)(tokens)
    x = keras.layers.MultiHeadAttention(2, 16)(x, x)
    x = keras.layers.Dense(64, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    model = keras.Model(tokens, keras.layers.Dense(3)(x))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model
