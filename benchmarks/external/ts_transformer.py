"""keras-io "Timeseries classification with a Transformer model", architecture as published (issue 21)."""
import numpy as np
import keras
from keras import layers


def transformer_encoder(inputs, head_size, num_heads, ff_dim, dropout=0):
    x = layers.MultiHeadAttention(key_dim=head_size, num_heads=num_heads, dropout=dropout)(inputs, inputs)
    x = layers.Dropout(dropout)(x)
    x = layers.LayerNormalization(epsilon=1e-6)(x)
    res = x + inputs
    x = layers.Conv1D(filters=ff_dim, kernel_size=1, activation="relu")(res)
    x = layers.Dropout(dropout)(x)
    x = layers.Conv1D(filters=inputs.shape[-1], kernel_size=1)(x)
    x = layers.LayerNormalization(epsilon=1e-6)(x)
    return x + res


def build_model():
    inputs = keras.Input(shape=(500, 1))
    x = inputs
    for _ in range(4):
        x = transformer_encoder(x, 256, 4, 4, 0.25)
    x = layers.GlobalAveragePooling1D(data_format="channels_last")(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.Dropout(0.4)(x)
    outputs = layers.Dense(2, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(loss="sparse_categorical_crossentropy", optimizer=keras.optimizers.Adam(learning_rate=1e-4),
                  metrics=["sparse_categorical_accuracy"])
    return model


def get_dataset():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 500, 1)).astype("float32")
    y = rng.integers(0, 2, size=(512,))
    return x, y

batch_size = 64
