"""Run under KERAS_BACKEND=jax: the compiled train step's buffers of a model file at given batch sizes, computed
here without preflight's readers, for tests/test_backends.py to check preflight's JAX figure against.

Prints one JSON line: {batch_size: {"argument", "output", "temp", "alias", "total", "state", "batch"}}; "state"
and "batch" are the NumPy byte counts of what the step takes as arguments (weights, optimizer and metric
variables; the batch), which XLA's argument size must equal.
"""
import json
import os
import runpy
import sys

assert os.environ.get("KERAS_BACKEND") == "jax"
import jax  # noqa: E402
import numpy as np  # noqa: E402

from preflight.engine.data import make_pool  # noqa: E402 - the same synthesized batch preflight steps on


def main(model_file: str, batch_sizes: list[int]) -> None:
    model = runpy.run_path(model_file)["build_model"]()
    pool = make_pool(None, model, max(batch_sizes))
    figures = {}
    for batch_size in batch_sizes:
        batch = pool.batch(batch_size)
        model._symbolic_build(data_batch=batch)
        variables = (model.trainable_variables, model.non_trainable_variables, model.optimizer.variables,
                     model.metrics_variables)
        state = tuple([v.value for v in group] for group in variables)
        analysis = jax.jit(model.train_step, donate_argnums=0).lower(state, batch).compile().memory_analysis()
        sizes = {name: int(getattr(analysis, f"{name}_size_in_bytes")) for name in ("argument", "output", "temp", "alias")}
        sizes["total"] = sizes["argument"] + sizes["temp"] + sizes["output"] - sizes["alias"]
        sizes["state"] = sum(int(np.asarray(leaf).nbytes) for leaf in jax.tree_util.tree_leaves(state))
        sizes["batch"] = sum(int(np.asarray(leaf).nbytes) for leaf in jax.tree_util.tree_leaves(batch))
        figures[batch_size] = sizes
    print(json.dumps(figures))


if __name__ == "__main__":
    main(sys.argv[1], [int(b) for b in sys.argv[2:]])
