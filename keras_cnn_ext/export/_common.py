"""What the TFLite and ONNX exporters share: argument checks, tracing, sample data, atomic files."""

from __future__ import annotations

import contextlib
import copy
import numbers
import os
import re

import keras
import numpy as np
import tensorflow as tf

from keras_cnn_ext.atomic import atomic_path

# Op types the TF fake-quant functions trace to. A graph holding one is a quantization-aware model:
# the converter reads its ranges instead of calibrating (TFMOT's QAT models export the same way).
FAKE_QUANT_OPS = frozenset(
    {"FakeQuantWithMinMaxVars", "FakeQuantWithMinMaxVarsPerChannel", "FakeQuantWithMinMaxArgs"}
)

_REDUCED_PRECISION = ("float16", "bfloat16", "mixed_float16", "mixed_bfloat16")


def require(*modules):
    """Imports optional export dependencies, or raises an ImportError naming the extra."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise ImportError(
                f"Export needs `{name}`, which is not installed. Install the export extra: "
                "pip install 'keras-cnn-ext[export]' (tf2onnx, onnx, onnxruntime, ai-edge-litert)."
            ) from error


# --- files ---------------------------------------------------------------------------------------


def check_output_path(path, name="path"):
    """Validates an output file path before any work: a string or path-like in an existing folder.

    Returns the absolute path as a string.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`{name}` must be a file path (str or os.PathLike). Received: {path!r}")
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        raise ValueError(f"`{name}` must be a file path, not a folder. Received: {path!r}")
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise ValueError(
            f"The folder of `{name}` does not exist: {folder!r}. Create it first; export never "
            f"creates folders. Received: {path!r}"
        )
    return path


@contextlib.contextmanager
def atomic_file(path, data):
    """Writes `data` to a temporary file beside `path` and yields the temporary path.

    Built on `keras_cnn_ext.atomic.atomic_path`: when the `with` body (the verification) finishes
    without an exception the temporary file replaces `path` in one rename; otherwise it is
    deleted, and an existing file at `path` survives untouched.
    """
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        yield tmp


# --- the model's inputs and graph ----------------------------------------------------------------


def input_specs(model, input_signature=None):
    """The model's input `tf.TensorSpec`s, batch dimension `None`.

    Functional and Sequential models give them; a subclassed model has no graph to read them from,
    so it needs `input_signature`.
    """
    if input_signature is not None:
        specs = input_signature if isinstance(input_signature, (list, tuple)) else [input_signature]
        for spec in specs:
            if not isinstance(spec, tf.TensorSpec):
                raise TypeError(
                    "`input_signature` must be a tf.TensorSpec or a list of them. "
                    f"Received: {input_signature!r}"
                )
        return [tf.TensorSpec([None, *spec.shape[1:]], spec.dtype, spec.name) for spec in specs]
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: {model!r} of type {type(model)}")
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise ValueError(
            f"The model {model.name!r} ({type(model).__name__}) has no graph of Keras inputs to "
            "export: it is a subclassed model, or a Sequential model without an Input. Build it "
            "from `keras.Input` (Functional or Sequential), or pass "
            "`input_signature=tf.TensorSpec((None, ...), 'float32')`."
        )
    return [
        tf.TensorSpec([None, *x.shape[1:]], tf.as_dtype(x.dtype), name=f"input_{i}")
        for i, x in enumerate(inputs)
    ]


def call_on(model, inputs):
    """Calls `model` in inference mode on a list of inputs, one tensor when it has one input."""
    return model(inputs[0] if len(inputs) == 1 else list(inputs), training=False)


def flat_outputs(outputs):
    """A Keras model's outputs (tensor, list or dict) as a list of numpy arrays."""
    return [np.asarray(o) for o in tf.nest.flatten(outputs)]


def inference_function(model, specs):
    """A `tf.function` calling `model` in inference mode, traced for `specs`."""

    @tf.function(input_signature=specs, autograph=False)
    def serve(*inputs):
        return call_on(model, inputs)

    return serve


def graph_op_types(concrete_function):
    """`(op type, op name)` of every op in a traced graph, nested function bodies included."""
    graph_def = concrete_function.graph.as_graph_def()
    nodes = [(n.op, n.name) for n in graph_def.node]
    for function in graph_def.library.function:
        nodes.extend((n.op, n.name) for n in function.node_def)
    return nodes


def is_qat_graph(nodes):
    """Whether the traced graph holds fake-quant ops (a quantization-aware trained model)."""
    return any(op in FAKE_QUANT_OPS for op, _ in nodes)


def layer_names(model):
    """Every layer name in `model`, nested models' layers included."""
    names = set()
    for layer in model._flatten_layers(include_self=False, recursive=True):
        names.add(layer.name)
    return names


def layer_of_op(op_name, names):
    """The innermost Keras layer whose name scope holds the op named `op_name` (or `None`).

    Keras names the ops a layer creates under the layer's name; TF may append `_1`, `_2`, ... to
    a scope that was opened before (e.g. when the model was traced more than once).
    """
    found = None
    for part in op_name.split("/"):
        if part in names:
            found = part
            continue
        stripped = re.sub(r"_\d+$", "", part)
        if stripped in names:
            found = stripped
    return found


# --- mixed precision -----------------------------------------------------------------------------


def _float32_config(config):
    """A copy of a serialized model config with every reduced-precision dtype policy set to float32."""
    if isinstance(config, dict):
        if config.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
            name = config.get("config", {}).get("name")
            if name in _REDUCED_PRECISION:
                config = copy.deepcopy(config)
                config["config"]["name"] = "float32"
                return config
        return {k: _float32_config(v) for k, v in config.items()}
    if isinstance(config, list):
        return [_float32_config(v) for v in config]
    return config


def uses_reduced_precision(model):
    """Whether any layer of `model` computes in float16 or bfloat16 (e.g. a `mixed_float16` model)."""
    return any(
        getattr(layer, "compute_dtype", "float32") in ("float16", "bfloat16")
        for layer in model._flatten_layers(include_self=True, recursive=True)
    )


def float32_model(model):
    """Returns `model`, or a float32 copy with the same weights when it computes in (b)float16.

    TFLite's builtin kernels have no float16 convolution: traced as is, a `mixed_float16` model
    needs Flex ops (`FlexConv2D`) that the LiteRT interpreter does not ship. A mixed-precision
    model keeps float32 variables, so a float32 rebuild from its config takes them unchanged.
    """
    if not uses_reduced_precision(model):
        return model
    try:
        config = _float32_config(keras.saving.serialize_keras_object(model))
        clone = keras.saving.deserialize_keras_object(config)
        clone.set_weights(model.get_weights())
    except Exception as error:
        raise ValueError(
            f"The model {model.name!r} computes in reduced precision and could not be rebuilt in "
            f"float32 for export ({type(error).__name__}: {error}). Register its custom layers "
            "with `keras.saving.register_keras_serializable`, or rebuild it under the float32 "
            "dtype policy and copy the weights."
        ) from error
    return clone


# --- sample and calibration data -----------------------------------------------------------------


def _spec_text(specs):
    return ", ".join(f"(shape={tuple(s.shape)}, dtype={s.dtype.name})" for s in specs)


def check_batch(arrays, specs, name):
    """Checks one batch (a list of arrays, one per input) against `specs`; returns it cast.

    Any floating dtype is accepted for a floating input and cast to it; anything else must match.
    """
    if len(arrays) != len(specs):
        raise ValueError(
            f"`{name}` must give {len(specs)} input array(s) per element, matching the model's "
            f"inputs {_spec_text(specs)}. Received {len(arrays)}."
        )
    checked = []
    for array, spec in zip(arrays, specs, strict=True):
        array = np.asarray(array)
        expected = tuple(spec.shape)
        shape_ok = array.ndim == len(expected) and all(
            e is None or e == a for e, a in zip(expected, array.shape, strict=True)
        )
        dtype = tf.as_dtype(spec.dtype)
        if dtype.is_floating:
            dtype_ok = np.issubdtype(array.dtype, np.floating)
        else:
            dtype_ok = array.dtype == dtype.as_numpy_dtype
        if not (shape_ok and dtype_ok):
            raise ValueError(
                f"`{name}` does not match the model's input spec: expected batches of "
                f"{_spec_text(specs)} (the first dimension is the batch). Received an array of "
                f"shape={array.shape}, dtype={array.dtype}."
            )
        checked.append(array.astype(dtype.as_numpy_dtype, copy=False))
    return checked


def _as_list(element):
    if isinstance(element, dict):
        raise TypeError("Dict elements are not supported; give arrays in the model's input order.")
    if isinstance(element, (list, tuple)):
        return list(element)
    return [element]


def iter_batches(data, specs, name, limit):
    """Yields at most `limit` samples of `data` as checked batches (lists of arrays, one per input).

    `data` is an array (for a multi-input model, a list of arrays, one per input) whose first
    axis indexes samples, a `tf.data.Dataset` of batches (an `(x, y)` dataset as given to `fit`
    uses its `x`), a list of batches, or a generator / callable returning an iterable of batches.
    """
    per_input = (
        len(specs) > 1
        and isinstance(data, (list, tuple))
        and len(data) == len(specs)
        and all(isinstance(a, np.ndarray) for a in data)
    )
    if isinstance(data, np.ndarray) or per_input:
        arrays = check_batch(_as_list(data), specs, name)
        count = min(limit, len(arrays[0]))
        for i in range(count):
            yield [a[i : i + 1] for a in arrays]
        return
    if isinstance(data, tf.data.Dataset):
        iterable = data.as_numpy_iterator()
        take_x = isinstance(data.element_spec, tuple) and len(data.element_spec) in (2, 3)
    elif callable(data):
        iterable, take_x = data(), False
    elif hasattr(data, "__iter__"):
        iterable, take_x = data, False
    else:
        raise TypeError(
            f"`{name}` must be a numpy array, a list of arrays, a tf.data.Dataset, or a generator "
            f"(or a callable returning one). Received: {data!r} of type {type(data)}"
        )
    seen = 0
    for element in iterable:
        if take_x and len(specs) == 1:
            element = element[0]
        batch = check_batch(_as_list(element), specs, name)
        for i in range(len(batch[0])):
            if seen >= limit:
                return
            yield [a[i : i + 1] for a in batch]
            seen += 1


def collect_samples(data, specs, name, limit):
    """Up to `limit` samples of `data` stacked into one batch per input."""
    batches = list(iter_batches(data, specs, name, limit))
    if not batches:
        raise ValueError(f"`{name}` gave no samples.")
    return [np.concatenate(parts) for parts in zip(*batches, strict=True)]


def random_samples(specs, num_samples, input_range, seed=0):
    """Uniform random inputs in `input_range` for every input spec."""
    low, high = check_range(input_range)
    rng = np.random.default_rng(seed)
    samples = []
    for spec in specs:
        shape = [num_samples, *spec.shape[1:]]
        if any(d is None for d in shape):
            raise ValueError(
                f"The model input {spec} has unknown dimensions besides the batch: pass "
                "`sample_data` to verify it."
            )
        values = rng.uniform(low, high, size=shape)
        samples.append(values.astype(tf.as_dtype(spec.dtype).as_numpy_dtype))
    return samples


def check_range(input_range, name="input_range"):
    try:
        low, high = (float(v) for v in input_range)
    except (TypeError, ValueError):
        raise TypeError(
            f"`{name}` must be a (low, high) pair of numbers. Received: {input_range!r}"
        ) from None
    if not low < high:
        raise ValueError(f"`{name}` must satisfy low < high. Received: {input_range!r}")
    return low, high


def check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer. Received: {value!r}")
    return int(value)


def check_choice(value, choices, name):
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}. Received: {value!r}")
    return value
