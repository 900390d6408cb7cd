"""Fractional max pooling (Graham, 2014) with TensorFlow's semantics, XLA-safe and exportable.

TensorFlow's `tf.nn.fractional_max_pool` has CPU kernels only, cannot be compiled with XLA and does
not convert to TFLite or ONNX. This op computes the same thing from `tf.gather` and `tf.maximum`:

* the pooling sequences follow `tensorflow/core/kernels/fractional_pool_common.cc` (output length
  `floor(N / ratio)` in float32, pseudo-random `a_i = ceil(alpha * (i + u))` with TF's bound on
  `u`, or a random permutation of `k`/`k + 1` steps), one pair of sequences per call shared by the
  whole batch and all channels, returned like TF's and accepted back so a user can reuse them;
* the max over a rectangle is separable: first along the width (each column window), then along
  the height. Along one axis a window has at most `k + 2` elements, so the max is a short chain of
  `tf.maximum` over `tf.gather`s of the window's `t`-th element (clamped to the window's end);
* the gradient (a `tf.custom_gradient`) routes each output's gradient to the first maximum of its
  window in row-major order, as TF's `FractionalMaxPoolGrad` does, summing where overlapping
  windows share an input, in TF's order so the float sums are bit-identical. It first computes
  each window's argmax code (`h * width + w`), then gathers, for every input, the codes and
  gradients of the at most 2 x 2 windows holding it: no scatter. Given the same sequences,
  output and gradient equal TF's exactly.

The gradient, and the forward pass when the sequences are drawn in the graph (training), run as
XLA-compiled functions even inside a plain `tf.function` (Keras' default on CPU): each is one or
two fused loops there, whereas the unfused graph of gathers writes several intermediates the size
of the input. When the sequences are known at trace time (the layer at inference), the forward
pass is emitted as plain ops so that TFLite and ONNX converters see only `Gather`/`Maximum` with
constant indices.
"""

from __future__ import annotations

import dataclasses
import math
import typing

import numpy as np
import tensorflow as tf

from keras_cnn_ext.ops._compiled import compiled
from keras_cnn_ext.ops._window_gradient import along, materialize, route_to_first_max
from keras_cnn_ext.utils import (
    check_float_dtype,
    check_input_rank,
    in_xla_context,
    normalize_data_format,
    normalize_float_tuple,
)

# TF's stateless generators draw different numbers under XLA than in its CPU kernels (even with
# an explicit algorithm), while the layer relies on eager, graph and XLA runs drawing the same
# fixed inference regions; `_uniform` below is a small counter-based hash that is bit-identical
# everywhere. `stateless_split` itself agrees across them and is kept for seed derivation.
_ALG = "philox"
_MASK = 0xFFFFFFFF

__all__ = [
    "fractional_max_pool2d",
    "fractional_output_size",
    "fractional_pooling_sequence",
]


# --- sizes and sequences -------------------------------------------------------------------------


def fractional_output_size(input_size, pooling_ratio):
    """Returns `floor(input_size / pooling_ratio)` computed in float32, as TensorFlow does.

    TF's kernel and shape function divide an int32 size by the float32 ratio, so e.g.
    `fractional_output_size(3, 1.5)` is 2 and borderline ratios round like TF's.

    Args:
        input_size: a Python int (or `None`, returned as `None`) or an integer tensor.
        pooling_ratio: a Python float > 1.
    """
    if input_size is None:
        return None
    ratio = np.float32(pooling_ratio)
    if isinstance(input_size, (int, np.integer)):
        return int(math.floor(np.float32(input_size) / ratio))
    size = tf.cast(input_size, tf.float32) / tf.constant(ratio, tf.float32)
    return tf.cast(tf.floor(size), tf.int32)


def _max_step(pooling_ratio):
    """Upper bound on a sequence step `k + 1` for any input length, from the ratio alone.

    `alpha = N / floor(N / r) < 2r` for every `N >= r` (float32 rounding only makes the divisor
    larger), so `k = floor(alpha) <= ceil(2r) - 1`; TF's rules give steps in `[k - 1, k + 1]`.
    """
    return int(math.ceil(2.0 * float(np.float32(pooling_ratio))))


def _ceil_div_exact(numerator_int, v, denominator):
    """`ceil((numerator_int + v) / denominator)` for int32 tensors and a float32 `v >= 0`.

    The float division is only an estimate; two integer comparisons against `v` make the result
    exact for that float32 `v`, so the sequence never breaks TF's step bounds through rounding.
    """
    n_f = tf.cast(denominator, tf.float32)
    c = tf.cast(tf.math.ceil((tf.cast(numerator_int, tf.float32) + v) / n_f), tf.int32)
    too_big = tf.cast((c - 1) * denominator - numerator_int, tf.float32) >= v
    c = tf.where(too_big, c - 1, c)
    too_small = tf.cast(c * denominator - numerator_int, tf.float32) < v
    return tf.where(too_small, c + 1, c)


def _uniform(seed, count):
    """`count` floats uniform in [0, 1) from a `(2,)` int seed: a stateless counter-based hash.

    The `lowbias32` integer finaliser (Wellons) over `(seed, counter)`, in int64 arithmetic
    masked to 32 bits so that every backend (CPU kernels, XLA on CPU/GPU/TPU) computes the same
    bits.
    """
    seed = tf.cast(seed, tf.int64) & _MASK
    state = (tf.range(count, dtype=tf.int64) * 0x9E3779B1 + seed[0] * 0x85EBCA77) & _MASK
    state = (state ^ seed[1]) & _MASK
    for shift, factor in ((16, 0x7FEB352D), (15, 0x846CA68B)):
        state = ((state ^ tf.bitwise.right_shift(state, shift)) * factor) & _MASK
    state = state ^ tf.bitwise.right_shift(state, 16)
    return tf.cast(tf.bitwise.right_shift(state, 8), tf.float32) * (1.0 / (1 << 24))


def fractional_pooling_sequence(input_size, output_size, seed, pseudo_random=True):
    """Draws one pooling sequence with TensorFlow's rules, in the graph, from a stateless seed.

    Returns the `output_size + 1` boundaries `0 = s_0 < s_1 < ... < s_n = input_size` (int64), as
    `tf.nn.fractional_max_pool` returns them. With `alpha = N / n` and `k = floor(alpha)`:

    * pseudo-random: `s_i = ceil(alpha * (i + u)) - 1` for `0 < i < n`, `u` uniform in
      `[0, min((k + 2) / alpha - 1, (N + 1 - k) / alpha - (n - 1)))` (TF's bound keeping every
      step in `[k - 1, k + 1]`);
    * random: `N mod n` steps of `k + 1` and the rest `k`, in a uniformly random order.

    The random numbers are not TensorFlow's (TF's kernel uses its own Philox stream), but the
    distribution and the rules are; they are the same in eager, graph and XLA runs. Works under XLA and with sizes known only at run time.

    Args:
        input_size: int or int32 scalar tensor `N >= 1`.
        output_size: int or int32 scalar tensor `1 <= n <= N`.
        seed: a `(2,)` integer tensor for `tf.random.stateless_*`.
        pseudo_random: pseudo-random (default) or random sequence.
    """
    big_n = tf.cast(input_size, tf.int32)
    # Clamped so that a zero output size (already rejected where sizes are static) cannot divide
    # by zero at run time; the asserts in the op report it where assertions run.
    n = tf.maximum(tf.cast(output_size, tf.int32), 1)
    k = big_n // n
    seed = tf.cast(seed, tf.int32)
    if pseudo_random:
        # Work with v = u * N: both bounds on u times N are integers, so only v is a float.
        v_max = tf.minimum((k + 2) * n - big_n, (big_n + 1 - k) * n - (n - 1) * big_n)
        v = _uniform(seed, 1)[0] * tf.cast(v_max, tf.float32)
        i = tf.range(1, n, dtype=tf.int32)
        # ceil(alpha * (i + u)) = ceil((N * i + v) / n) = q + ceil((r + v) / n), N * i = q * n + r.
        q = (big_n * i) // n
        r = (big_n * i) - q * n
        inner = q + _ceil_div_exact(r, v, n) - 1
        sequence = tf.concat([[0], inner, [big_n]], axis=0)
    else:
        keys = _uniform(seed, n)
        ranks = tf.argsort(tf.argsort(keys, stable=True), stable=True)
        steps = k + tf.cast(ranks < big_n - k * n, tf.int32)
        sequence = tf.concat([[0], tf.cumsum(steps)], axis=0)
    return tf.cast(sequence, tf.int64)


def _seed_pair(seed):
    """Two independent `(2,)` int32 seeds (rows, columns) from `seed` (None, int or tensor)."""
    if seed is None:
        seed = tf.random.uniform([2], 0, 2**31 - 1, dtype=tf.int32)
    elif isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        seed = tf.constant([int(seed), 0], tf.int32)
    seed = tf.cast(seed, tf.int32)
    seeds = tf.random.experimental.stateless_split(seed, 2, alg=_ALG)
    return seeds[0], seeds[1]


# --- the pooling ---------------------------------------------------------------------------------


def _static_sequence(sequence):
    """The sequence as a NumPy int64 vector when it is known at trace time, else `None`."""
    if sequence is None:
        return None
    if isinstance(sequence, (list, tuple, np.ndarray)):
        return np.asarray(sequence, dtype=np.int64)
    value = tf.get_static_value(sequence)
    return None if value is None else np.asarray(value, dtype=np.int64)


def _check_static_sequence(seq, input_size, output_size, name, overlapping):
    """Validates a user sequence known at trace time; returns its largest window length."""
    if seq.ndim != 1:
        raise ValueError(f"`{name}` must be a 1-D sequence of ints. Received shape {seq.shape}")
    if output_size is not None and seq.shape[0] != output_size + 1:
        raise ValueError(
            f"`{name}` must have output size + 1 = {output_size + 1} entries (the output size "
            f"is floor(input size / pooling_ratio)). Received {seq.shape[0]} entries: {seq.tolist()}"
        )
    if seq.shape[0] < 2 or seq[0] != 0 or np.any(np.diff(seq) < 1):
        raise ValueError(
            f"`{name}` must start at 0 and strictly increase (as returned by "
            f"`tf.nn.fractional_max_pool`). Received: {seq.tolist()}"
        )
    if input_size is not None and seq[-1] != input_size:
        raise ValueError(
            f"`{name}` must end at the input size {input_size}. Received: {seq.tolist()}"
        )
    return int(np.max(np.diff(seq))) + int(overlapping)


def _windows(sequence, input_size, overlapping, max_len):
    """Index vectors of one axis: the `t`-th element of every window, clamped to its end.

    Window `i` is `[s_i, s_{i+1} - 1]`, or `[s_i, s_{i+1}]` when overlapping, cut at the input's
    end (TF's `min(end, N - 1)`). Out-of-range user values are clamped so a gather never fails.
    Returns `(indices, start)`.
    """
    seq = tf.cast(sequence, tf.int32)
    last = tf.cast(input_size, tf.int32) - 1
    start = tf.clip_by_value(seq[:-1], 0, tf.maximum(last, 0))
    end = tf.minimum(seq[1:] - 1 + int(overlapping), last)
    end = tf.clip_by_value(end, start, start + (max_len - 1))
    indices = [tf.minimum(start + t, end) for t in range(max_len)]
    return indices, start


def _stage_forward(x, indices, axis):
    y = tf.gather(x, indices[0], axis=axis)
    for index in indices[1:]:
        y = tf.maximum(y, tf.gather(x, index, axis=axis))
    return y


class _Geometry(typing.NamedTuple):
    """The static facts of the windows, besides the tensors (hashable: part of a trace's key).

    `max_rows`/`max_cols` bound the window length along the height/width (how many offsets the
    gathers take); `h_axis` is 1 (NHWC) or 2 (NCHW).
    """

    overlapping: bool
    h_axis: int
    max_rows: int
    max_cols: int


def _pool_forward(x, row_seq, col_seq, geometry):
    h_axis, w_axis = geometry.h_axis, geometry.h_axis + 1
    cols, _ = _windows(col_seq, tf.shape(x)[w_axis], geometry.overlapping, geometry.max_cols)
    rows, _ = _windows(row_seq, tf.shape(x)[h_axis], geometry.overlapping, geometry.max_rows)
    return _stage_forward(_stage_forward(x, cols, w_axis), rows, h_axis)


def _first_max_code(x, z, row_seq, col_seq, geometry):
    """`h * width + w` of the first maximum of every window in row-major order (TF's argmax).

    TF scans a window row by row and replaces its candidate only on a strictly larger value, so
    its argmax is the first match in row-major order: scanning the offsets backwards and keeping
    every match leaves that one. Offsets clamped past a window's end repeat its last row/column,
    which comes earlier in that order, so they never win.
    """
    h_axis, w_axis = geometry.h_axis, geometry.h_axis + 1
    width = tf.shape(x)[w_axis]
    cols, _ = _windows(col_seq, width, geometry.overlapping, geometry.max_cols)
    rows, _ = _windows(row_seq, tf.shape(x)[h_axis], geometry.overlapping, geometry.max_rows)
    if z is None:  # the maxima, pooled in the other order than the forward so XLA keeps both
        z = _stage_forward(_stage_forward(x, rows, h_axis), cols, w_axis)
    code = None
    for row in reversed(rows):
        x_rows = tf.gather(x, row, axis=h_axis)
        for col in reversed(cols):
            candidate = along(row, h_axis) * width + along(col, w_axis)
            if code is None:
                code = tf.broadcast_to(candidate, tf.shape(z))
            else:
                code = tf.where(tf.gather(x_rows, col, axis=w_axis) == z, candidate, code)
    return materialize(code)


def _route_gradient(x, code, grad_z, row_seq, col_seq, geometry):
    """Sends every output gradient to its window's first maximum (`route_to_first_max`)."""
    h_axis, overlapping = geometry.h_axis, geometry.overlapping
    _, row_start = _windows(row_seq, tf.shape(x)[h_axis], overlapping, 1)
    _, col_start = _windows(col_seq, tf.shape(x)[h_axis + 1], overlapping, 1)
    return route_to_first_max(x, code, grad_z, row_start, col_start, overlapping, h_axis)


# Traced once per geometry and dtype, shapes relaxed after the first: eager calls on many
# shapes neither retrace per shape nor log TF's retracing warning.
_pool_forward_xla = compiled(_pool_forward)
_first_max_code_xla = compiled(_first_max_code)
_route_gradient_xla = compiled(_route_gradient)


def _pool(x, row_seq, col_seq, geometry, compile_forward):
    forward = _pool_forward_xla if compile_forward else _pool_forward

    @tf.custom_gradient
    def pool(inputs):
        output = forward(inputs, row_seq, col_seq, geometry)

        def grad(upstream):
            # Always compiled: a gradient never reaches an exporter, and XLA runs each of these
            # as a single fused loop.
            # Under an outer XLA compilation the search recomputes the maxima: reading the
            # forward's output there makes XLA materialise the forward's gathers in a transposed
            # layout (3x slower fwd+bwd when the output is also used, as in any model).
            known = None if in_xla_context() else output
            code = _first_max_code_xla(inputs, known, row_seq, col_seq, geometry)
            return _route_gradient_xla(inputs, code, upstream, row_seq, col_seq, geometry)

        return output, grad

    return pool(x)


@dataclasses.dataclass(frozen=True)
class _Axis:
    """One pooled axis: its sizes, ratio, the user's sequence (or `None`) and its seed."""

    name: str  # the sequence's argument name, for messages
    given: object
    size: tf.Tensor  # the size at run time
    static_size: int | None
    output_size: tf.Tensor
    ratio: float
    seed: tf.Tensor | None


class _Sequence(typing.NamedTuple):
    values: tf.Tensor  # int64 boundaries
    max_len: int  # longest window
    static: bool  # known at trace time
    asserts: list


def _resolve_sequence(axis, pseudo_random, overlapping):
    """The `_Sequence` of one `_Axis`: the user's, checked, or one drawn in the graph."""
    name = axis.name
    static_seq = _static_sequence(axis.given)
    static_out = fractional_output_size(axis.static_size, axis.ratio)
    if static_seq is not None:
        max_len = _check_static_sequence(
            static_seq, axis.static_size, static_out, name, overlapping
        )
        return _Sequence(tf.constant(static_seq, tf.int64), max_len, True, [])
    if axis.static_size is not None:
        bound = axis.static_size // static_out
    else:
        bound = _max_step(axis.ratio) - 1
    max_len = bound + 1 + int(overlapping)
    if axis.given is None:
        values = fractional_pooling_sequence(axis.size, axis.output_size, axis.seed, pseudo_random)
        return _Sequence(values, max_len, False, [])
    given = tf.cast(tf.convert_to_tensor(axis.given), tf.int64)
    if given.shape.rank not in (None, 1):
        raise ValueError(f"`{name}` must be a 1-D sequence of ints. Received shape {given.shape}")
    steps = given[1:] - given[:-1]
    asserts = [
        tf.debugging.assert_equal(
            given[0], tf.constant(0, tf.int64), message=f"`{name}` must start at 0"
        ),
        tf.debugging.assert_equal(
            given[-1], tf.cast(axis.size, tf.int64), message=f"`{name}` must end at the input size"
        ),
        tf.debugging.assert_positive(steps, message=f"`{name}` must strictly increase"),
        tf.debugging.assert_less_equal(
            steps,
            tf.constant(max_len - int(overlapping), tf.int64),
            message=f"`{name}` has a step longer than TF's rules allow for this pooling_ratio "
            f"(at most {max_len - int(overlapping)})",
        ),
    ]
    return _Sequence(given, max_len, False, asserts)


def fractional_max_pool2d(
    x,
    pooling_ratio,
    pseudo_random=True,
    overlapping=False,
    seed=None,
    row_pooling_sequence=None,
    col_pooling_sequence=None,
    data_format="channels_last",
):
    """Fractional max pooling over height and width, with `tf.nn.fractional_max_pool` semantics.

    Graham, "Fractional Max-Pooling" (2014): the input is divided into `floor(N / ratio)` windows
    per axis whose sizes vary between `k` and `k + 1` (`k = floor(N / n)`), so the size can shrink
    by a non-integer factor such as sqrt(2). The boundaries come from one random sequence per axis,
    drawn once per call and shared by the batch and the channels (TensorFlow's convention; PyTorch
    draws per sample). Unlike TensorFlow's op this one compiles with XLA, runs with height and
    width unknown until run time, supports float16/bfloat16, converts to TFLite builtins and ONNX
    when the sequences are given, and has a fast gradient.

    Ties: each output's gradient goes to the first maximum of its window in row-major order,
    exactly as TF's `FractionalMaxPoolGrad`; NaN inputs are not given any particular treatment.

    Args:
        x: a rank-4 float tensor (float16, bfloat16, float32 or float64).
        pooling_ratio: a float > 1, or a `(height_ratio, width_ratio)` pair. The output size is
            `floor(size / ratio)` (computed in float32, like TF) and must be at least 1.
        pseudo_random: draw pseudo-random (default) rather than random sequences.
        overlapping: when `True`, adjacent windows share their boundary element
            (`[s_i, s_{i+1}]` instead of `[s_i, s_{i+1} - 1]`). Defaults to `False`.
        seed: `None` (fresh random sequences), a Python int, or a `(2,)` integer tensor for the
            stateless random ops (what layers pass). Ignored for an axis whose sequence is given.
        row_pooling_sequence: optional boundaries along the height, e.g. the second output of
            `tf.nn.fractional_max_pool` or of a previous call: `n + 1` strictly increasing ints
            from 0 to the height.
        col_pooling_sequence: the same along the width.
        data_format: `"channels_last"` (default) or `"channels_first"`.

    Returns:
        A tuple `(output, row_pooling_sequence, col_pooling_sequence)`, the sequences as int64.

    Example:

    >>> x = tf.random.normal([2, 9, 9, 3])
    >>> y, rows, cols = fractional_max_pool2d(x, 1.5, seed=7)
    >>> y.shape, rows.shape
    (TensorShape([2, 6, 6, 3]), TensorShape([7]))
    >>> y2, _, _ = fractional_max_pool2d(x, 1.5, row_pooling_sequence=rows,
    ...                                  col_pooling_sequence=cols)
    >>> bool(tf.reduce_all(y == y2))
    True
    """
    data_format = normalize_data_format(data_format)
    ratios = normalize_float_tuple(pooling_ratio, 2, "pooling_ratio")
    if not all(math.isfinite(r) and r > 1.0 for r in ratios):
        raise ValueError(
            "`pooling_ratio` must be a number > 1 or a (height, width) pair of such numbers "
            f"(the output size is floor(size / ratio) >= 1). Received: {pooling_ratio!r}"
        )
    x = tf.convert_to_tensor(x)
    if x.shape.rank is None:
        raise ValueError("`x` must be a rank-4 tensor; its rank is unknown at trace time.")
    check_input_rank(x.shape, 4, "x")
    check_float_dtype(x.dtype, "x")
    h_axis = 1 if data_format == "channels_last" else 2
    static_sizes = (x.shape[h_axis], x.shape[h_axis + 1])
    for size, ratio, axis_name in zip(static_sizes, ratios, ("height", "width"), strict=True):
        if size is not None and fractional_output_size(size, ratio) < 1:
            raise ValueError(
                f"`pooling_ratio` along the {axis_name} must be in (1, {size}] for an input "
                f"{axis_name} of {size} (the output size floor({size} / ratio) must be >= 1). "
                f"Received: {pooling_ratio!r}"
            )
    dynamic = tf.shape(x)
    row_seed, col_seed = (None, None)
    if row_pooling_sequence is None or col_pooling_sequence is None:
        row_seed, col_seed = _seed_pair(seed)
    axes = []
    for name, given, a, ratio, axis_seed in (
        ("row_pooling_sequence", row_pooling_sequence, h_axis, ratios[0], row_seed),
        ("col_pooling_sequence", col_pooling_sequence, h_axis + 1, ratios[1], col_seed),
    ):
        size = dynamic[a]
        output_size = fractional_output_size(size, ratio)
        axes.append(_Axis(name, given, size, x.shape[a], output_size, ratio, axis_seed))
    rows, cols = (_resolve_sequence(axis, pseudo_random, overlapping) for axis in axes)
    asserts = rows.asserts + cols.asserts
    if not (rows.static and cols.static):
        asserts += [
            tf.debugging.assert_positive(
                axis.output_size,
                message="`pooling_ratio` leaves an output size of 0 for this input: it must "
                "be at most the input's height/width",
            )
            for axis in axes
            if axis.static_size is None
        ]
    with tf.control_dependencies(asserts):
        x = tf.identity(x) if asserts else x
    geometry = _Geometry(bool(overlapping), h_axis, rows.max_len, cols.max_len)
    output = _pool(
        x, rows.values, cols.values, geometry, compile_forward=not (rows.static and cols.static)
    )
    row_seq, col_seq = rows.values, cols.values
    return output, row_seq, col_seq
