"""The benchmark model zoo: twelve Keras models of different memory shapes, sized for a 2-core CPU.

Each builder is a module-level function returning a compiled model (Adam plus a matching loss), so the
same model can be built in a fresh process by name (`build(name)`), and written to a `model.py` that the
preflight CLI runs (`write_model_file`). `make_data(name, n)` gives matching synthetic inputs and labels
(numpy), the same ones the ground-truth runs train on.

The shapes are chosen to cover the cases in the notes (§1): activation-dominated CNNs (near-linear peak),
an MLP whose peak is set by Adam's temporaries (flat in batch), recurrent nets (non-monotonic),
plus attention, an encoder-decoder with skips, an embedding-heavy recommender and an autoencoder.
Two more (`EXTRA_ZOO`: an Xception and a CNN whose Flatten feeds a Dense(2048)) are outside the CPU
benchmarks' default sets; the GPU benchmark (gpu_backends.py) uses them.
Importing this module does not import TensorFlow; the builders import Keras when called.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

IMAGE_SIZE_SMALL = 64   # CNN, U-Net, autoencoder, MobileNetV2, EfficientNetB0
IMAGE_SIZE_APPS = 32    # ResNet50, DenseNet121: the smallest keras.applications accepts, keeps CPU steps short
IMAGE_SIZE_LARGE = 96   # Xception (needs >= 71) and the wide-Dense CNN: the GPU benchmark's larger images
NUM_CLASSES = 10
SEQ_LEN = 100
SEQ_FEATURES = 32
VOCAB = 8000
TOKENS = 64
NUM_USERS = 200_000
NUM_ITEMS = 100_000


def _compile_classifier(model):
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def build_mlp():
    """784 -> 3 x Dense(2048) -> 10: 10.0M params; the peak is Adam's update, not activations."""
    import keras

    inputs = keras.Input((784,))
    hidden = inputs
    for _ in range(3):
        hidden = keras.layers.Dense(2048, activation="relu")(hidden)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax")(hidden)
    return _compile_classifier(keras.Model(inputs, outputs, name="mlp"))


def build_cnn():
    """64x64x3, Conv32-Conv64-Pool-Conv128-Pool-Dense128: 4.29M params, activation-dominated."""
    import keras

    layers = keras.layers
    inputs = keras.Input((IMAGE_SIZE_SMALL, IMAGE_SIZE_SMALL, 3))
    hidden = layers.Conv2D(32, 3, padding="same", activation="relu")(inputs)
    hidden = layers.Conv2D(64, 3, padding="same", activation="relu")(hidden)
    hidden = layers.MaxPooling2D()(hidden)
    hidden = layers.Conv2D(128, 3, padding="same", activation="relu")(hidden)
    hidden = layers.MaxPooling2D()(hidden)
    hidden = layers.Flatten()(hidden)
    hidden = layers.Dense(128, activation="relu")(hidden)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax")(hidden)
    return _compile_classifier(keras.Model(inputs, outputs, name="cnn"))


def _application(constructor, size: int, name: str):
    import keras

    model = constructor(weights=None, input_shape=(size, size, 3), classes=NUM_CLASSES)
    model = keras.Model(model.inputs, model.outputs, name=name)
    return _compile_classifier(model)


def build_resnet50():
    """keras.applications.ResNet50, 32x32, 23.6M params: big weights, deep graph."""
    import keras

    return _application(keras.applications.ResNet50, IMAGE_SIZE_APPS, "resnet50")


def build_mobilenetv2():
    """keras.applications.MobileNetV2, 64x64, 2.27M params: many small activations, BatchNorm."""
    import keras

    return _application(keras.applications.MobileNetV2, IMAGE_SIZE_SMALL, "mobilenetv2")


def build_efficientnetb0():
    """keras.applications.EfficientNetB0, 64x64, 4.06M params: squeeze-excite, swish."""
    import keras

    return _application(keras.applications.EfficientNetB0, IMAGE_SIZE_SMALL, "efficientnetb0")


def build_densenet121():
    """keras.applications.DenseNet121, 32x32, 7.0M params: concatenations keep activations alive."""
    import keras

    return _application(keras.applications.DenseNet121, IMAGE_SIZE_APPS, "densenet121")


def build_lstm():
    """100 steps x 32 features, 2 x LSTM(256): 0.82M params; peak is erratic in batch (notes §1)."""
    import keras

    inputs = keras.Input((SEQ_LEN, SEQ_FEATURES))
    hidden = keras.layers.LSTM(256, return_sequences=True)(inputs)
    hidden = keras.layers.LSTM(256)(hidden)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax")(hidden)
    return _compile_classifier(keras.Model(inputs, outputs, name="lstm"))


def build_gru():
    """100 steps x 32 features, 2 x GRU(256) then a Dense head."""
    import keras

    inputs = keras.Input((SEQ_LEN, SEQ_FEATURES))
    hidden = keras.layers.GRU(256, return_sequences=True)(inputs)
    hidden = keras.layers.GRU(256)(hidden)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax")(hidden)
    return _compile_classifier(keras.Model(inputs, outputs, name="gru"))


def build_transformer():
    """Token ids (64) -> embedding 128 + positions -> 2 encoder blocks (4 heads, FFN 512) -> classes."""
    import keras

    layers = keras.layers
    tokens = keras.Input((TOKENS,), dtype="int32")
    positions = keras.ops.arange(TOKENS)
    hidden = layers.Embedding(VOCAB, 128)(tokens) + layers.Embedding(TOKENS, 128)(positions)
    for _ in range(2):
        attended = layers.MultiHeadAttention(num_heads=4, key_dim=32)(hidden, hidden)
        hidden = layers.LayerNormalization()(hidden + attended)
        feed = layers.Dense(512, activation="gelu")(hidden)
        feed = layers.Dense(128)(feed)
        hidden = layers.LayerNormalization()(hidden + feed)
    pooled = layers.GlobalAveragePooling1D()(hidden)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax")(pooled)
    return _compile_classifier(keras.Model(tokens, outputs, name="transformer"))


def build_unet():
    """64x64x3 -> 4-class mask; two down, two up levels with skip concatenations."""
    import keras

    layers = keras.layers

    def block(tensor, filters):
        tensor = layers.Conv2D(filters, 3, padding="same", activation="relu")(tensor)
        return layers.Conv2D(filters, 3, padding="same", activation="relu")(tensor)

    inputs = keras.Input((IMAGE_SIZE_SMALL, IMAGE_SIZE_SMALL, 3))
    skip1 = block(inputs, 16)
    skip2 = block(layers.MaxPooling2D()(skip1), 32)
    bottom = block(layers.MaxPooling2D()(skip2), 64)
    up2 = layers.Conv2DTranspose(32, 2, strides=2)(bottom)
    up2 = block(layers.Concatenate()([up2, skip2]), 32)
    up1 = layers.Conv2DTranspose(16, 2, strides=2)(up2)
    up1 = block(layers.Concatenate()([up1, skip1]), 16)
    outputs = layers.Conv2D(4, 1, activation="softmax")(up1)
    return _compile_classifier(keras.Model(inputs, outputs, name="unet"))


def build_recommender():
    """User and item ids -> 64-d embeddings (19.2M params, all in two tables) -> MLP -> click probability."""
    import keras

    layers = keras.layers
    user = keras.Input((1,), dtype="int32", name="user")
    item = keras.Input((1,), dtype="int32", name="item")
    user_vec = layers.Flatten()(layers.Embedding(NUM_USERS, 64)(user))
    item_vec = layers.Flatten()(layers.Embedding(NUM_ITEMS, 64)(item))
    hidden = layers.Concatenate()([user_vec, item_vec])
    hidden = layers.Dense(256, activation="relu")(hidden)
    hidden = layers.Dense(64, activation="relu")(hidden)
    outputs = layers.Dense(1, activation="sigmoid")(hidden)
    model = keras.Model([user, item], outputs, name="recommender")
    model.compile(optimizer="adam", loss="binary_crossentropy")
    return model


def build_autoencoder():
    """64x64x3 convolutional autoencoder (stride-2 encoder, transposed-conv decoder), MSE loss."""
    import keras

    layers = keras.layers
    inputs = keras.Input((IMAGE_SIZE_SMALL, IMAGE_SIZE_SMALL, 3))
    hidden = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(inputs)
    hidden = layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(hidden)
    hidden = layers.Conv2D(128, 3, strides=2, padding="same", activation="relu")(hidden)
    hidden = layers.Conv2DTranspose(64, 3, strides=2, padding="same", activation="relu")(hidden)
    hidden = layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu")(hidden)
    outputs = layers.Conv2DTranspose(3, 3, strides=2, padding="same", activation="sigmoid")(hidden)
    model = keras.Model(inputs, outputs, name="autoencoder")
    model.compile(optimizer="adam", loss="mse")
    return model


def build_xception():
    """keras.applications.Xception, 96x96, 20.9M params: separable convolutions, residual adds."""
    import keras

    return _application(keras.applications.Xception, IMAGE_SIZE_LARGE, "xception")


def build_wide_cnn():
    """96x96x3, Conv32-Pool-Flatten (73,728 features)-Dense(2048)-Dense(10): 151M params, most in one kernel;
    weights, gradients and Adam's slots (~2.3 GiB) dwarf the activations."""
    import keras

    layers = keras.layers
    inputs = keras.Input((IMAGE_SIZE_LARGE, IMAGE_SIZE_LARGE, 3))
    hidden = layers.Conv2D(32, 3, padding="same", activation="relu")(inputs)
    hidden = layers.MaxPooling2D()(hidden)
    hidden = layers.Flatten()(hidden)
    hidden = layers.Dense(2048, activation="relu")(hidden)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax")(hidden)
    return _compile_classifier(keras.Model(inputs, outputs, name="wide_cnn"))


@dataclass(frozen=True)
class ZooEntry:
    name: str
    builder: Callable[[], Any]
    shape: str   # the memory shape the notes lead us to expect


ZOO: dict[str, ZooEntry] = {
    entry.name: entry
    for entry in (
        ZooEntry("mlp", build_mlp, "flat: optimizer temporaries"),
        ZooEntry("cnn", build_cnn, "near-linear: activations"),
        ZooEntry("resnet50", build_resnet50, "weights plus activations"),
        ZooEntry("mobilenetv2", build_mobilenetv2, "near-linear: activations"),
        ZooEntry("efficientnetb0", build_efficientnetb0, "near-linear: activations"),
        ZooEntry("densenet121", build_densenet121, "activations kept by concatenations"),
        ZooEntry("lstm", build_lstm, "non-monotonic"),
        ZooEntry("gru", build_gru, "non-monotonic"),
        ZooEntry("transformer", build_transformer, "attention activations"),
        ZooEntry("unet", build_unet, "activations with skips"),
        ZooEntry("recommender", build_recommender, "embedding tables: flat"),
        ZooEntry("autoencoder", build_autoencoder, "near-linear: activations"),
    )
}

# Models the CPU benchmarks leave out of their default sets (too slow for 2 cores at every batch size);
# benchmarks/gpu_backends.py measures them on a GPU.
EXTRA_ZOO: dict[str, ZooEntry] = {
    entry.name: entry
    for entry in (
        ZooEntry("xception", build_xception, "weights plus activations"),
        ZooEntry("wide_cnn", build_wide_cnn, "flat: weights, gradients and Adam slots"),
    )
}
MODELS: dict[str, ZooEntry] = {**ZOO, **EXTRA_ZOO}


def build(name: str):
    """Build and compile the zoo model `name`."""
    if name not in MODELS:
        raise KeyError(f"unknown zoo model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name].builder()


def make_data(name: str, num_samples: int, seed: int = 0):
    """Synthetic (x, y) for zoo model `name`, numpy, matching its inputs and loss."""
    rng = np.random.default_rng(seed)
    image_labels = rng.integers(0, NUM_CLASSES, size=(num_samples,)).astype("int32")
    if name == "mlp":
        return rng.random((num_samples, 784), dtype=np.float32), image_labels
    if name in ("cnn", "mobilenetv2", "efficientnetb0"):
        size = IMAGE_SIZE_SMALL
        return rng.random((num_samples, size, size, 3), dtype=np.float32), image_labels
    if name in ("resnet50", "densenet121"):
        size = IMAGE_SIZE_APPS
        return rng.random((num_samples, size, size, 3), dtype=np.float32), image_labels
    if name in ("xception", "wide_cnn"):
        size = IMAGE_SIZE_LARGE
        return rng.random((num_samples, size, size, 3), dtype=np.float32), image_labels
    if name in ("lstm", "gru"):
        return rng.random((num_samples, SEQ_LEN, SEQ_FEATURES), dtype=np.float32), image_labels
    if name == "transformer":
        return rng.integers(0, VOCAB, size=(num_samples, TOKENS)).astype("int32"), image_labels
    if name == "unet":
        images = rng.random((num_samples, IMAGE_SIZE_SMALL, IMAGE_SIZE_SMALL, 3), dtype=np.float32)
        masks = rng.integers(0, 4, size=(num_samples, IMAGE_SIZE_SMALL, IMAGE_SIZE_SMALL)).astype("int32")
        return images, masks
    if name == "recommender":
        users = rng.integers(0, NUM_USERS, size=(num_samples, 1)).astype("int32")
        items = rng.integers(0, NUM_ITEMS, size=(num_samples, 1)).astype("int32")
        clicks = rng.integers(0, 2, size=(num_samples, 1)).astype("float32")
        return (users, items), clicks
    if name == "autoencoder":
        images = rng.random((num_samples, IMAGE_SIZE_SMALL, IMAGE_SIZE_SMALL, 3), dtype=np.float32)
        return images, images
    raise KeyError(f"unknown zoo model {name!r}; known: {', '.join(MODELS)}")


_MODEL_FILE = '''"""Zoo model {name!r} for preflight (generated by benchmarks/zoo.py; edit the zoo, not this file)."""
import sys

sys.path.insert(0, {repo_root!r})

from benchmarks import zoo  # noqa: E402

batch_size = {batch_size}


def build_model():
    return zoo.build({name!r})


def get_dataset():
    return zoo.make_data({name!r}, {num_samples})
'''


def write_model_file(name: str, path: str | Path, batch_size: int, num_samples: int | None = None) -> Path:
    """Write a `model.py` the preflight CLI can run: `build_model()`, `batch_size`, `get_dataset()` (numpy)."""
    if name not in MODELS:
        raise KeyError(f"unknown zoo model {name!r}; known: {', '.join(MODELS)}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    repo_root = str(Path(__file__).resolve().parent.parent)
    text = _MODEL_FILE.format(
        name=name, repo_root=repo_root, batch_size=int(batch_size),
        num_samples=int(num_samples if num_samples is not None else max(2 * batch_size, 256)),
    )
    target.write_text(text, encoding="utf-8")
    return target
