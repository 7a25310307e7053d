"""Issue 17: a two-tower model with named dict inputs and dict outputs, and no data: preflight synthesizes it."""
import keras

batch_size = 32


def build_model():
    tokens = keras.Input((50,), dtype="int32", name="tokens")
    numeric = keras.Input((12,), name="numeric")
    text = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(1000, 16)(tokens))
    dense = keras.layers.Dense(16, activation="relu")(numeric)
    joined = keras.layers.Concatenate()([text, dense])
    outputs = {"price": keras.layers.Dense(1, name="price")(joined),
               "category": keras.layers.Dense(7, activation="softmax", name="category")(joined)}
    model = keras.Model({"tokens": tokens, "numeric": numeric}, outputs, name="two_tower")
    model.compile("adam", loss={"price": "mse", "category": "sparse_categorical_crossentropy"},
                  loss_weights={"price": 0.5, "category": 1.0})
    return model
