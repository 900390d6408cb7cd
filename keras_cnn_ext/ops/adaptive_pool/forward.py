"""Forward formulations of adaptive pooling: each exact, each fast in some case (see `plans`).

2-D formulations of static NHWC inputs: `mean` and `mean_matmul` (1 x 1 average),
`reduce_max` (1 x 1 max), `window` (one strided `avg_pool2d`/`max_pool2d` whose windows are the
bins), `sliced_sums` (average as sums of strided slices, for XLA). `per_axis` pools one axis
after the other (static or dynamic sizes, any data format): strided pooling ops per run of
equal bins (`pool_runs`), or `pool_axis` (identity, reduction, reshape and reduction, averaging
matmul, or gathered windows).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_cnn_ext.ops._window_gradient import along
from keras_cnn_ext.ops.adaptive_pool import bins

__all__ = [
    "first_max_gradient",
    "max_axis_static",
    "mean",
    "mean_matmul",
    "per_axis",
    "pool_axis",
    "pool_runs",
    "reduce_max",
    "reduce_max_first",
    "sliced_sums",
    "slice_axis",
    "split_axis",
    "take",
    "window",
]


# --- tensor helpers ------------------------------------------------------------------------------


def slice_axis(x, axis, start, stop, step=1):
    """`x[start:stop:step]` along `axis`, every other axis whole."""
    return x[(slice(None),) * axis + (slice(start, stop, step),)]


def split_axis(shape, axis, parts):
    """The shape with dimension `axis` replaced by `parts` (a list of ints/scalars)."""
    return tf.stack(
        [*[shape[a] for a in range(axis)], *parts, *[shape[a] for a in range(axis + 1, 4)]]
    )


def take(x, indices, axis):
    """`tf.gather(x, indices, axis)` for static `indices`: one strided slice when evenly spaced.

    XLA copies a gather along an inner axis through a transposed buffer, where a strided slice
    fuses into its consumer (64 -> 7: 9 ms against 34 ms for the routed max gradient's search).
    Several slices joined by a concat fuse worse than a gather (63 -> 32: 30 ms against 6 ms),
    so uneven indices are gathered.
    """
    steps = np.diff(indices)
    if len(indices) == 1 or (steps[0] > 0 and np.all(steps == steps[0])):
        step = int(steps[0]) if len(indices) > 1 else 1
        return slice_axis(x, axis, int(indices[0]), int(indices[-1]) + 1, step)
    return tf.gather(x, indices, axis=axis)


def _tensor_bins(in_size, out_size):
    """`bins.adaptive_bins` for a scalar int32 tensor `in_size`."""
    i = tf.range(out_size)
    starts = (i * in_size) // out_size
    ends = ((i + 1) * in_size + out_size - 1) // out_size
    return starts, ends


def _averaging_matrix(in_size, out_size, dtype):
    """`bins.averaging_matrix` as a tensor; `in_size` may be a scalar tensor."""
    if isinstance(in_size, int):
        return tf.constant(bins.averaging_matrix(in_size, out_size), dtype)
    starts, ends = _tensor_bins(in_size, out_size)
    j = tf.range(in_size)
    inside = (j >= starts[:, None]) & (j < ends[:, None])
    lengths = tf.cast(ends - starts, dtype)[:, None]
    return tf.cast(inside, dtype) / lengths


def _gather_indices(in_size, out_size):
    """`bins.bin_table` flattened to `(out * L,)`, and `L`, for a scalar tensor `in_size`.

    `L = ceil(in / out) + 1` bounds the bin length when the size is unknown at trace time.
    """
    starts, ends = _tensor_bins(in_size, out_size)
    length = (in_size + out_size - 1) // out_size + 1
    idx = tf.minimum(starts[:, None] + tf.range(length), ends[:, None] - 1)
    return tf.reshape(idx, [-1]), length


# --- 2-D formulations (static NHWC) --------------------------------------------------------------


def mean(x, sizes, output_size):
    """The 1 x 1 average: `reduce_mean` over axes 1 and 2."""
    del sizes, output_size
    return tf.reduce_mean(x, axis=(1, 2), keepdims=True)


def mean_matmul(x, sizes, output_size):
    """The 1 x 1 average as a batched matmul with a constant averaging row.

    oneDNN runs it at about 17 GB/s here against 11 GB/s for a float32 `reduce_mean`
    (64 -> 1: 2.3 ms against 3.1 ms); XLA's own reduction is faster than its dot.
    """
    del output_size
    area = sizes[0] * sizes[1]
    rows = tf.reshape(x, [tf.shape(x)[0], area, -1])
    y = tf.matmul(tf.fill([1, 1, area], 1.0 / area), rows)
    return tf.expand_dims(y, 1)


def reduce_max(x, sizes, output_size):
    """The 1 x 1 max: under XLA 3x faster than its 64 x 64 reduce-window."""
    del sizes, output_size
    return tf.reduce_max(x, axis=(1, 2), keepdims=True)


def window(x, mode, ksize, strides, padding):
    """One `avg_pool2d`/`max_pool2d` whose windows are exactly the bins (`bins.single_window`)."""
    pool = tf.nn.avg_pool2d if mode == "avg" else tf.nn.max_pool2d
    return pool(x, ksize, strides, padding)


def sliced_sums(x, sizes, output_size):
    """Average pooling as sums of strided slices per axis (shrinking axes).

    Under XLA this fuses into one pass per axis; XLA's reduce-window takes about twice as long
    on CPU (64 -> 7: 4 ms against 7 ms; torch 6 ms). Offsets padded past a bin's end are
    masked out of the sum.
    """
    for axis, n, m in ((1, sizes[0], output_size[0]), (2, sizes[1], output_size[1])):
        if n == m:
            continue
        starts, ends = bins.adaptive_bins(n, m)
        lengths = ends - starts
        rows = bins.bin_table(n, m)
        total = None
        for t in range(rows.shape[1]):
            values = take(x, rows[:, t], axis)
            if t >= lengths.min():
                values = values * along(tf.constant(t < lengths, values.dtype), axis)
            total = values if total is None else total + values
        x = total * along(tf.constant(1.0 / lengths, x.dtype), axis)
    return x


# --- one axis at a time --------------------------------------------------------------------------


def first_max_gradient(x, y, dy, axis):
    """`dy` at the first position along `axis` where `x` equals its maximum `y`, zero elsewhere.

    `y` and `dy` keep `axis` with size 1.
    """
    position_shape = [1] * x.shape.rank
    position_shape[axis] = -1
    size = tf.shape(x)[axis]
    position = tf.reshape(tf.range(size), position_shape)
    first = tf.reduce_min(tf.where(x == y, position, size), axis=axis, keepdims=True)
    return tf.where(position == first, dy, tf.zeros((), dy.dtype))


def reduce_max_first(x, axis, keepdims=False):
    """`tf.reduce_max` whose gradient goes to the first maximum along `axis` (torch's rule).

    TF's own splits the gradient between equal maxima, so ties (ReLU zeros, quantised inputs)
    would give gradients that differ from torch's and from the static path's.
    """

    @tf.custom_gradient
    def reduce(x):
        y = tf.reduce_max(x, axis=axis, keepdims=True)

        def grad(dy):
            return first_max_gradient(x, y, dy if keepdims else tf.expand_dims(dy, axis), axis)

        return (y if keepdims else tf.squeeze(y, axis)), grad

    return reduce(x)


def max_axis_static(x, axis, in_size, out_size):
    """Max-pools one axis of static size with an argmax gradient that avoids scatters.

    Autodiff of gather + reduce_max costs several full-size passes and a transposed
    unsorted segment sum; here the gradient of each bin goes to its first argmax and is
    brought back to input rows by D gathers (D = how many bins share a row, 2 when
    downsampling).
    """
    idx, back, length = bins.max_gather_tables(in_size, out_size)
    window_shape = [1] * 5
    window_shape[axis + 1] = length
    offsets = tf.reshape(tf.range(length), window_shape)

    @tf.custom_gradient
    def pool(x):
        shape = tf.shape(x)
        windows = tf.gather(x, idx, axis=axis)
        windows = tf.reshape(windows, split_axis(shape, axis, [out_size, length]))

        def grad(dy):
            first = tf.argmax(windows, axis=axis + 1, output_type=tf.int32)
            hit = tf.equal(tf.expand_dims(first, axis + 1), offsets)
            dwin = tf.where(hit, tf.expand_dims(dy, axis + 1), tf.zeros((), dy.dtype))
            dwin = tf.reshape(dwin, split_axis(shape, axis, [out_size * length]))
            dx = tf.gather(dwin, back[0], axis=axis)
            for rows in back[1:]:
                dx += tf.gather(dwin, rows, axis=axis)
            return dx

        return tf.reduce_max(windows, axis=axis + 1), grad

    return pool(x)


def pool_axis(x, axis, out_size, mode):
    """Adaptively pools one spatial axis of the rank-4 tensor `x` to `out_size`.

    `out == in` is the identity, `out == 1` a reduction and a static `in % out == 0` a reshape
    and reduction. Otherwise the average is a matmul with a small `(out, in)` averaging matrix;
    the max gathers every bin's rows padded to the longest bin (padding repeats a row of the
    same bin, which leaves the max unchanged) and reduces them with a first-maximum gradient
    (`max_axis_static` when the size is static).
    """
    static = x.shape[axis]
    in_size = static if static is not None else tf.shape(x)[axis]
    if static is not None and static == out_size:
        return x
    reduce = tf.reduce_mean if mode == "avg" else reduce_max_first
    if out_size == 1:
        return reduce(x, axis=axis, keepdims=True)
    shape = tf.shape(x)
    if static is not None and static % out_size == 0:
        width = static // out_size
        return reduce(tf.reshape(x, split_axis(shape, axis, [out_size, width])), axis=axis + 1)
    if mode == "avg":
        matrix = _averaging_matrix(in_size, out_size, x.dtype)
        if axis == 3:
            # channels_first width: the pooled axis is innermost, one plain matmul.
            y = tf.matmul(tf.reshape(x, [-1, in_size]), matrix, transpose_b=True)
        else:
            outer = tf.reduce_prod(shape[:axis])
            inner = tf.reduce_prod(shape[axis + 1 :])
            y = tf.matmul(matrix, tf.reshape(x, tf.stack([outer, in_size, inner])))
        return tf.reshape(y, split_axis(shape, axis, [out_size]))
    if static is not None:
        return max_axis_static(x, axis, static, out_size)
    # Dynamic size: the gather's gradient sums back what each window's first maximum gets.
    idx, length = _gather_indices(in_size, out_size)
    y = tf.gather(x, idx, axis=axis)
    y = tf.reshape(y, split_axis(shape, axis, [out_size, length]))
    return reduce_max_first(y, axis=axis + 1)


def pool_runs(x, axis, axis_runs, mode):
    """Pools axis 1 or 2 of an NHWC tensor with one strided pooling op per run (`bins.runs`).

    `tf.nn.max_pool2d`/`avg_pool2d` and their gradients (MaxPoolGrad gives each window's
    gradient to its first maximum, as torch) are tuned CPU kernels, TFLite builtins and ONNX ops.
    """
    pool = tf.nn.avg_pool2d if mode == "avg" else tf.nn.max_pool2d
    pieces = []
    for start, step, length, count in axis_runs:
        stop = start + (count - 1) * step + length
        piece = slice_axis(x, axis, start, stop)
        ksize = (length, 1) if axis == 1 else (1, length)
        strides = (step, 1) if axis == 1 else (1, step)
        pieces.append(pool(piece, ksize, strides, "VALID"))
    return pieces[0] if len(pieces) == 1 else tf.concat(pieces, axis)


def per_axis(x, axes, sizes, output_size, mode, max_runs):
    """Pools axis by axis: `pool_runs` for a static NHWC axis of at most `max_runs` runs, else
    `pool_axis`.

    Average: the axis that shrinks the most first, so the second pass reads less. Max: the
    width first, so that each stage's first maximum is the first in row-major order.
    """
    axis_runs = [
        bins.runs(n, m) if n is not None and m is not None and n != m else None
        for n, m in zip(sizes, output_size, strict=True)
    ]
    shrink = [(n or 0) / (m or n or 1) for n, m in zip(sizes, output_size, strict=True)]
    for k in [1, 0] if mode == "max" or shrink[1] > shrink[0] else [0, 1]:
        if axis_runs[k] is not None and len(axis_runs[k]) <= max_runs and axes == (1, 2):
            x = pool_runs(x, axes[k], axis_runs[k], mode)
        elif output_size[k] is not None:
            x = pool_axis(x, axes[k], output_size[k], mode)
    return x
