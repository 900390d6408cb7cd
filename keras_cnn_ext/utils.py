"""Small helpers shared by every floor of the package (ops, layers, models, analysis).

Nothing here imports Keras layers or models: this module sits below `ops/`.
"""

from __future__ import annotations

import numbers

import numpy as np
import tensorflow as tf

DATA_FORMATS = ("channels_last", "channels_first")


def normalize_data_format(data_format, name="data_format"):
    """Returns `data_format`, or Keras' global image data format when it is `None`.

    Raises:
        ValueError: if the value is not `"channels_last"` or `"channels_first"`.
    """
    if data_format is None:
        import keras  # local: keeps ops importable without touching Keras config at import

        return keras.config.image_data_format()
    if not isinstance(data_format, str) or data_format.lower() not in DATA_FORMATS:
        raise ValueError(
            f"`{name}` must be one of {DATA_FORMATS} or None. Received: {data_format!r}"
        )
    return data_format.lower()


def normalize_tuple(value, n, name, *, minimum=None, allow_none=False):
    """Turns an int or an iterable of `n` ints into a tuple of `n` ints.

    Args:
        value: an int, or a tuple/list of `n` ints (or `None`s when `allow_none`).
        n: the length of the returned tuple.
        name: the argument's name, used in error messages.
        minimum: the smallest accepted value, or `None` for no bound.
        allow_none: whether `None` entries (meaning "keep the input size") are accepted.

    Raises:
        TypeError: if `value` is neither an int nor an iterable of ints.
        ValueError: if the length is not `n` or an entry is below `minimum`.
    """
    what = f"an integer or a tuple of {n} integers"
    if isinstance(value, (bool, str, bytes)):
        raise TypeError(f"`{name}` must be {what}. Received: {value!r} of type {type(value)}")
    if isinstance(value, numbers.Integral):
        values = (int(value),) * n
    else:
        try:
            values = tuple(value)
        except TypeError:
            raise TypeError(
                f"`{name}` must be {what}. Received: {value!r} of type {type(value)}"
            ) from None
        if len(values) != n:
            raise ValueError(f"`{name}` must be {what}. Received: {value!r}")
        checked = []
        for v in values:
            if v is None and allow_none:
                checked.append(None)
            elif isinstance(v, numbers.Integral) and not isinstance(v, bool):
                checked.append(int(v))
            else:
                raise TypeError(
                    f"`{name}` must be {what}. Received: {value!r} with entry {v!r} of type {type(v)}"
                )
        values = tuple(checked)
    if minimum is not None and any(v is not None and v < minimum for v in values):
        raise ValueError(f"`{name}` entries must be >= {minimum}. Received: {value!r}")
    return values


def normalize_float_tuple(value, n, name):
    """Turns a number or an iterable of `n` numbers into a tuple of `n` Python floats."""
    what = f"a number or a tuple of {n} numbers"
    if isinstance(value, (bool, str, bytes)):
        raise TypeError(f"`{name}` must be {what}. Received: {value!r}")
    if isinstance(value, numbers.Real):
        return (float(value),) * n
    try:
        values = tuple(value)
    except TypeError:
        raise TypeError(
            f"`{name}` must be {what}. Received: {value!r} of type {type(value)}"
        ) from None
    if len(values) != n or not all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values
    ):
        raise ValueError(f"`{name}` must be {what}. Received: {value!r}")
    return tuple(float(v) for v in values)


def make_divisible(value, divisor=8, min_value=None, round_limit=0.9):
    """Rounds a channel count to the nearest multiple of `divisor` (timm/TF Model Garden rule).

    The result is at least `min_value` (default `divisor`) and never drops more than
    `1 - round_limit` below `value`: if rounding down loses more than 10%, one `divisor` is added.
    """
    if divisor <= 0:
        raise ValueError(f"`divisor` must be a positive integer. Received: {divisor!r}")
    min_value = divisor if min_value is None else min_value
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < round_limit * value:
        new_value += divisor
    return new_value


def _received(name, value):
    return f"Received: {name}={value!r} of type {type(value).__name__}"


def check_int(value, name, *, minimum=None, allow_none=False):
    """Returns `value` as a Python int.

    Args:
        value: the argument's value; Python and NumPy integers are accepted, bools are not.
        name: the argument's name, used in error messages.
        minimum: the smallest accepted value, or `None` for no bound.
        allow_none: whether `None` is accepted (and returned).

    Raises:
        TypeError: if `value` is not an integer.
        ValueError: if `value` is below `minimum`.
    """
    if value is None and allow_none:
        return None
    what = "an integer" if minimum is None else f"an integer >= {minimum}"
    if allow_none:
        what = f"None or {what}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be {what}. {_received(name, value)}")
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be {what}. Received: {name}={value!r}")
    return int(value)


def check_positive_int(value, name, minimum=1):
    """Returns `value` as an int >= `minimum` (default 1); see `check_int`."""
    return check_int(value, name, minimum=minimum)


def _interval(low, high, low_inclusive, high_inclusive):
    left = "[" if low_inclusive and low is not None else "("
    right = "]" if high_inclusive and high is not None else ")"
    return f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"


def check_number(
    value,
    name,
    *,
    minimum=None,
    maximum=None,
    min_inclusive=True,
    max_inclusive=True,
    what="a number",
):
    """Returns `value` as a Python float, checked against an interval.

    Args:
        value: the argument's value; any real number but a bool.
        name: the argument's name, used in error messages.
        minimum, maximum: the bounds, or `None` for none.
        min_inclusive, max_inclusive: whether each bound is accepted.
        what: how the message names the accepted values (e.g. `"a float"`).

    Raises:
        TypeError: if `value` is not a real number.
        ValueError: if `value` is outside the interval, or NaN.
    """
    bounded = minimum is not None or maximum is not None
    interval = _interval(minimum, maximum, min_inclusive, max_inclusive)
    accepted = f"{what} in {interval}" if bounded else what
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be {accepted}. {_received(name, value)}")
    value = float(value)
    ok = value == value  # NaN fails every comparison
    if minimum is not None:
        ok = ok and (value >= minimum if min_inclusive else value > minimum)
    if maximum is not None:
        ok = ok and (value <= maximum if max_inclusive else value < maximum)
    if not ok:
        raise ValueError(f"`{name}` must be {accepted}. Received: {name}={value!r}")
    return value


def check_rate(rate, name="rate", *, upper_inclusive=False):
    """Validates a probability-like rate in [0, 1) (or [0, 1] when `upper_inclusive`)."""
    return check_number(
        rate, name, minimum=0, maximum=1, max_inclusive=upper_inclusive, what="a float"
    )


def check_choice(value, name, accepted):
    """Returns `value` if it is one of `accepted`, else a ValueError naming the argument."""
    try:
        ok = value in accepted
    except TypeError:  # an unhashable value tested against a set or dict
        ok = False
    if not ok:
        raise ValueError(f"`{name}` must be one of {tuple(accepted)}. Received: {name}={value!r}")
    return value


def check_bool(value, name):
    """Returns `value` as a Python bool; a TypeError unless it is a Python or NumPy bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be a bool. {_received(name, value)}")
    return bool(value)


def check_seed(seed, name="seed"):
    """Validates a user seed: `None` or a non-negative int."""
    return check_int(seed, name, minimum=0, allow_none=True)


def check_channels(input_shape, data_format, layer_name):
    """Returns the static channel count of a rank-4 input shape; ValueError when unknown."""
    shape = check_input_rank(input_shape, 4)
    channels = shape[-1] if data_format == "channels_last" else shape[1]
    if channels is None:
        raise ValueError(
            f"`{layer_name}` needs a known channel dimension ({data_format}). "
            f"Received input shape: {shape}"
        )
    return int(channels)


def check_input_rank(input_shape, rank, name="inputs"):
    """Raises a ValueError unless `input_shape` has `rank` dimensions."""
    shape = tuple(input_shape)
    if len(shape) != rank:
        raise ValueError(
            f"`{name}` must be a rank-{rank} tensor (batch, height, width, channels or "
            f"batch, channels, height, width). Received shape: {shape}"
        )
    return shape


def check_float_dtype(dtype, name="inputs"):
    """Raises a TypeError unless `dtype` is a floating-point dtype."""
    dtype = tf.as_dtype(dtype)
    if not dtype.is_floating:
        raise TypeError(
            f"`{name}` must have a floating-point dtype (float16, bfloat16, float32, float64). "
            f"Received: {dtype.name}"
        )
    return dtype


def replica_seed(seed):
    """Folds the replica id into a `(2,)` stateless seed so replicas draw different masks.

    Keras' `SeedGenerator` state is mirrored: under `tf.distribute` every replica (and every
    worker) would draw the same random numbers. `replica_id_in_sync_group` is unique across
    workers, so folding it in gives each replica its own stream and stays reproducible.
    Returns an int32 seed for `tf.random.stateless_*`; works under XLA.
    """
    seed = tf.cast(seed, tf.int64)
    context = tf.distribute.get_replica_context()
    replica_id = 0 if context is None else context.replica_id_in_sync_group
    return tf.random.experimental.stateless_fold_in(seed, tf.cast(replica_id, tf.int32))


# Algorithm for `tf.random.stateless_*`. Under `jit_compile=True` on CPU, "auto_select" took
# 16 s for 6.4M uniforms (32x56x56x64) against 0.24 s with Philox named explicitly (TF 2.21).
# (XLA's Philox stream is not bit-identical to the TF kernel's: same seed, different masks.)
STATELESS_RNG_ALG = "philox"


def in_xla_context():
    """Whether the op being traced will be compiled by XLA (`tf.function(jit_compile=True)`).

    Ops use it to pick between formulations that are exact in both cases but fast in only one
    (TF's CPU kernels against XLA's fusions). TF exposes this only privately; if that moves, the
    answer is `False`, which costs speed under XLA, never correctness.
    """
    try:
        from tensorflow.python.ops import control_flow_util

        return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))
    except (ImportError, AttributeError):  # pragma: no cover - a TF that moved the helper
        return False
