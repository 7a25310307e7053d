"""Helper for test_graph_estimate: run in a fresh process with TF_CPU_ALLOCATOR_USE_BFC=true; prints JSON."""
from __future__ import annotations

import json
import sys


def build(name: str):
    import keras

    layers = keras.layers
    if name == "mlp":
        inputs = keras.Input((256,))
        hidden = layers.Dense(512, activation="relu")(inputs)
        hidden = layers.Dense(512, activation="relu")(hidden)
        outputs = layers.Dense(10, activation="softmax")(hidden)
        shape = (256,)
    elif name == "cnn":
        inputs = keras.Input((64, 64, 3))
        hidden = layers.Conv2D(32, 3, padding="same", activation="relu")(inputs)
        hidden = layers.Conv2D(32, 3, padding="same", activation="relu")(hidden)
        hidden = layers.MaxPooling2D(4)(hidden)
        hidden = layers.Flatten()(hidden)
        outputs = layers.Dense(10, activation="softmax")(hidden)
        shape = (64, 64, 3)
    elif name == "bn":
        inputs = keras.Input((32, 32, 3))
        hidden = layers.Conv2D(32, 3, padding="same")(inputs)
        hidden = layers.BatchNormalization()(hidden)
        hidden = layers.Activation("relu")(hidden)
        hidden = layers.GlobalAveragePooling2D()(hidden)
        outputs = layers.Dense(10, activation="softmax")(hidden)
        shape = (32, 32, 3)
    else:
        raise KeyError(name)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model, shape


def main() -> None:
    import numpy as np
    import tensorflow as tf

    from preflight.engine.graph_estimate import estimate_step_peak

    name, batch_size = sys.argv[1], int(sys.argv[2])
    model, shape = build(name)
    if len(sys.argv) > 3:   # XLA mode: argv[3] is the dump dir named in XLA_FLAGS
        from preflight.engine.graph_estimate import persistent_bytes, xla_buffer_total_bytes

        result = xla_buffer_total_bytes(model, batch_size, tf.TensorSpec((None,) + shape, tf.float32),
                                        tf.TensorSpec((None,), tf.int32), sys.argv[3])
        result["persistent_bytes"] = persistent_bytes(model)
        print(json.dumps(result))
        return
    estimate = estimate_step_peak(model, batch_size, tf.TensorSpec((None,) + shape, tf.float32),
                                  tf.TensorSpec((None,), tf.int32))
    x = np.random.default_rng(0).random((batch_size,) + shape, dtype=np.float32)
    y = np.zeros((batch_size,), dtype=np.int32)
    model.train_on_batch(x, y)
    peaks = []
    for _ in range(3):
        tf.config.experimental.reset_memory_stats("CPU:0")
        model.train_on_batch(x, y)
        peaks.append(tf.config.experimental.get_memory_info("CPU:0")["peak"])
    estimate["measured_peak_bytes"] = max(peaks)
    estimate["measured_min_bytes"] = min(peaks)
    print(json.dumps(estimate))


if __name__ == "__main__":
    main()
