"""A small model whose weights are mostly one Embedding table and one Dense kernel: its floor (weights,
gradients, Adam slots: about 4 x 4 x 1.4M parameters = 22 MiB) is over a 16 MiB device, split over two
devices it is under (the "shard the weights" what-if, issue 25 item 2)."""
import keras
import numpy as np

model = keras.Sequential([keras.Input((16,), dtype="int32"),
                          keras.layers.Embedding(8192, 128, name="token_embedding"),
                          keras.layers.GlobalAveragePooling1D(),
                          keras.layers.Dense(2048, activation="relu", name="wide_dense"),
                          keras.layers.Dense(8, name="head")], name="big_embedding")
model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
x = np.random.randint(0, 8192, (128, 16)).astype("int32")
y = np.random.randint(0, 8, 128).astype("int32")
batch_size = 32
