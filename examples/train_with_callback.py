"""The README's "After the run" example: train examples/mnist_mlp.py's model with preflight's callback.

    python -m preflight examples/mnist_mlp.py --budget 1GiB    # the check records its prediction
    python examples/train_with_callback.py                     # the run records what it used
    python -m preflight examples/mnist_mlp.py --budget 1GiB    # the check reports the run beside its figure
"""
import os

# On a CPU, TensorFlow's allocator keeps a readable peak only when this is set before TensorFlow starts
# (a GPU's allocator always does).
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

import numpy as np  # noqa: E402

from mnist_mlp import batch_size, build_model  # noqa: E402
from preflight.keras import MemoryCallback  # noqa: E402

x = np.random.rand(40 * batch_size, 784).astype("float32")
y = np.random.randint(0, 10, len(x))
model = build_model()
model.fit(x, y, batch_size=batch_size, epochs=3, verbose=2,
          callbacks=[MemoryCallback(budget="1GiB", time_limit="1h")])
