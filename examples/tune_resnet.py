"""keras-tuner's HyperResNet on CIFAR-sized inputs: `python -m preflight examples/tune_resnet.py --target t4`.

The file only defines the hypermodel and a little data; preflight enumerates the space (version,
conv3_depth, conv4_depth, pooling, optimizer, learning_rate), builds the worst case and predicts the rest.
"""
import keras_tuner as kt
import numpy as np

hypermodel = kt.applications.HyperResNet(input_shape=(32, 32, 3), classes=10)
batch_size = 32

rng = np.random.default_rng(0)
x = rng.random((64, 32, 32, 3), dtype=np.float32)
y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, size=64)]  # HyperResNet compiles categorical_crossentropy
train_data = (x, y)
