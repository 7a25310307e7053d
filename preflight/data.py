"""Turning whatever data the user gave into batches of any size, or synthesizing it from the model.

Every data kind (tf.data.Dataset batched or not, NumPy `(x, y)` tuples with lists/dicts for several
inputs, keras.utils.PyDataset, nothing at all) becomes one *sample pool*: a nested structure of NumPy
arrays holding enough samples for the largest probe. A batch of size B is then the pool's first B
samples (tiled when the data has fewer). Runs inside the dry-run child.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from preflight.errors import DataError


@dataclass
class SamplePool:
    samples: tuple                 # (x,) or (x, y) or (x, y, sample_weight); x/y may be lists or dicts of arrays
    kind: str                      # "tf.data" | "numpy" | "PyDataset" | "synthetic"
    host_bytes: int | None = None  # bytes the user's data holds in host memory, when it is all in memory
    pipeline: dict | None = None   # tf.data only: shuffle buffers and in-memory caches (describe_pipeline)

    def batch(self, batch_size: int) -> tuple:
        """The first `batch_size` samples, the pool repeated when it holds fewer."""
        return tuple(_map(lambda a: _first_n(a, batch_size), part) for part in self.samples)

    def bytes_per_sample(self) -> int:
        total = 0
        for part in self.samples:
            for array in _leaves(part):
                total += array.nbytes // max(1, len(array))
        return total


def _map(fn, structure):
    if isinstance(structure, dict):
        return {k: _map(fn, v) for k, v in structure.items()}
    if isinstance(structure, (list, tuple)):
        return type(structure)(_map(fn, v) for v in structure)
    return fn(structure)


def _leaves(structure) -> list:
    if isinstance(structure, dict):
        return [leaf for v in structure.values() for leaf in _leaves(v)]
    if isinstance(structure, (list, tuple)):
        return [leaf for v in structure for leaf in _leaves(v)]
    return [structure]


def _first_n(array: np.ndarray, count: int) -> np.ndarray:
    if len(array) >= count:
        return array[:count]
    reps = math.ceil(count / max(1, len(array)))
    return np.concatenate([array] * reps, axis=0)[:count]


def _as_tuple(element) -> tuple:
    """Keras' data convention: a tuple is (x,), (x, y) or (x, y, sample_weight); anything else is x."""
    if isinstance(element, tuple) and 1 <= len(element) <= 3:
        return element
    return (element,)


def make_pool(data: Any, model: Any, pool_size: int) -> SamplePool:
    """Collect `pool_size` samples from `data` (or synthesize them) and check them against the model."""
    import tensorflow as tf
    import keras

    if isinstance(data, SamplePool):
        pool = data
    elif data is None:
        pool = synthesize(model, pool_size)
    elif isinstance(data, tf.data.Dataset):
        pool = _pool_from_dataset(data, model, pool_size)
    elif isinstance(data, keras.utils.PyDataset):
        pool = _pool_from_pydataset(data, pool_size)
    elif isinstance(data, (tuple, list, dict, np.ndarray)):
        pool = _pool_from_arrays(data, pool_size)
    else:
        raise DataError(
            f"preflight cannot read data of type {type(data).__name__}",
            hint="give a tf.data.Dataset, a keras.utils.PyDataset or a tuple (x, y) of NumPy arrays",
        )
    check_shapes(pool, model)
    return pool


def _pool_from_arrays(data, pool_size: int) -> SamplePool:
    parts = _as_tuple(tuple(data) if isinstance(data, list) and len(data) in (2, 3) else data)
    try:
        arrays = tuple(_map(np.asarray, part) for part in parts)
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"could not read the data as NumPy arrays: {exc}") from None
    lengths = {len(a) for part in arrays for a in _leaves(part) if a.ndim > 0}
    if len(lengths) != 1:
        raise DataError(f"x and y have different numbers of samples: {sorted(lengths)}",
                        hint="pass arrays with the same first dimension")
    host_bytes = sum(a.nbytes for part in arrays for a in _leaves(part))
    samples = tuple(_map(lambda a: a[:pool_size], part) for part in arrays)
    return SamplePool(samples, "numpy", host_bytes)


def _pool_from_pydataset(data, pool_size: int) -> SamplePool:
    batches, count = [], 0
    for index in range(len(data)):
        batch = _as_tuple(data[index])
        batches.append(tuple(_map(np.asarray, part) for part in batch))
        count += len(_leaves(batches[-1][0])[0])
        if count >= pool_size:
            break
    if not batches:
        raise DataError("the PyDataset is empty (len() == 0)", hint="give the PyDataset at least one batch")
    samples = tuple(_concat([b[i] for b in batches]) for i in range(len(batches[0])))
    return SamplePool(tuple(_map(lambda a: a[:pool_size], part) for part in samples), "PyDataset")


def _concat(parts: list):
    first = parts[0]
    if isinstance(first, dict):
        return {k: _concat([p[k] for p in parts]) for k in first}
    if isinstance(first, (list, tuple)):
        return type(first)(_concat([p[i] for p in parts]) for i in range(len(first)))
    return np.concatenate(parts, axis=0)


def _pool_from_dataset(dataset, model, pool_size: int) -> SamplePool:
    import tensorflow as tf

    if _is_batched(dataset, model):
        dataset = dataset.unbatch()
    try:
        element = next(iter(dataset.batch(pool_size).take(1)))
    except StopIteration:
        raise DataError("the tf.data.Dataset is empty",
                        hint="give the dataset samples (check the files or the filter it reads)") from None
    except (tf.errors.InvalidArgumentError, ValueError) as exc:
        raise DataError(f"could not batch the dataset's elements: {str(exc).splitlines()[0]}",
                        hint="elements must have the same shape (pad variable-length data)") from None
    samples = tuple(_map(lambda t: t.numpy(), part) for part in _as_tuple(element))
    return SamplePool(samples, "tf.data", pipeline=describe_pipeline(dataset))


def describe_pipeline(dataset) -> dict:
    """Host memory a tf.data pipeline holds by design: shuffle buffers and in-memory caches.

    Walks the private `_input_dataset` chain (cheap; no serialization of embedded arrays, notes §9).
    A shuffle directly over `from_tensor_slices` shares the source tensor's memory, so its figure is an
    upper bound there; over mapped or file data it is real.
    """
    shuffle_bytes, cache_bytes, stage = 0, 0, dataset
    while stage is not None:
        name = type(stage).__name__
        element_bytes = _spec_bytes(stage.element_spec)
        if "Shuffle" in name and hasattr(stage, "_buffer_size") and element_bytes:
            shuffle_bytes = max(shuffle_bytes, int(stage._buffer_size) * element_bytes)
        if "Cache" in name and getattr(stage, "_filename", None) in (b"", "") and element_bytes:
            count = int(stage.cardinality())
            if count > 0:
                cache_bytes = max(cache_bytes, count * element_bytes)
        stage = getattr(stage, "_input_dataset", None)
    return {"shuffle_buffer_bytes": shuffle_bytes, "in_memory_cache_bytes": cache_bytes}


def _spec_bytes(spec) -> int | None:
    """Bytes of one element with fully known shapes; None when a dimension is unknown."""
    import tensorflow as tf

    total = 0
    for leaf in tf.nest.flatten(spec):
        dims = leaf.shape.as_list() if leaf.shape.rank is not None else None
        if dims is None or any(d is None for d in dims):
            return None
        total += int(np.prod(dims, dtype=np.int64)) * leaf.dtype.size
    return total


def _is_batched(dataset, model) -> bool:
    """Batched when x's rank equals the model input's rank (batch axis included)."""
    import tensorflow as tf

    x_spec = _as_tuple(dataset.element_spec)[0]
    x_leaf = tf.nest.flatten(x_spec)[0]
    inputs = getattr(model, "inputs", None)
    if inputs:
        return len(x_leaf.shape) == len(inputs[0].shape)
    return len(x_leaf.shape) > 0 and x_leaf.shape[0] is None


def check_shapes(pool: SamplePool, model) -> None:
    """Per-sample shapes of x against the model's inputs: a mismatch is named before any step runs."""
    inputs = getattr(model, "inputs", None)
    if not inputs:
        return
    x = pool.samples[0]
    if isinstance(x, dict):
        arrays = [x.get(getattr(t, "name", ""), None) for t in inputs]
        if any(a is None for a in arrays):
            arrays = list(x.values())
    else:
        arrays = _leaves(x)
    if len(arrays) != len(inputs):
        raise DataError(f"the model has {len(inputs)} input(s) but the data gives {len(arrays)}",
                        hint="give x as a list or dict with one array per model input")
    for tensor, array in zip(inputs, arrays):
        expected = tuple(tensor.shape[1:])
        got = tuple(array.shape[1:])
        compatible = len(expected) == len(got) and all(e is None or e == g for e, g in zip(expected, got))
        if not compatible:
            raise DataError(
                f"input {tensor.name!r}: the data has per-sample shape {got}, the model expects {expected}",
                hint="reshape the data or fix the model's Input shape",
            )


# --- synthetic data -------------------------------------------------------------------------------

def synthesize(model, count: int, seed: int = 0) -> SamplePool:
    """Inputs from the model's input specs, labels shaped for its loss."""
    inputs = getattr(model, "inputs", None)
    if not inputs:
        raise DataError(
            f"model {model.name!r} has no known input shape, so preflight cannot make inputs for it",
            hint="give data (get_dataset() or dataset/train_data in model.py), or build the model with keras.Input",
        )
    rng = np.random.default_rng(seed)
    vocab = _smallest_vocabulary(model)
    xs = [_random_array(t, count, rng, vocab) for t in inputs]
    x = xs[0] if len(xs) == 1 else xs
    outputs = model.outputs
    losses = _losses_per_output(model, len(outputs))
    ys = [_label_for(out, loss, count, rng) for out, loss in zip(outputs, losses)]
    y = ys[0] if len(ys) == 1 else ys
    return SamplePool((x, y), "synthetic")


def _random_array(tensor, count: int, rng, vocab: int | None) -> np.ndarray:
    shape = (count,) + tuple(d if d is not None else 1 for d in tensor.shape[1:])
    dtype = np.dtype(str(tensor.dtype)) if str(tensor.dtype) != "bfloat16" else np.float32
    if np.issubdtype(dtype, np.integer):
        # Integer inputs usually index an Embedding: stay inside the smallest vocabulary.
        return rng.integers(0, vocab or 2, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _smallest_vocabulary(model) -> int | None:
    import keras

    dims = [layer.input_dim for layer in _all_layers(model) if isinstance(layer, keras.layers.Embedding)]
    return min(dims) if dims else None


def _all_layers(model) -> list:
    found = []
    for layer in model.layers:
        found.append(layer)
        if hasattr(layer, "layers"):
            found.extend(_all_layers(layer))
    return found


def loss_name(loss) -> str:
    """'sparse_categorical_crossentropy' for the string, the function, or the Loss object."""
    if loss is None:
        return ""
    if isinstance(loss, str):
        return loss.lower()
    fn = getattr(loss, "fn", None)
    if fn is not None:
        return getattr(fn, "__name__", "").lower()
    name = getattr(loss, "name", None) or getattr(loss, "__name__", None) or type(loss).__name__
    return str(name).lower()


def _losses_per_output(model, count: int) -> list:
    loss = getattr(model, "loss", None)
    if isinstance(loss, dict):
        names = [getattr(o, "name", "").split("/")[0] for o in model.outputs]
        values = list(loss.values())
        return [loss.get(n, values[min(i, len(values) - 1)]) for i, n in enumerate(names)]
    if isinstance(loss, (list, tuple)):
        return list(loss) + [loss[-1]] * (count - len(loss))
    return [loss] * count


def _label_for(output, loss, count: int, rng) -> np.ndarray:
    name = loss_name(loss)
    shape = tuple(d if d is not None else 1 for d in output.shape[1:])
    classes = shape[-1] if shape else 1
    if "sparse" in name:
        return rng.integers(0, max(classes, 2), size=(count,) + shape[:-1]).astype(np.int32)
    if "categorical" in name:
        labels = rng.integers(0, classes, size=(count,) + shape[:-1])
        return np.eye(classes, dtype=np.float32)[labels]
    if "binary" in name or "hinge" in name:
        return rng.integers(0, 2, size=(count,) + shape).astype(np.float32)
    return rng.standard_normal((count,) + shape).astype(np.float32)
