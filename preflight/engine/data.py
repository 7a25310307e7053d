"""Turning whatever `model.fit` accepts into batches of any size, or synthesizing them from the model.

Every data form `fit` trains on becomes one *sample pool*: the structure `fit`'s data adapter hands to
`train_step` per batch (an array, a list or dict of them, `(x,)`, `(x, y)`, `(x, y, sample_weight)`;
a `None` stays `None`), holding enough samples for the largest probe. A batch of size B is the pool's
first B samples (tiled when the data has fewer). Forms, by Keras's own rules: a tuple is `(x,)`,
`(x, y)` or `(x, y, sample_weight)` (keras.utils.unpack_x_y_sample_weight); anything else (array, list,
dict) is `x` alone; a tf.data.Dataset (batched or not), a keras.utils.PyDataset or a Python generator
yields such elements. Runs inside the dry-run child, and in the notebook before the hand-off.
"""
from __future__ import annotations

import inspect
import math
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from preflight.errors import DataError


@dataclass
class SamplePool:
    element: Any                   # one batch as fit's adapter yields it; leaves are arrays or None
    kind: str                      # "tf.data" | "numpy" | "PyDataset" | "generator" | "synthetic"
    host_bytes: int | None = None  # bytes the user's data holds in host memory, when it is all in memory
    pipeline: dict | None = None   # tf.data only: its buffers (describe_pipeline), what it held (child)

    def batch(self, batch_size: int):
        """The first `batch_size` samples in the element's structure, the pool repeated when it holds fewer."""
        return _map(lambda a: _first_n(a, batch_size), self.element)

    def unpacked(self, batch_size: int) -> tuple:
        """(x, y, sample_weight) of a batch, by keras.utils.unpack_x_y_sample_weight's rule."""
        return unpack(self.batch(batch_size))

    def bytes_per_sample(self) -> int:
        return sum(array.nbytes // max(1, len(array)) for array in _leaves(self.element))

    def describe(self, batch_size: int) -> str:
        """'x: tokens int32 (32, 50), numeric float32 (32, 12); y: float32 (32, 1)': what a step was fed."""
        x, y, sample_weight = self.unpacked(batch_size)
        parts = [f"{label}: {_describe_structure(part)}" for label, part in
                 (("x", x), ("y", y), ("sample_weight", sample_weight)) if part is not None]
        return "; ".join(parts) if parts else "nothing"


def unpack(element) -> tuple:
    """Keras's rule for a batch: a tuple is (x,), (x, y) or (x, y, sample_weight); anything else is x."""
    if not isinstance(element, tuple):
        return element, None, None
    if not 1 <= len(element) <= 3:
        raise DataError(f"a data tuple holds (x,), (x, y) or (x, y, sample_weight); this one has {len(element)} items",
                        hint="pass x, (x, y) or (x, y, sample_weight); several inputs go in one list or dict as x")
    return tuple(element) + (None,) * (3 - len(element))


def pack(x, y=None, sample_weight=None):
    """What fit's array adapter yields per batch (keras.utils.pack_x_y_sample_weight: no y, no weights)."""
    if y is None:
        return (x,) if isinstance(x, (tuple, list)) else x
    return (x, y) if sample_weight is None else (x, y, sample_weight)


def _describe_structure(part) -> str:
    if isinstance(part, dict):
        return ", ".join(f"{key} {_describe_array(value)}" for key, value in part.items())
    if isinstance(part, (list, tuple)):
        return "[" + ", ".join(_describe_structure(value) for value in part) + "]"
    return _describe_array(part)


def _describe_array(array) -> str:
    return "None" if array is None else f"{array.dtype} {tuple(array.shape)}"


def _map(fn, structure):
    if structure is None:
        return None
    if isinstance(structure, dict):
        return {k: _map(fn, v) for k, v in structure.items()}
    if isinstance(structure, (list, tuple)):
        return type(structure)(_map(fn, v) for v in structure)
    return fn(structure)


def _leaves(structure) -> list:
    if structure is None:
        return []
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


def _to_numpy(structure):
    """Leaves become NumPy arrays; lists become tuples, as fit's adapters make them."""
    if structure is None:
        return None
    if isinstance(structure, dict):
        return {k: _to_numpy(v) for k, v in structure.items()}
    if isinstance(structure, (list, tuple)):
        return tuple(_to_numpy(v) for v in structure)
    array = structure.numpy() if hasattr(structure, "numpy") else np.asarray(structure)
    if array.ndim == 0:
        raise DataError(f"the data holds a scalar ({array!r}) where an array of samples belongs",
                        hint="every leaf of x, y and sample_weight needs a first (sample) dimension")
    return array


def make_pool(data: Any, model: Any, pool_size: int, length: int | None = None) -> SamplePool:
    """Collect `pool_size` samples from `data` (or synthesize them) and check them against the model.

    `length`: the size of the inputs' `None` axes besides the batch (a sequence length, --seq-len):
    synthesized at it, or the data cut or tiled to it (at_length)."""
    import keras

    if isinstance(data, SamplePool):
        pool = data
    elif data is None:
        pool = synthesize(model, pool_size, length=length)
    elif _is_tf_dataset(data):
        pool = _reading(lambda: _pool_from_dataset(data, model, pool_size), "tf.data.Dataset")
    elif isinstance(data, keras.utils.PyDataset):
        pool = _reading(lambda: _pool_from_batches(_pydataset_batches(data), pool_size, "PyDataset"), "PyDataset")
    elif inspect.isgenerator(data):
        pool = _reading(lambda: _pool_from_batches(_generator_batches(data), pool_size, "generator"), "generator")
    elif isinstance(data, (tuple, list, dict, np.ndarray)) or hasattr(data, "__array__"):
        pool = _pool_from_arrays(data, pool_size)
    else:
        raise DataError(
            f"preflight cannot read data of type {type(data).__name__}",
            hint="give what model.fit takes: arrays x, a tuple (x, y) or (x, y, sample_weight), a "
                 "tf.data.Dataset, a keras.utils.PyDataset or a Python generator of batches",
        )
    if length is not None and pool.kind != "synthetic":
        pool = at_length(pool, model, length)
    check_shapes(pool, model)
    return pool


def _reading(collect, what: str) -> SamplePool:
    """The user's pipeline code runs while batches are read: its exception is a data error, not a crash."""
    try:
        return collect()
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - a map function or generator may raise anything
        first_line = next((line for line in str(exc).splitlines() if line.strip()), "")
        raise DataError(f"reading a batch from the {what} failed: {type(exc).__name__}: {first_line[:300]}",
                        hint=f"check that one pass over the {what} runs, e.g. next(iter(...))") from None


def _pool_from_arrays(data, pool_size: int) -> SamplePool:
    x, y, sample_weight = unpack(data) if isinstance(data, tuple) else (data, None, None)
    element = _to_numpy(pack(x, y, sample_weight))
    arrays = _leaves(element)
    lengths = sorted({len(a) for a in arrays})
    if len(lengths) != 1:
        raise DataError(f"x, y and sample_weight have different numbers of samples: {lengths}",
                        hint="pass arrays with the same first dimension")
    return SamplePool(_map(lambda a: a[:pool_size], element), "numpy", sum(a.nbytes for a in arrays))


def _pydataset_batches(data):
    """Batches as Keras's PyDataset adapter standardizes them: an array is (x,), a list a tuple."""
    count = data.num_batches  # None for an infinite PyDataset
    index = 0
    while count is None or index < count:
        batch = data[index]
        if isinstance(batch, np.ndarray):
            batch = (batch,)
        elif isinstance(batch, list):
            batch = tuple(batch)
        if not isinstance(batch, (dict, tuple)):
            raise DataError(f"PyDataset.__getitem__() returned a {type(batch).__name__}; "
                            "model.fit takes a tuple (x,), (x, y) or (x, y, sample_weight), or a dict",
                            hint="return (x, y) from __getitem__")
        yield batch
        index += 1


def _generator_batches(generator):
    """Batches as Keras's generator adapter takes them: tuples only."""
    for batch in generator:
        if not isinstance(batch, tuple):
            raise DataError(f"the generator yielded a {type(batch).__name__}; model.fit takes a generator of "
                            "tuples (x,), (x, y) or (x, y, sample_weight)",
                            hint="yield (x,) for inputs without labels, (x, y) with them")
        yield batch


def _pool_from_batches(batches, pool_size: int, kind: str) -> SamplePool:
    collected, count = [], 0
    for batch in batches:
        if _holds_a_list(batch):
            # fit builds a tf.data signature from the first batch, and a list has none (a TypeError there).
            raise DataError(f"a batch from the {kind} holds a list, which model.fit cannot read from a {kind}",
                            hint="use tuples (or a dict keyed by input name) for several inputs or labels")
        collected.append(_to_numpy(batch))
        leaves = _leaves(collected[-1])
        if not leaves:
            raise DataError(f"a batch from the {kind} holds no arrays", hint="yield x, (x, y) or (x, y, sample_weight)")
        count += len(leaves[0])
        if count >= pool_size:
            break
    if not collected:
        raise DataError(f"the {kind} yielded no batches (it is empty)",
                        hint="give data with at least one batch; check that the dataset or generator is not exhausted")
    try:
        element = _concat(collected)
    except ValueError as exc:
        raise DataError(f"the {kind}'s batches differ in structure or shape: {exc}",
                        hint="pad variable-length data so that every batch has the same per-sample shape") from None
    return SamplePool(_map(lambda a: a[:pool_size], element), kind)


def _holds_a_list(structure) -> bool:
    if isinstance(structure, list):
        return True
    children = structure.values() if isinstance(structure, dict) else structure if isinstance(structure, tuple) else []
    return any(_holds_a_list(child) for child in children)


def _concat(parts: list):
    first = parts[0]
    if first is None:
        return None
    if isinstance(first, dict):
        return {k: _concat([p[k] for p in parts]) for k in first}
    if isinstance(first, tuple):
        return tuple(_concat([p[i] for p in parts]) for i in range(len(first)))
    return np.concatenate(parts, axis=0)


def _is_tf_dataset(data) -> bool:
    """A tf.data.Dataset, asked without importing TensorFlow: under JAX or PyTorch it may be absent,
    and a dataset's module has imported it already."""
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(data, tf.data.Dataset)


def _pool_from_dataset(dataset, model, pool_size: int) -> SamplePool:
    import tensorflow as tf

    pipeline = describe_pipeline(dataset)
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
    return SamplePool(_to_numpy(element), "tf.data", pipeline=pipeline)


def describe_pipeline(dataset) -> dict:
    """Host memory a tf.data pipeline holds by design: shuffle buffers, in-memory caches, prefetch buffers.

    Walks the private `_input_dataset` chain (cheap; no serialization of embedded arrays, notes §9), from
    the source up. Each buffer is estimated from the element spec: a shuffle buffer is its size times the
    element's bytes; an in-memory cache is the whole dataset once filled (the cardinality, or for
    TFRecord files their record count, read from the record headers); a prefetch is its buffer of
    elements (AUTOTUNE counted as 2). An element is "decoded" when a map lies between the source and the
    buffer. These are estimates ("static"); the child measures what the pipeline held (preflight.child).
    """
    stages = []
    stage = dataset
    while stage is not None:
        stages.append(stage)
        stage = getattr(stage, "_input_dataset", None)
    stages.reverse()  # source first
    source_records, source_file_bytes = _tfrecord_counts(stages[0]) if stages else (None, None)
    buffers: list[dict] = []
    mapped = False          # a map lies below this stage: its elements are decoded
    one_to_one = True       # every stage so far keeps one element per record (count = the records')
    batch_size = None       # the batch size of the nearest batch below
    cache_below = False     # a cache lies directly below (no map since): a shuffle holds its tensors
    chain: list[str] = []
    for stage in stages:
        name = type(stage).__name__.lstrip("_")
        element_bytes = _spec_bytes(stage.element_spec, batch_size)
        if "Map" in name and "FlatMap" not in name:
            mapped, cache_below = True, False
            chain.append("map")
        elif "Shuffle" in name and hasattr(stage, "_buffer_size"):
            size = _int(stage._buffer_size)
            chain.append(f"shuffle({size})")
            if element_bytes and size and size > 0:
                buffers.append({"kind": "shuffle", "elements": size, "element_bytes": element_bytes,
                                "bytes": size * element_bytes, "decoded": mapped, "shares_cache": cache_below})
        elif "Cache" in name:
            in_memory = getattr(stage, "_filename", None) in (b"", "", None)
            chain.append("cache()" if in_memory else "cache(filename)")
            if in_memory:
                count = _int(stage.cardinality())
                if (count is None or count < 0) and one_to_one:
                    count = source_records
                if count and count > 0:
                    held = count * element_bytes if element_bytes else (source_file_bytes if not mapped else None)
                    if held:
                        buffers.append({"kind": "cache", "elements": count, "element_bytes": held // count,
                                        "bytes": held, "decoded": mapped, "shares_cache": False})
                cache_below = True
        elif "Prefetch" in name and hasattr(stage, "_buffer_size"):
            size = _int(stage._buffer_size)
            chain.append("prefetch(AUTOTUNE)" if size == -1 else f"prefetch({size})")
            counted = 2 if size is None or size < 0 else size
            if element_bytes and batch_size:  # a prefetch of batches; single elements are small
                buffers.append({"kind": "prefetch", "elements": counted, "element_bytes": element_bytes,
                                "bytes": counted * element_bytes, "decoded": mapped, "shares_cache": False,
                                "autotune": size == -1})
        elif "Batch" in name and hasattr(stage, "_batch_size"):
            batch_size = _int(stage._batch_size)
            one_to_one = False
            chain.append(f"batch({batch_size})")
        elif stage is stages[0]:
            chain.append(name.replace("V2", ""))
        else:
            one_to_one = one_to_one and any(word in name for word in ("Options", "Prefetch", "Map"))
            chain.append(name.replace("Dataset", "").lower() or name)
    shuffle = max((b["bytes"] for b in buffers if b["kind"] == "shuffle"), default=0)
    cache = max((b["bytes"] for b in buffers if b["kind"] == "cache"), default=0)
    source_count = _int(stages[0].cardinality()) if stages else None
    return {"shuffle_buffer_bytes": shuffle, "in_memory_cache_bytes": cache, "buffers": buffers,
            "source_records": source_records, "chain": " -> ".join(chain),
            "dataset_elements": source_records or (source_count if source_count and source_count > 0 else None)}


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


MAX_TFRECORD_FILES = 10_000  # record counting reads headers only; past this many files it is skipped


def _tfrecord_counts(source) -> tuple[int | None, int | None]:
    """(records, bytes) of an uncompressed TFRecordDataset's files, from the record headers (8-byte length,
    4-byte CRC, data, 4-byte CRC): nothing is parsed or decoded. (None, None) for any other source."""
    if "TFRecordDataset" not in type(source).__name__:
        return None, None
    try:
        compression = getattr(source, "_compression_type", None)
        compression = compression.numpy() if hasattr(compression, "numpy") else compression
        if compression not in (None, "", b""):
            return None, None
        files = source._filenames  # a tensor of names, or (several files) a dataset of them
        raw = files.numpy() if hasattr(files, "numpy") else [name.numpy() for name in files.take(MAX_TFRECORD_FILES + 1)]
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in np.atleast_1d(raw)]
    except Exception:  # noqa: BLE001 - a symbolic file list: unknown
        return None, None
    if len(names) > MAX_TFRECORD_FILES:
        return None, None
    records, total = 0, 0
    try:
        for name in names:
            with open(name, "rb") as handle:
                handle.seek(0, 2)
                size = handle.tell()
                total += size
                position = 0
                while position + 12 <= size:
                    handle.seek(position)
                    length = int.from_bytes(handle.read(8), "little")
                    position += 16 + length
                    records += 1
    except OSError:
        return None, None  # gs:// and other remote paths: not read here
    return records, total


def pipeline_call_lines(path: str) -> dict[str, list[int]]:
    """Lines of a model.py that call .shuffle(...), .cache(...) or .prefetch(...): where each buffer is made."""
    import ast

    from preflight.engine.program import program_text

    try:
        tree = ast.parse(program_text(path) or "")
    except (SyntaxError, ValueError):
        return {}
    lines: dict[str, list[int]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in ("shuffle", "cache", "prefetch"):
            lines.setdefault(node.func.attr, []).append(node.func.end_lineno or node.lineno)
    return {kind: sorted(set(found)) for kind, found in lines.items()}


def _spec_bytes(spec, batch_size: int | None = None) -> int | None:
    """Bytes of one element with fully known shapes (an unknown leading batch axis is `batch_size` when
    given); None when a dimension is unknown or the element holds strings (encoded records)."""
    import tensorflow as tf

    total = 0
    for leaf in tf.nest.flatten(spec):
        if not isinstance(leaf, tf.TensorSpec):
            continue  # the None of an (x, None) element holds nothing
        if leaf.dtype == tf.string:
            return None
        dims = leaf.shape.as_list() if leaf.shape.rank is not None else None
        if dims and dims[0] is None and batch_size:
            dims[0] = batch_size
        if dims is None or any(d is None for d in dims):
            return None
        total += int(np.prod(dims, dtype=np.int64)) * leaf.dtype.size
    return total


def _is_batched(dataset, model) -> bool:
    """Batched when x's rank equals the model input's rank (batch axis included), as fit expects."""
    import tensorflow as tf

    x_spec = unpack(dataset.element_spec)[0]
    try:
        pairs = _pair_with_inputs(x_spec, model)
    except DataError:
        pairs = None  # check_shapes names the mismatch once the pool exists
    if pairs:
        _, tensor, spec = pairs[0]
        return len(spec.shape) == len(tensor.shape)
    leaf = tf.nest.flatten(x_spec)[0]
    return len(leaf.shape) > 0 and leaf.shape[0] is None


def _input_structure(model):
    """The model's inputs as it takes them (a tensor, a list, or a dict by name); None when unknown."""
    inputs = getattr(model, "inputs", None)
    if not inputs:
        return None
    try:
        structure = model.input  # a Sequential that was never called has none: use its input list
    except (AttributeError, ValueError):
        structure = inputs
    if isinstance(structure, (list, tuple)) and len(structure) == 1:
        return structure[0]
    return structure


def _pair_with_inputs(x, model) -> list[tuple[str, Any, Any]] | None:
    """(input name, model input, data leaf) per model input, the way Keras matches them; None if unknown."""
    structure = _input_structure(model)
    if structure is None:
        return None
    named = dict(structure) if isinstance(structure, dict) else {t.name: t for t in model.inputs}
    if isinstance(x, dict):
        missing = [name for name in named if name not in x]
        if missing:
            raise DataError(f"the data has no entry for model input(s) {missing}; its keys are {sorted(x)}",
                            hint="key x's dict by the model's input names: " + ", ".join(named))
        return [(name, tensor, x[name]) for name, tensor in named.items()]
    leaves = list(x) if isinstance(x, (list, tuple)) else [x]
    if len(leaves) != len(model.inputs):
        raise DataError(f"the model has {len(model.inputs)} input(s) but the data's x gives {len(leaves)}",
                        hint="give x as one array per model input, in a list or a dict keyed by input name; "
                             "a tuple is (x, y) or (x, y, sample_weight)")
    return [(tensor.name, tensor, leaf) for tensor, leaf in zip(model.inputs, leaves)]


def check_shapes(pool: SamplePool, model) -> None:
    """Per-sample shapes of x against the model's inputs: a mismatch is named before any step runs."""
    x = unpack(pool.element)[0]
    if x is None:
        raise DataError("the data has no x (inputs)", hint="pass x, (x, y) or (x, y, sample_weight)")
    for name, tensor, array in _pair_with_inputs(x, model) or []:
        expected = tuple(tensor.shape[1:])
        got = tuple(array.shape[1:])
        compatible = len(expected) == len(got) and all(e is None or e == g for e, g in zip(expected, got))
        if not compatible:
            raise DataError(
                f"input {name!r}: the data has per-sample shape {got}, the model expects {expected}",
                hint="reshape the data or fix the model's Input shape",
            )


# --- synthetic data -------------------------------------------------------------------------------

def dynamic_axes(model) -> list[dict[str, Any]]:
    """The model inputs' `None` axes besides the batch (a sequence length, an image size), in input order:
    [{"input": "token_ids", "axes": [1], "shape": [None, None]}]; [] for a model without symbolic inputs."""
    inputs = getattr(model, "inputs", None) or []
    found = []
    for tensor in inputs:
        axes = [axis for axis, d in enumerate(tensor.shape) if axis > 0 and d is None]
        if axes:
            found.append({"input": str(tensor.name), "axes": axes, "shape": list(tensor.shape)})
    return found


def longest_accepted_length(model) -> int | None:
    """The longest sequence the model accepts, where a layer says (a keras-hub backbone's
    `max_sequence_length`, a PositionEmbedding's `sequence_length`); None when nothing says."""
    flatten = getattr(model, "_flatten_layers", None)
    layers = list(flatten(include_self=True, recursive=True)) if flatten else [model, *_all_layers(model)]
    limits = [getattr(layer, name) for layer in layers for name in ("max_sequence_length", "sequence_length")
              if isinstance(getattr(layer, name, None), int) and getattr(layer, name) > 0]
    return min(limits) if limits else None


def _resize_axis(array: np.ndarray, axis: int, length: int) -> np.ndarray:
    """`array` cut to `length` along `axis`, or tiled up to it."""
    size = array.shape[axis]
    if size >= length:
        return np.take(array, range(length), axis=axis)
    reps = [1] * array.ndim
    reps[axis] = math.ceil(length / max(1, size))
    return np.take(np.tile(array, reps), range(length), axis=axis)


def at_length(pool: SamplePool, model, length: int) -> SamplePool:
    """The pool with every dynamic input axis (dynamic_axes) at `length`: synthesized afresh when it was
    synthetic, else the data cut or tiled along those axes, and, for a model with per-token outputs, a label
    or weight leaf whose axis 1 had the inputs' old length with it."""
    if pool.kind == "synthetic":
        return synthesize(model, len(_leaves(pool.element)[0]), length=length)
    x, y, sample_weight = unpack(pool.element)
    pairs = _pair_with_inputs(x, model) or []
    old_lengths = set()
    resized = {}
    for name, tensor, array in pairs:
        new = array
        for axis, d in enumerate(tensor.shape):
            if axis > 0 and d is None and axis < array.ndim:
                old_lengths.add(array.shape[axis])
                new = _resize_axis(new, axis, length)
        resized[id(array)] = new
    x = _map(lambda a: resized.get(id(a), a), x)

    outputs = getattr(model, "outputs", None) or []
    # Labels follow the length only where an output has it too (per-token logits), never a one-hot row
    # that happens to be as long as the sequence.
    per_token = not outputs or any(len(t.shape) > 1 and t.shape[1] is None for t in outputs)

    def follow(array):
        if per_token and array.ndim >= 2 and array.shape[1] in old_lengths:
            return _resize_axis(array, 1, length)
        return array

    element = pack(x, _map(follow, y), _map(follow, sample_weight))
    if isinstance(pool.element, tuple) and not isinstance(element, tuple):
        element = (element,)
    return SamplePool(element, pool.kind, pool.host_bytes, pool.pipeline)


def synthesize(model, count: int, seed: int = 0, length: int | None = None) -> SamplePool:
    """Inputs from the model's input specs (by name for dict inputs), one label per head for its loss.
    A `None` axis besides the batch (inputs and labels alike) gets `length`, else 1."""
    structure = _input_structure(model)
    if structure is None:
        raise DataError(
            f"model {model.name!r} has no known input shape, so preflight cannot make inputs for it",
            hint="give real data (get_dataset(), dataset or train_data in model.py; data= in preflight.check), "
                 "or build the model with keras.Input",
        )
    rng = np.random.default_rng(seed)
    vocab = _smallest_vocabulary(model)
    fill = length or 1
    x = _map(lambda tensor: _random_array(tensor, count, rng, vocab, fill), structure)
    return SamplePool(pack(x, _labels(model, count, rng, fill)), "synthetic")


def _random_array(tensor, count: int, rng, vocab: int | None, fill: int = 1) -> np.ndarray:
    shape = (count,) + tuple(d if d is not None else fill for d in tensor.shape[1:])
    dtype = np.dtype(str(tensor.dtype)) if str(tensor.dtype) != "bfloat16" else np.float32
    if np.issubdtype(dtype, np.integer):
        # Integer inputs usually index an Embedding: stay inside the smallest vocabulary.
        return rng.integers(0, vocab or 2, size=shape).astype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(bool)
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


def _labels(model, count: int, rng, fill: int = 1):
    """y in the structure the compiled loss reads: None without a loss (a custom train_step, add_loss).

    Dict outputs get a dict with one label per head that has a loss (Keras rejects labels for the
    others); list outputs get a list with None where a head has none.
    """
    loss = getattr(model, "loss", None)
    if loss is None:
        return None
    try:
        outputs = model.output
    except (AttributeError, ValueError):
        outputs = model.outputs
    if isinstance(outputs, (list, tuple)) and len(outputs) == 1:
        outputs = outputs[0]
    if isinstance(outputs, dict):
        heads = list(outputs.items())
    elif isinstance(outputs, (list, tuple)):
        heads = list(zip(model.output_names, outputs))
    else:
        only = next(iter(loss.values())) if isinstance(loss, dict) else loss[0] if isinstance(loss, list) else loss
        return _label_for(outputs, only, count, rng, fill)
    labels = {name: _label_for(tensor, _head_loss(loss, name, index), count, rng, fill)
              for index, (name, tensor) in enumerate(heads)}
    if isinstance(outputs, dict):
        return {name: label for name, label in labels.items() if label is not None}
    return [labels[name] for name, _ in heads]


def _head_loss(loss, name: str, index: int):
    if isinstance(loss, dict):
        return loss.get(name)
    if isinstance(loss, list):
        return loss[index] if index < len(loss) else None
    return loss


def _loss_name(loss) -> str:
    """'sparse_categorical_crossentropy' for the string, the function, or the Loss object."""
    if isinstance(loss, str):
        return loss.lower()
    fn = getattr(loss, "fn", None)
    if fn is not None:
        return getattr(fn, "__name__", "").lower()
    name = getattr(loss, "name", None) or getattr(loss, "__name__", None) or type(loss).__name__
    return str(name).lower()


def _label_for(output, loss, count: int, rng, fill: int = 1) -> np.ndarray | None:
    if loss is None:
        return None
    name = _loss_name(loss)
    shape = tuple(d if d is not None else fill for d in output.shape[1:])
    classes = shape[-1] if shape else 1
    if "sparse" in name:
        return rng.integers(0, max(classes, 2), size=(count,) + shape[:-1]).astype(np.int32)
    if "categorical" in name:
        labels = rng.integers(0, classes, size=(count,) + shape[:-1])
        return np.eye(classes, dtype=np.float32)[labels]
    if "binary" in name or "hinge" in name:
        return rng.integers(0, 2, size=(count,) + shape).astype(np.float32)
    return rng.standard_normal((count,) + shape).astype(np.float32)
