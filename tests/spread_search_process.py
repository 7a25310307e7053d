"""One process of a search check run by keras-tuner's chief or a worker (tests/test_tuner_distributed.py):
`preflight.check_search` on a small space, KERASTUNER_TUNER_ID saying which process this is, the check's
folder argv[1] shared by all three. Writes the report's search section and its Markdown and HTML as JSON to argv[2]."""
from __future__ import annotations

import json
import sys

import keras
import numpy as np

import preflight


def build_model(hp):
    model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(hp.Int("units", 16, 512, step=16),
                                                                     activation="relu"),
                              keras.layers.Dense(hp.Choice("depth_units", [8, 64])), keras.layers.Dense(1)])
    model.compile("adam", "mse")
    return model


if __name__ == "__main__":
    x, y = np.random.rand(64, 32).astype("float32"), np.random.rand(64, 1).astype("float32")
    document = preflight.check_search(build_model, (x, y), batch_size=16, budget="1GiB", n_samples=20,
                                      n_measure=4, directory=sys.argv[1])
    with open(sys.argv[2], "w", encoding="utf-8") as handle:
        json.dump({"search": document.document["search"], "markdown": document._repr_markdown_(),
                   "html": document._repr_html_()}, handle)
