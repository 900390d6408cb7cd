"""Adaptive average and max pooling with PyTorch's bin rule, for any input and output size.

Bin `i` of an axis of length `n` pooled to `m` spans `[floor(i * n / m), ceil((i + 1) * n / m))`
(ATen `AdaptivePooling.h`). Both poolings are separable: pooling the height axis and then the
width axis gives the same result as pooling each 2-D bin.

Static sizes: the bins of an axis split into a few runs of equal length and equal start step
(`_runs`: one run for 64 -> 7, for divisible sizes and for 1x1), each of which is one strided
`max_pool2d`/`avg_pool2d` window; when both axes are single runs the whole op is one pooling op.
Averages get a gather-based gradient (XLA's AvgPoolGrad is very slow for strided windows).
Otherwise, and for sizes unknown until run time (bins from `tf.shape`, which XLA turns into
compile-time constants), each axis is pooled on its own: `m == n` is the identity, `m == 1` a
reduction, `n % m == 0` a reshape and reduction; the average is a matmul with a small `(m, n)`
averaging matrix, and the max gathers every bin's rows padded to the longest bin (padding
repeats a row of the same bin, which leaves the max unchanged) and reduces them.

All ops used (pooling, StridedSlice, Concat, Transpose, MatMul, GatherV2, Reshape, reductions)
are TFLite builtins and standard ONNX ops.
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


def _bins_of_rows(in_size, out_size):
    """`(D, in)` table: the bins holding each input row (at most D), `out_size` where fewer."""
    starts, ends = adaptive_bins(in_size, out_size)
    rows = np.arange(in_size)
    member = (rows >= starts[:, None]) & (rows < ends[:, None])  # (out, in)
    row, bins = np.nonzero(member.T)  # sorted by row, then bin
    rank = np.arange(len(row)) - np.searchsorted(row, row)
    table = np.full((int(member.sum(0).max()), in_size), out_size)
    table[rank, row] = bins
    return table


def _spread_back(dy, axis, in_size, out_size):
    """Adjoint of summing each bin of `axis`: every input row gets the sum of its bins' `dy`.

    D gathers from the small tensor (plus a zero row for rows in fewer than D bins) instead of
    a scatter or XLA's AvgPoolGrad, which is very slow for strided overlapping windows.
    """
    table = _bins_of_rows(in_size, out_size)
    pad = tf.unstack(tf.shape(dy))
    pad[axis] = 1
    dy = tf.concat([dy, tf.zeros(tf.stack(pad), dy.dtype)], axis=axis)
    dx = tf.gather(dy, table[0], axis=axis)
    for bins in table[1:]:
        dx += tf.gather(dy, bins, axis=axis)
    return dx


def _with_average_gradient(forward, sizes, output_size):
    """Wraps an NHWC average pooling of static `sizes` with the separable gather gradient."""
    pooled = [
        (a, n, m) for a, n, m in zip((1, 2), sizes, output_size, strict=True) if m not in (None, n)
    ]
    inv_area = np.ones((1, 1, 1, 1))
    for a, n, m in pooled:
        starts, ends = adaptive_bins(n, m)
        inv_area = inv_area * (1.0 / (ends - starts)).reshape(
            [1, m, 1, 1] if a == 1 else [1, 1, m, 1]
        )

    @tf.custom_gradient
    def pool(x):
        def grad(dy):
            dy = dy * tf.constant(inv_area, dy.dtype)
            for a, n, m in pooled[::-1]:
                dy = _spread_back(dy, a, n, m)
            return dy

        return forward(x), grad

    return pool


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
    table = _bins_of_rows(in_size, out_size)
    valid = table < out_size
    bins = np.minimum(table, out_size - 1)
    back = np.where(valid, bins * length + np.arange(in_size) - starts[bins], zero_slot)
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


MAX_RUNS = 4  # max pooling with more runs on an axis gathers its windows instead


def _runs(in_size, out_size):
    """Splits the bins of an axis into runs that one strided pooling window covers.

    A run is `(start, step, length, count)`: `count` consecutive bins of the same `length`
    whose starts are `step` apart. When `out` divides `in` there is one run; 64 -> 7 is one run
    (window 10, step 9); 63 -> 32 two (`[0, 2)`, then windows of 3 every 2 rows). Built in NumPy
    when tracing; the graph gets one pooling op per run.
    """
    starts, ends = adaptive_bins(in_size, out_size)
    lengths = ends - starts
    runs = []
    first = 0
    while first < out_size:
        count = 1
        step = int(starts[first + 1] - starts[first]) if first + 1 < out_size else 1
        while (
            step > 0
            and first + count < out_size
            and lengths[first + count] == lengths[first]
            and starts[first + count] - starts[first + count - 1] == step
        ):
            count += 1
        runs.append((int(starts[first]), step if count > 1 else 1, int(lengths[first]), count))
        first += count
    return runs


def _pool_runs(x, axis, runs, mode):
    """Pools axis 1 or 2 of an NHWC tensor with one strided pooling op per run (see `_runs`).

    `tf.nn.max_pool2d`/`avg_pool2d` and their gradients (MaxPoolGrad gives each window's
    gradient to its first maximum, as torch) are tuned CPU kernels, TFLite builtins and ONNX ops.
    """
    pool = tf.nn.avg_pool2d if mode == "avg" else tf.nn.max_pool2d
    pieces = []
    for start, step, length, count in runs:
        stop = start + (count - 1) * step + length
        piece = x[:, start:stop] if axis == 1 else x[:, :, start:stop]
        window = (length, 1) if axis == 1 else (1, length)
        strides = (step, 1) if axis == 1 else (1, step)
        pieces.append(pool(piece, window, strides, "VALID"))
    return pieces[0] if len(pieces) == 1 else tf.concat(pieces, axis)


def _adaptive_pool2d(x, output_size, data_format, mode):
    x, output_size, data_format = _check_args(x, output_size, data_format)
    dtype = x.dtype
    if mode == "avg" and dtype in (tf.float16, tf.bfloat16):
        # Accumulate half-precision means in float32, as torch does (opmath type).
        x = tf.cast(x, tf.float32)
    axes = (1, 2) if data_format == "channels_last" else (2, 3)
    sizes = [x.shape[a] for a in axes]
    # Static sizes: pooling ops need NHWC on CPU; XLA and the converters fold the transposes.
    to_nhwc = data_format == "channels_first" and None not in sizes
    if to_nhwc:
        x, axes = tf.transpose(x, (0, 2, 3, 1)), (1, 2)

    def body(x):
        return _pool(x, axes, sizes, output_size, mode)

    if mode == "avg" and None not in sizes:
        body = _with_average_gradient(body, sizes, output_size)
    x = body(x)
    if to_nhwc:
        x = tf.transpose(x, (0, 3, 1, 2))
    return tf.cast(x, dtype)


def _pool(x, axes, sizes, output_size, mode):
    """The forward pooling: strided pooling ops per run when static, else per-axis fallbacks."""
    runs = [
        _runs(n, m) if n is not None and m is not None and n != m else None
        for n, m in zip(sizes, output_size, strict=True)
    ]
    if all(r is None or len(r) == 1 for r in runs) and None not in sizes:
        # One strided window per axis: a single 2-D pooling op (64 -> 7, divisible sizes, 1x1).
        (h0, sh, kh, ch), (w0, sw, kw, cw) = (
            r[0] if r else (0, 1, 1, n) for r, n in zip(runs, sizes, strict=True)
        )
        x = x[:, h0 : h0 + (ch - 1) * sh + kh, w0 : w0 + (cw - 1) * sw + kw]
        pool = tf.nn.avg_pool2d if mode == "avg" else tf.nn.max_pool2d
        x = pool(x, (kh, kw), (sh, sw), "VALID")
    else:
        # Several average runs were slow on CPU (63 -> 32: 17 s first call, then 4x the matmul).
        max_runs = MAX_RUNS if mode == "max" else 1
        # Pool the axis that shrinks the most first, so the second pass reads less.
        shrink = [(n or 0) / (m or n or 1) for n, m in zip(sizes, output_size, strict=True)]
        for k in [1, 0] if shrink[1] > shrink[0] else [0, 1]:
            if runs[k] is not None and len(runs[k]) <= max_runs and axes == (1, 2):
                x = _pool_runs(x, axes[k], runs[k], mode)
            elif output_size[k] is not None:
                x = _pool_axis(x, axes[k], output_size[k], mode)
    return x


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
