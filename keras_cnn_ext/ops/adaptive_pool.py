"""Adaptive average and max pooling with PyTorch's bin rule, for any input and output size.

Bin `i` of an axis of length `n` pooled to `m` spans `[floor(i * n / m), ceil((i + 1) * n / m))`
(ATen `AdaptivePooling.h`). Both poolings are separable: pooling the height axis and then the
width axis gives the same result as pooling each 2-D bin, so each axis is handled on its own:

- `m == n` is the identity and `m == 1` a plain reduction;
- `n % m == 0` (static sizes) is a reshape and a reduction over the window axis;
- otherwise the average is a matmul with a small `(m, n)` averaging matrix, and the max gathers
  every bin's rows padded to the longest bin (padding repeats a row of the same bin, which leaves
  the max unchanged) and reduces them.

Sizes unknown until run time take the general path, with bins computed from `tf.shape`; under
XLA these shape expressions become compile-time constants. All ops used (MatMul, GatherV2,
Reshape, Mean/Max/Sum) are TFLite builtins and standard ONNX ops.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_cnn_ext.utils import (
    check_float_dtype,
    check_input_rank,
    normalize_data_format,
    normalize_tuple,
)

__all__ = ["adaptive_avg_pool2d", "adaptive_max_pool2d", "adaptive_bins"]


def adaptive_bins(in_size, out_size):
    """Returns `(starts, ends)` of the `out_size` adaptive bins over an axis of `in_size`.

    PyTorch's rule: `start = floor(i * in / out)`, `end = ceil((i + 1) * in / out)`, in exact
    integer arithmetic. `in_size` may be a Python int (NumPy arrays are returned) or a scalar
    int32 tensor (tensors are returned).
    """
    i = np.arange(out_size) if isinstance(in_size, int) else tf.range(out_size)
    starts = (i * in_size) // out_size
    ends = ((i + 1) * in_size + out_size - 1) // out_size
    return starts, ends


def _max_bin_length(in_size, out_size):
    """An upper bound on the bin length (exact for static sizes).

    A bin's length is `ceil(frac(i * in / out) + in / out)`, so it is `ceil(in / out)` or one more.
    """
    if isinstance(in_size, int):
        starts, ends = adaptive_bins(in_size, out_size)
        return int(np.max(ends - starts))
    return (in_size + out_size - 1) // out_size + 1


def _averaging_matrix(in_size, out_size, dtype):
    """The `(out, in)` matrix whose row `i` averages the inputs of bin `i`."""
    starts, ends = adaptive_bins(in_size, out_size)
    if isinstance(in_size, int):
        j = np.arange(in_size)
        inside = (j >= starts[:, None]) & (j < ends[:, None])
        matrix = inside / (ends - starts)[:, None]
        return tf.constant(matrix, dtype)
    j = tf.range(in_size)
    inside = (j >= starts[:, None]) & (j < ends[:, None])
    lengths = tf.cast(ends - starts, dtype)[:, None]
    return tf.cast(inside, dtype) / lengths


def _gather_indices(in_size, out_size):
    """`(out, L)` row indices of each bin, padded to the longest bin `L` by repeating its last row."""
    starts, ends = adaptive_bins(in_size, out_size)
    length = _max_bin_length(in_size, out_size)
    if isinstance(in_size, int):
        idx = np.minimum(starts[:, None] + np.arange(length), ends[:, None] - 1)
        return tf.constant(idx.reshape(-1), tf.int32), length
    idx = tf.minimum(starts[:, None] + tf.range(length), ends[:, None] - 1)
    return tf.reshape(idx, [-1]), length


def _split_axis(shape, axis, parts):
    """The shape with dimension `axis` replaced by `parts` (a list of ints/scalars)."""
    return tf.stack(
        [*[shape[a] for a in range(axis)], *parts, *[shape[a] for a in range(axis + 1, 4)]]
    )


def _pool_axis(x, axis, out_size, mode):
    """Adaptively pools one spatial axis of the rank-4 tensor `x` to `out_size`."""
    static = x.shape[axis]
    in_size = static if static is not None else tf.shape(x)[axis]
    if static is not None and static == out_size:
        return x
    reduce = tf.reduce_mean if mode == "avg" else tf.reduce_max
    if out_size == 1:
        return reduce(x, axis=axis, keepdims=True)
    shape = tf.shape(x)
    if static is not None and static % out_size == 0:
        window = static // out_size
        return reduce(tf.reshape(x, _split_axis(shape, axis, [out_size, window])), axis=axis + 1)
    if mode == "avg" and static is not None and AVG_STATIC == "gather":
        return _avg_axis_static(x, axis, static, out_size)
    if mode == "avg":
        matrix = _averaging_matrix(in_size, out_size, x.dtype)
        if axis == 3:
            # channels_first width: the pooled axis is innermost, one plain matmul.
            y = tf.matmul(tf.reshape(x, [-1, in_size]), matrix, transpose_b=True)
        else:
            outer = tf.reduce_prod(shape[:axis])
            inner = tf.reduce_prod(shape[axis + 1 :])
            y = tf.matmul(matrix, tf.reshape(x, tf.stack([outer, in_size, inner])))
        return tf.reshape(y, _split_axis(shape, axis, [out_size]))
    if static is not None:
        return _max_axis_static(x, axis, static, out_size)
    # Dynamic size: autodiff of gather + reduce_max is exact (ties share the gradient).
    idx, length = _gather_indices(in_size, out_size)
    y = tf.gather(x, idx, axis=axis)
    y = tf.reshape(y, _split_axis(shape, axis, [out_size, length]))
    return tf.reduce_max(y, axis=axis + 1)


AVG_STATIC = "gather"


def _avg_axis_static(x, axis, in_size, out_size):
    """Average-pools one axis of static size by gathering windows; gathers in the gradient too.

    Windows are padded by repeating their last row, so the padded sum over-counts that row
    `length - len` times; subtracting it is cheaper than weighting the whole window tensor.
    The gradient of bin `o` is `dy[o] / len[o]` on each of its rows, brought back to input rows
    by D gathers (D = how many bins share a row) instead of a scatter.
    """
    starts, ends = adaptive_bins(in_size, out_size)
    lengths = ends - starts
    idx, back, length = _max_plan(in_size, out_size)
    bins, offsets = np.divmod(back, length)
    # A row's padding-slot entries (it is in fewer than D bins) read the zero row `out_size`.
    back_bins = np.where(offsets < lengths[bins], bins, out_size)
    extra = length - lengths
    bcast = [1, 1, 1, 1]
    bcast[axis] = out_size
    inv_len = tf.reshape(tf.constant(1.0 / lengths, x.dtype), bcast)
    extra_t = tf.reshape(tf.constant(extra, x.dtype), bcast)

    @tf.custom_gradient
    def pool(x):
        shape = tf.shape(x)
        windows = tf.reshape(
            tf.gather(x, idx, axis=axis), _split_axis(shape, axis, [out_size, length])
        )
        total = tf.reduce_sum(windows, axis=axis + 1)
        if extra.any():
            total -= extra_t * tf.gather(x, ends - 1, axis=axis)
        y = total * inv_len

        def grad(dy):
            dy = dy * inv_len
            pad = tf.unstack(tf.shape(dy))
            pad[axis] = 1
            dy = tf.concat([dy, tf.zeros(tf.stack(pad), dy.dtype)], axis=axis)
            dx = tf.gather(dy, back_bins[0], axis=axis)
            for rows in back_bins[1:]:
                dx += tf.gather(dy, rows, axis=axis)
            return dx

        return y, grad

    return pool(x)


def _max_plan(in_size, out_size):
    """Static gather/scatter tables for max pooling one axis.

    Returns `(idx, back, length)`: `idx` (out * length,) are the rows gathered for each bin
    (padded by repeating the bin's last row); `back` (D, in) maps each input row to the flat
    slot `bin * length + offset` of each of the (at most D) bins that hold it, or to a padded
    slot, whose gradient is always zero because argmax returns the first of equal values.
    """
    starts, ends = adaptive_bins(in_size, out_size)
    lengths = ends - starts
    length = int(lengths.max())
    if lengths.min() == length:
        length += 1  # no bin is padded: add a slot so that a zero-gradient slot exists
    offsets = np.arange(length)
    idx = np.minimum(starts[:, None] + offsets, ends[:, None] - 1)
    padded = np.argwhere(offsets >= lengths[:, None])[0]
    zero_slot = padded[0] * length + padded[1]
    rows = np.arange(in_size)
    member = (rows >= starts[:, None]) & (rows < ends[:, None])  # (out, in)
    row, bins = np.nonzero(member.T)  # sorted by row, then bin
    rank = np.arange(len(row)) - np.searchsorted(row, row)
    back = np.full((int(member.sum(0).max()), in_size), zero_slot)
    back[rank, row] = bins * length + row - starts[bins]
    return idx.reshape(-1), back, length


def _max_axis_static(x, axis, in_size, out_size):
    """Max-pools one axis of static size with an argmax gradient that avoids scatters.

    Autodiff of gather + reduce_max costs several full-size passes and a transposed
    unsorted segment sum; here the gradient of each bin goes to its first argmax and is
    brought back to input rows by D gathers (D = how many bins share a row, 2 when
    downsampling).
    """
    idx, back, length = _max_plan(in_size, out_size)
    window_shape = [1] * 5
    window_shape[axis + 1] = length
    offsets = tf.reshape(tf.range(length), window_shape)

    @tf.custom_gradient
    def pool(x):
        shape = tf.shape(x)
        windows = tf.gather(x, idx, axis=axis)
        windows = tf.reshape(windows, _split_axis(shape, axis, [out_size, length]))

        def grad(dy):
            first = tf.argmax(windows, axis=axis + 1, output_type=tf.int32)
            hit = tf.equal(tf.expand_dims(first, axis + 1), offsets)
            dwin = tf.where(hit, tf.expand_dims(dy, axis + 1), tf.zeros((), dy.dtype))
            dwin = tf.reshape(dwin, _split_axis(shape, axis, [out_size * length]))
            dx = tf.gather(dwin, back[0], axis=axis)
            for rows in back[1:]:
                dx += tf.gather(dwin, rows, axis=axis)
            return dx

        return tf.reduce_max(windows, axis=axis + 1), grad

    return pool(x)


def _check_args(x, output_size, data_format):
    output_size = normalize_tuple(output_size, 2, "output_size", minimum=1, allow_none=True)
    data_format = normalize_data_format(data_format)
    x = tf.convert_to_tensor(x)
    check_input_rank(x.shape, 4, "x")
    check_float_dtype(x.dtype, "x")
    return x, output_size, data_format


def _adaptive_pool2d(x, output_size, data_format, mode):
    x, output_size, data_format = _check_args(x, output_size, data_format)
    axes = (1, 2) if data_format == "channels_last" else (2, 3)
    dtype = x.dtype
    if mode == "avg" and dtype in (tf.float16, tf.bfloat16):
        # Accumulate half-precision means in float32, as torch does (opmath type).
        x = tf.cast(x, tf.float32)
    # Pool the axis that shrinks the most first, so the second pass reads the smaller tensor.
    shrink = [
        (x.shape[a] or 0) / (size or x.shape[a] or 1)
        for a, size in zip(axes, output_size, strict=True)
    ]
    order = [1, 0] if shrink[1] > shrink[0] else [0, 1]
    for k in order:
        if output_size[k] is not None:
            x = _pool_axis(x, axes[k], output_size[k], mode)
    return tf.cast(x, dtype)


def adaptive_avg_pool2d(x, output_size, data_format="channels_last"):
    """Adaptive 2-D average pooling with PyTorch's bins, for any input/output size.

    Output cell `(i, j)` averages the input rows `[floor(i * H / h), ceil((i + 1) * H / h))` and
    columns `[floor(j * W / w), ceil((j + 1) * W / w))`, exactly as
    `torch.nn.functional.adaptive_avg_pool2d`. Works when `h > H` (upsampling), for sizes that do
    not divide, for `H`/`W` unknown until run time, under `tf.function` and `jit_compile=True`.

    Args:
        x: a rank-4 floating-point tensor.
        output_size: an int, or a tuple `(h, w)` of ints; a `None` entry keeps that input size.
        data_format: `"channels_last"` (default, `(batch, H, W, C)`) or `"channels_first"`
            (`(batch, C, H, W)`); `None` means Keras' image data format.

    Returns:
        A tensor of `x`'s dtype with spatial size `(h, w)`.

    Example:

    >>> x = tf.reshape(tf.range(16.0), (1, 4, 4, 1))
    >>> adaptive_avg_pool2d(x, (1, 2))[0, ..., 0].numpy()
    array([[6.5, 8.5]], dtype=float32)
    """
    return _adaptive_pool2d(x, output_size, data_format, "avg")


def adaptive_max_pool2d(x, output_size, data_format="channels_last"):
    """Adaptive 2-D max pooling with PyTorch's bins, for any input/output size.

    Output cell `(i, j)` is the maximum over input rows `[floor(i * H / h), ceil((i + 1) * H / h))`
    and columns `[floor(j * W / w), ceil((j + 1) * W / w))`, exactly as
    `torch.nn.functional.adaptive_max_pool2d`. Works when `h > H` (upsampling), for sizes that do
    not divide, for `H`/`W` unknown until run time, under `tf.function` and `jit_compile=True`.

    Args:
        x: a rank-4 floating-point tensor.
        output_size: an int, or a tuple `(h, w)` of ints; a `None` entry keeps that input size.
        data_format: `"channels_last"` (default, `(batch, H, W, C)`) or `"channels_first"`
            (`(batch, C, H, W)`); `None` means Keras' image data format.

    Returns:
        A tensor of `x`'s dtype with spatial size `(h, w)`.

    Example:

    >>> x = tf.reshape(tf.range(16.0), (1, 4, 4, 1))
    >>> adaptive_max_pool2d(x, (1, 2))[0, ..., 0].numpy()
    array([[13., 15.]], dtype=float32)
    """
    return _adaptive_pool2d(x, output_size, data_format, "max")
