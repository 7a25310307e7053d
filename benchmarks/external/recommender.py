"""A two-tower recommender as issue 21 describes it: Embedding 200,000 x 64 (users) and 50,000 x 64 (items),
Dense 256 and 64 on each tower, a dot product, RMSprop, binary cross-entropy."""
import numpy as np
import keras
from keras import layers


def build_model():
    user = keras.Input(shape=(1,), dtype="int32", name="user")
    item = keras.Input(shape=(1,), dtype="int32", name="item")
    towers = []
    for ids, rows in ((user, 200_000), (item, 50_000)):
        x = layers.Flatten()(layers.Embedding(rows, 64)(ids))
        x = layers.Dense(256, activation="relu")(x)
        towers.append(layers.Dense(64)(x))
    score = layers.Dot(axes=1)(towers)
    outputs = layers.Activation("sigmoid")(score)
    model = keras.Model({"user": user, "item": item}, outputs)
    model.compile(keras.optimizers.RMSprop(1e-3), "binary_crossentropy")
    return model


def get_dataset():
    rng = np.random.default_rng(0)
    n = 4096
    x = {"user": rng.integers(0, 200_000, size=(n, 1)).astype("int32"),
         "item": rng.integers(0, 50_000, size=(n, 1)).astype("int32")}
    y = rng.integers(0, 2, size=(n, 1)).astype("float32")
    return x, y


batch_size = 1024
