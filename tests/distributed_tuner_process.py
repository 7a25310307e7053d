"""One process of a distributed keras-tuner search (tests/test_tuner_distributed.py): the chief or a worker,
as KERASTUNER_TUNER_ID says, each with `preflight.guard` on its tuner. A configuration's predicted peak is
its units in MiB (a stand-in predictor: the test is about the distributed plumbing); the workers' budget is
100 MiB, so units=4096 does not fit. Writes what it saw as JSON to argv[2]."""
from __future__ import annotations

import json
import os
import sys

import keras
import keras_tuner as kt
import numpy as np

import preflight

MIB = 2**20


def build(hp):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(hp.Choice("units", [4, 8, 4096, 16])),
                              keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    return model


def main(directory: str, out: str) -> None:
    tuner = kt.GridSearch(build, objective="loss", max_trials=4, directory=directory, project_name="search",
                          overwrite=False)
    chief = "chief" in os.environ["KERASTUNER_TUNER_ID"]
    guard = preflight.guard(tuner, None if chief else "100MiB", predictor=lambda values: values["units"] * MIB)
    x, y = np.random.rand(16, 4).astype("float32"), np.random.rand(16, 1).astype("float32")
    tuner.search(x, y, epochs=1, batch_size=8, verbose=0)
    record = guard.to_dict()
    if chief:
        record["oracle_trials"] = [{"values": t.hyperparameters.values, "status": t.status, "message": t.message}
                                   for t in tuner.oracle.trials.values()]
    with open(out, "w", encoding="utf-8") as handle:
        json.dump(record, handle, default=str)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
