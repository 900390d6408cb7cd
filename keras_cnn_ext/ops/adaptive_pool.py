"""Adaptive average and max pooling with PyTorch's bin rule, for any input and output size.

Bin `i` of an axis of length `n` pooled to `m` spans `[floor(i * n / m), ceil((i + 1) * n / m))`
(ATen `AdaptivePooling.h`). Both poolings are separable: pooling the width axis and then the
height axis gives the same result as pooling each 2-D bin (and, for the max, the same first
maximum in row-major order, which is where torch sends a tie's gradient).

Static sizes (`_static_pool`): a 1x1 average is a mean; bins that one strided window makes,
VALID (64 -> 7: window 10, stride 9) or with TF's SAME padding (63 -> 32: window 3, stride 2),
are one `avg_pool2d`/`max_pool2d`; under XLA, shrinking averages are sums of strided slices.
Other static sizes split each axis into runs of equal length and step (`_runs`), one strided
pooling window per run, or fall back to the per-axis forms below. Gradients run as compiled
(nested `jit_compile=True`) functions: the average spreads each bin's gradient back, by
broadcasting blocks where one strided window makes an axis' bins and with gathers elsewhere; the
max routes it to the bin's first maximum (`ops/_window_gradient.py`).

Sizes unknown until run time (bins from `tf.shape`, which XLA turns into compile-time
constants): each axis is pooled on its own. `m == n` is the identity, `m == 1` a reduction and
`n % m == 0` a reshape and reduction; the average is a matmul with a small `(m, n)` averaging
matrix, and the max gathers every bin's rows padded to the longest bin (padding repeats a row
of the same bin, which leaves the max unchanged) and reduces them with a first-maximum gradient.

The forward ops (pooling, StridedSlice, Concat, Transpose, MatMul, GatherV2, Reshape,
reductions) are TFLite builtins and standard ONNX ops; gradients never reach an exporter.
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

from keras_cnn_ext.ops._window_gradient import along, materialize, route_to_first_max
from keras_cnn_ext.utils import (
    check_float_dtype,
    check_input_rank,
    in_xla_context,
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


def _bin_table(in_size, out_size):
    """`(out, L)` rows of every bin, padded to the longest bin `L` by repeating its last row."""
    starts, ends = adaptive_bins(in_size, out_size)
    length = _max_bin_length(in_size, out_size)
    return np.minimum(starts[:, None] + np.arange(length), ends[:, None] - 1).astype(np.int32)


def _gather_indices(in_size, out_size):
    """`_bin_table` flattened to `(out * L,)`, and `L`; `in_size` may be a scalar tensor."""
    if isinstance(in_size, int):
        idx = _bin_table(in_size, out_size)
        return tf.constant(idx.reshape(-1)), idx.shape[1]
    starts, ends = adaptive_bins(in_size, out_size)
    length = _max_bin_length(in_size, out_size)
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
    reduce = tf.reduce_mean if mode == "avg" else _reduce_max_first
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
    # Dynamic size: the gather's gradient sums back what each window's first maximum gets.
    idx, length = _gather_indices(in_size, out_size)
    y = tf.gather(x, idx, axis=axis)
    y = tf.reshape(y, _split_axis(shape, axis, [out_size, length]))
    return _reduce_max_first(y, axis=axis + 1)


def _reduce_max_first(x, axis, keepdims=False):
    """`tf.reduce_max` whose gradient goes to the first maximum along `axis` (torch's rule).

    TF's own splits the gradient between equal maxima, so ties (ReLU zeros, quantised inputs)
    would give gradients that differ from torch's and from the static path's.
    """

    @tf.custom_gradient
    def reduce(x):
        y = tf.reduce_max(x, axis=axis, keepdims=True)

        def grad(dy):
            return _first_max_gradient(x, y, dy if keepdims else tf.expand_dims(dy, axis), axis)

        return (y if keepdims else tf.squeeze(y, axis)), grad

    return reduce(x)


def _first_max_gradient(x, y, dy, axis):
    """`dy` at the first position along `axis` where `x` equals its maximum `y`, zero elsewhere.

    `y` and `dy` keep `axis` with size 1.
    """
    position_shape = [1] * x.shape.rank
    position_shape[axis] = -1
    size = tf.shape(x)[axis]
    position = tf.reshape(tf.range(size), position_shape)
    first = tf.reduce_min(tf.where(x == y, position, size), axis=axis, keepdims=True)
    return tf.where(position == first, dy, tf.zeros((), dy.dtype))


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
    """Adjoint of summing each bin of `axis`: every input row gets the sum of its bins' `dy`."""
    window = _axis_window(in_size, out_size)
    if window is not None:
        return _spread_blocks(dy, axis, in_size, *window)
    return _spread_gathers(dy, axis, in_size, out_size)


def _spread_gathers(dy, axis, in_size, out_size):
    """`_spread_back` for any bins: D gathers from the small tensor, plus a zero row for rows in
    fewer than D bins, instead of a scatter or XLA's AvgPoolGrad, which is very slow for strided
    overlapping windows.
    """
    table = _bins_of_rows(in_size, out_size)
    pad = tf.unstack(tf.shape(dy))
    pad[axis] = 1
    dy = tf.concat([dy, tf.zeros(tf.stack(pad), dy.dtype)], axis=axis)
    dx = tf.gather(dy, table[0], axis=axis)
    for bins in table[1:]:
        dx += tf.gather(dy, bins, axis=axis)
    return dx


def _slice_axis(x, axis, start, stop, step=1):
    """`x[start:stop:step]` along `axis`, every other axis whole."""
    return x[(slice(None),) * axis + (slice(start, stop, step),)]


def _spread_blocks(dy, axis, in_size, k, s, top):
    """`_spread_back` for bins `[s*b - top, s*b - top + k)` clipped to the input, without gathers.

    With `k = q*s + r`, padded row `j = i + top` lies in bins `j//s - u` for `u < q`, and in bin
    `j//s - q` too when `j % s < r`. Each term broadcasts a shifted `dy` over blocks of `s`
    rows, so XLA writes `dx` in one fused pass in its natural layout; a gather along an inner
    axis makes it write a transposed `dx` and copy it (64 -> 7 forward+backward: 13 ms against
    22 ms).
    """
    q, r = divmod(k, s)
    blocks = dy.shape[axis] + q
    pads = [[0, 0]] * 4
    pads[axis] = [q, q]
    dy = tf.pad(dy, pads)

    def shifted(u):  # block b holds dy[b - u] (zero outside the bins)
        return _slice_axis(dy, axis, q - u, q - u + blocks)

    def repeat(t):  # every block `s` times
        copies = [1] * 5
        copies[axis + 1] = s
        t = tf.expand_dims(t, axis + 1) * tf.ones(copies, t.dtype)
        shape = tf.shape(t)
        return tf.reshape(t, tf.concat([shape[:axis], [blocks * s], shape[axis + 2 :]], 0))

    dx = shifted(0)
    for u in range(1, q):
        dx += shifted(u)
    dx = repeat(dx)
    if r:
        partial = np.tile(np.arange(s) < r, blocks)
        dx += repeat(shifted(q)) * along(tf.constant(partial, dx.dtype), axis)
    return _slice_axis(dx, axis, top, top + in_size)


@functools.cache
def _average_gradient(sizes, output_size):
    """A compiled `dy -> dx` for average pooling static NHWC `sizes` to `output_size`.

    Always compiled (a gradient never reaches an exporter): XLA fuses the scaling and the
    spread (`_spread_back`) into one pass that writes `dx`, where TF's AvgPoolGrad is slower on
    CPU and XLA's own is up to 30x slower for strided windows.
    """
    pooled = [
        (a, n, m) for a, n, m in zip((1, 2), sizes, output_size, strict=True) if m not in (None, n)
    ]
    inv_area = np.ones((1, 1, 1, 1))
    for a, n, m in pooled:
        starts, ends = adaptive_bins(n, m)
        inv_area = inv_area * (1.0 / (ends - starts)).reshape(
            [1, m, 1, 1] if a == 1 else [1, 1, m, 1]
        )

    def grad(dy):
        dy = dy * tf.constant(inv_area, dy.dtype)
        for a, n, m in pooled[::-1]:
            dy = _spread_back(dy, a, n, m)
        return dy

    return tf.function(grad, jit_compile=True, autograph=False)


def _with_average_gradient(forward, sizes, output_size):
    """Wraps an NHWC average pooling of static `sizes` with the separable compiled gradient."""
    grad_fn = _average_gradient(tuple(sizes), tuple(output_size))

    @tf.custom_gradient
    def pool(x):
        return forward(x), grad_fn

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
        piece = _slice_axis(x, axis, start, stop)
        window = (length, 1) if axis == 1 else (1, length)
        strides = (step, 1) if axis == 1 else (1, step)
        pieces.append(pool(piece, window, strides, "VALID"))
    return pieces[0] if len(pieces) == 1 else tf.concat(pieces, axis)


def _window(in_size, out_size, padding):
    """`(k, s, top)` when a `k`-wide window with stride `s` and `padding` makes exactly the bins.

    `"VALID"`: bin `i` is `[i*s, i*s + k)`. `"SAME"`: TF's padding (`ceil(n / s)` outputs, the
    smaller half of the padding on top), with windows clipped to the input, which `avg_pool2d`
    leaves out of the count and `max_pool2d` ignores. 64 -> 7 is `(10, 9)` VALID, 63 -> 32
    `(3, 2)` SAME, divisible sizes and `out == 1` are VALID. Upsampling never is (`None`).
    `top` is the padding before the first window (0 for VALID).
    """
    if out_size is None or out_size == in_size:
        return 1, 1, 0
    starts, ends = adaptive_bins(in_size, out_size)
    k = _max_bin_length(in_size, out_size)
    i = np.arange(out_size)
    for s in sorted({int(d) for d in np.diff(starts) if d > 0} | {k}):
        if padding == "VALID":
            if (in_size - k) // s + 1 != out_size:
                continue
            top = 0
            lo, hi = i * s, i * s + k
        else:
            if -(-in_size // s) != out_size:
                continue
            top = max((out_size - 1) * s + k - in_size, 0) // 2
            lo, hi = np.maximum(i * s - top, 0), np.minimum(i * s - top + k, in_size)
        if np.array_equal(lo, starts) and np.array_equal(hi, ends):
            return k, s, top
    return None


def _axis_window(in_size, out_size):
    """`(k, s, top)` when bins `[s*i - top, s*i - top + k)`, clipped, are an axis' bins, or `None`."""
    windows = (_window(in_size, out_size, padding) for padding in ("VALID", "SAME"))
    return next((w for w in windows if w is not None), None)


def _single_window(sizes, output_size):
    """`(ksize, strides, padding)` of one pooling op that makes the 2-D bins, or `None`."""
    for padding in ("VALID", "SAME"):
        windows = [_window(n, m, padding) for n, m in zip(sizes, output_size, strict=True)]
        if None not in windows:
            (kh, sh, _), (kw, sw, _) = windows
            return (kh, kw), (sh, sw), padding
    return None


def _global_average(x):
    """Mean over axes 1 and 2 (NHWC) whose gradient is one broadcast.

    TF's own mean gradient tiles and then divides: two full-size tensors instead of one. Outside
    XLA a float32 mean is a batched matmul with a constant averaging row, which oneDNN runs at
    about 17 GB/s here against 11 GB/s for `reduce_mean` (64 -> 1: 2.3 ms against 3.1 ms); XLA's
    own reduction is faster than its dot.
    """
    area = x.shape[1] * x.shape[2]

    @tf.custom_gradient
    def pool(x):
        def grad(dy):
            return tf.broadcast_to(dy * tf.constant(1.0 / area, dy.dtype), tf.shape(x))

        if x.dtype != tf.float32 or in_xla_context():
            return tf.reduce_mean(x, axis=(1, 2), keepdims=True), grad
        rows = tf.reshape(x, [tf.shape(x)[0], area, -1])
        y = tf.matmul(tf.fill([1, 1, area], 1.0 / area), rows)
        return tf.expand_dims(y, 1), grad

    return pool(x)


ROUTED_MAX_LENGTH = 16  # longest bin whose max gradient is routed by gathers (else TF's own)
# Longest side of a 1 x 1 max whose first maximum is found by select chains (else by a
# reduce_min over a full-size select, which XLA writes out first: the 64 x 64 gradient takes
# 14 ms against 20 ms; the chains' compile time grows with the side).
ROUTED_GLOBAL_LENGTH = 64


def _take(x, indices, axis):
    """`tf.gather(x, indices, axis)` for static `indices`: one strided slice when evenly spaced.

    XLA copies a gather along an inner axis through a transposed buffer, where a strided slice
    fuses into its consumer (64 -> 7: 9 ms against 34 ms for `_first_max_code`). Several slices
    joined by a concat fuse worse than a gather (63 -> 32: 30 ms against 6 ms), so uneven
    indices are gathered.
    """
    steps = np.diff(indices)
    if len(indices) == 1 or (steps[0] > 0 and np.all(steps == steps[0])):
        step = int(steps[0]) if len(indices) > 1 else 1
        return _slice_axis(x, axis, int(indices[0]), int(indices[-1]) + 1, step)
    return tf.gather(x, indices, axis=axis)


def _first_max_code(x, y, rows, cols):
    """`h * width + w` of the first maximum, in row-major order, of every bin (NHWC, static).

    Separable: each input row's maximum over every column bin and the first column holding it,
    then, per bin, the first row whose maximum is the bin's. Offsets padded past a bin's end
    repeat its last row/column, which comes later in that order, so they never win.
    """
    width = x.shape[2]
    taken = [_take(x, cols[:, t], 2) for t in range(cols.shape[1])]
    row_max = taken[0]
    for values in taken[1:]:
        row_max = tf.maximum(row_max, values)
    first_col = None
    for t in reversed(range(cols.shape[1])):
        col = tf.broadcast_to(along(tf.constant(cols[:, t]), 2), tf.shape(row_max))
        first_col = col if first_col is None else tf.where(taken[t] == row_max, col, first_col)
    # Not materialised: XLA recomputes it per row offset, which is faster than writing it out
    # (63 -> 32: 6 ms against 60 ms).
    code = None
    for t in reversed(range(rows.shape[1])):
        row = tf.constant(rows[:, t])
        candidate = along(row, 1) * width + _take(first_col, rows[:, t], 1)
        hit = _take(row_max, rows[:, t], 1) == y
        code = candidate if code is None else tf.where(hit, candidate, code)
    return materialize(code)


def _global_first_max_code(x, y):
    """`h * width + w` of the first maximum `y` of each map of `x` (NHWC, static), reading `x` once.

    Per row, the first column equal to `y` (`width` where none is); then the first row that has
    one. Both are select chains that XLA fuses; writing each out keeps XLA from recomputing
    them per element of their consumers.
    """
    height, width = x.shape[1], x.shape[2]
    first_col = None
    for w in reversed(range(width)):
        hit = x[:, :, w : w + 1] == y
        first_col = tf.where(hit, w, width if first_col is None else first_col)
    first_col = materialize(first_col)
    code = None
    for h in reversed(range(height)):
        col = first_col[:, h : h + 1]
        code = h * width + col if code is None else tf.where(col < width, h * width + col, code)
    return materialize(code)


@functools.cache
def _routed_max_gradient(height, width, out_h, out_w):
    """A compiled `(x, y, dy) -> dx` for max pooling static sizes down to `(out_h, out_w)`.

    Each output's gradient goes to the first maximum of its bin in row-major order, as torch
    and TF's MaxPoolGrad do. It is always compiled (a gradient never reaches an exporter): XLA
    fuses it into passes that read `x` and one that writes `dx`, where TF's MaxPoolGrad
    recomputes the pooling slowly and XLA's select-and-scatter takes 3-4x as long.
    """
    if (out_h, out_w) == (1, 1):
        if max(height, width) <= ROUTED_GLOBAL_LENGTH:

            def grad(x, y, dy):
                code = _global_first_max_code(x, y)
                position = along(tf.range(height), 1) * width + along(tf.range(width), 2)
                return tf.where(position == code, dy, tf.zeros((), dy.dtype))

        else:
            area = height * width

            def grad(x, y, dy):
                flat = tf.reshape(x, tf.stack([-1, area, tf.shape(x)[3]]))
                peak_shape = tf.stack([-1, 1, tf.shape(x)[3]])
                dx = _first_max_gradient(
                    flat, tf.reshape(y, peak_shape), tf.reshape(dy, peak_shape), axis=1
                )
                return tf.reshape(dx, tf.shape(x))

    else:
        rows, cols = _bin_table(height, out_h), _bin_table(width, out_w)
        row_start, col_start = rows[:, 0], cols[:, 0]

        def grad(x, y, dy):
            code = _first_max_code(x, y, rows, cols)
            return route_to_first_max(
                x, code, dy, tf.constant(row_start), tf.constant(col_start), True, 1
            )

    return tf.function(grad, jit_compile=True, autograph=False)


def _short_bins(sizes, output_size):
    """Whether every axis shrinks (or keeps its size) with bins of at most `ROUTED_MAX_LENGTH`."""
    return all(
        m <= n and _max_bin_length(n, m) <= ROUTED_MAX_LENGTH
        for n, m in zip(sizes, output_size, strict=True)
    )


def _with_max_gradient(forward, sizes, output_size):
    """Wraps an NHWC max pooling of static `sizes` with the routed gradient."""
    grad_fn = _routed_max_gradient(*sizes, *output_size)

    @tf.custom_gradient
    def pool(x):
        y = forward(x)

        def grad(dy):
            return grad_fn(x, y, dy)

        return y, grad

    return pool


def _separable_average(x, sizes, output_size):
    """Average pooling as sums of strided slices per axis (NHWC, static, shrinking axes).

    Under XLA this fuses into one pass per axis; XLA's reduce-window takes about twice as long
    on CPU (64 -> 7: 4 ms against 7 ms; torch 6 ms). Offsets padded past a bin's end are
    masked out of the sum.
    """
    for axis, n, m in ((1, sizes[0], output_size[0]), (2, sizes[1], output_size[1])):
        if n == m:
            continue
        starts, ends = adaptive_bins(n, m)
        lengths = ends - starts
        rows = _bin_table(n, m)
        total = None
        for t in range(rows.shape[1]):
            values = _take(x, rows[:, t], axis)
            if t >= lengths.min():
                values = values * along(tf.constant(t < lengths, values.dtype), axis)
            total = values if total is None else total + values
        x = total * along(tf.constant(1.0 / lengths, x.dtype), axis)
    return x


def _static_pool(x, sizes, output_size, mode):
    """NHWC pooling of static spatial `sizes`, picking the fastest exact formulation.

    Forward: `1 x 1` average is a mean; under XLA other shrinking averages with short bins are
    sums of slices (`_separable_average`); bins that one strided window makes
    (`_single_window`) are one `avg_pool2d`/`max_pool2d`; other sizes take strided windows per
    run or per-axis fallbacks (`_pool`). Gradients: the average's is the compiled spread
    (`_with_average_gradient`) or, for `1 x 1`, one broadcast; the max's goes to each bin's
    first maximum (`_with_max_gradient`) for `1 x 1` and when shrinking with bins up to
    `ROUTED_MAX_LENGTH` long, else it is TF's.
    """
    if mode == "avg" and tuple(output_size) == (1, 1):
        return _global_average(x)
    window = _single_window(sizes, output_size)
    if window is not None:
        ksize, strides, padding = window
        pool = tf.nn.avg_pool2d if mode == "avg" else tf.nn.max_pool2d

        def forward(x):
            return pool(x, ksize, strides, padding)

    else:

        def forward(x):
            return _pool(x, (1, 2), sizes, output_size, mode)

    if mode == "avg":
        if in_xla_context() and _short_bins(sizes, output_size):

            def forward(x):
                return _separable_average(x, sizes, output_size)

        return _with_average_gradient(forward, sizes, output_size)(x)
    if tuple(output_size) == (1, 1) and in_xla_context():

        def forward(x):  # XLA's reduce is 3x faster than its 64 x 64 reduce-window here
            return tf.reduce_max(x, axis=(1, 2), keepdims=True)

    if tuple(output_size) == (1, 1) or _short_bins(sizes, output_size):
        forward = _with_max_gradient(forward, sizes, output_size)
    return forward(x)


def _adaptive_pool2d(x, output_size, data_format, mode):
    x, output_size, data_format = _check_args(x, output_size, data_format)
    dtype = x.dtype
    if mode == "avg" and dtype in (tf.float16, tf.bfloat16):
        # Accumulate half-precision means in float32, as torch does (opmath type).
        x = tf.cast(x, tf.float32)
    axes = (1, 2) if data_format == "channels_last" else (2, 3)
    sizes = [x.shape[a] for a in axes]
    if None in sizes:
        x = _pool(x, axes, sizes, output_size, mode)
        return tf.cast(x, dtype)
    output_size = [n if m is None else m for n, m in zip(sizes, output_size, strict=True)]
    # Pooling ops need NHWC on CPU; XLA and the converters fold the transposes.
    if data_format == "channels_first":
        x = tf.transpose(x, (0, 2, 3, 1))
    x = _static_pool(x, sizes, output_size, mode)
    if data_format == "channels_first":
        x = tf.transpose(x, (0, 3, 1, 2))
    return tf.cast(x, dtype)


def _pool(x, axes, sizes, output_size, mode):
    """Pools axis by axis: strided pooling ops per run when static, else per-axis fallbacks."""
    runs = [
        _runs(n, m) if n is not None and m is not None and n != m else None
        for n, m in zip(sizes, output_size, strict=True)
    ]
    # Several average runs were slow on CPU (63 -> 32: 17 s first call, then 4x the matmul).
    max_runs = MAX_RUNS if mode == "max" else 1
    # Average: pool the axis that shrinks the most first, so the second pass reads less. Max:
    # the width first, so that each stage's first maximum is the first in row-major order.
    shrink = [(n or 0) / (m or n or 1) for n, m in zip(sizes, output_size, strict=True)]
    for k in [1, 0] if mode == "max" or shrink[1] > shrink[0] else [0, 1]:
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
