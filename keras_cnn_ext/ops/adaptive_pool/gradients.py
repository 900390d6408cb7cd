"""Gradients of adaptive pooling for static NHWC sizes, as compiled `(x, y, dy) -> dx` functions.

Each runs as a nested `jit_compile=True` function even inside a plain `tf.function` (a gradient
never reaches an exporter) and is built once per static size (`functools.cache`):

* `broadcast`: the 1 x 1 average's, one broadcast (TF's mean gradient tiles, then divides: two
  full-size tensors instead of one);
* `spread`: any average's: each bin's gradient, scaled by its area, spread back to its rows,
  by broadcasting blocks where one strided window makes an axis' bins (`spread_blocks`) and
  with gathers elsewhere (`spread_gathers`), where TF's AvgPoolGrad is slower on CPU and XLA's
  own is up to 30x slower for strided windows;
* `first_max_chains`, `first_max_search`, `first_max_routed`: the max's, each output's gradient
  to the first maximum of its bin in row-major order, as torch and TF's MaxPoolGrad do. XLA
  fuses them into passes that read `x` and one that writes `dx`, where TF's MaxPoolGrad
  recomputes the pooling slowly and XLA's select-and-scatter takes 3-4x as long.
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

from keras_cnn_ext.ops._compiled import compiled
from keras_cnn_ext.ops._window_gradient import along, materialize, route_to_first_max
from keras_cnn_ext.ops.adaptive_pool import bins
from keras_cnn_ext.ops.adaptive_pool.forward import first_max_gradient, slice_axis, take

__all__ = [
    "GRADIENTS",
    "broadcast_gradient",
    "first_max_chains_gradient",
    "first_max_routed_gradient",
    "first_max_search_gradient",
    "spread_back",
    "spread_blocks",
    "spread_gathers",
    "spread_gradient",
    "with_gradient",
]


# --- average -------------------------------------------------------------------------------------


def spread_gathers(dy, axis, in_size, out_size):
    """Adjoint of summing each bin of `axis`, for any bins: D gathers from the small tensor, plus
    a zero row for rows in fewer than D bins, instead of a scatter or XLA's AvgPoolGrad, which
    is very slow for strided overlapping windows.
    """
    table = bins.bins_of_rows(in_size, out_size)
    pad = tf.unstack(tf.shape(dy))
    pad[axis] = 1
    dy = tf.concat([dy, tf.zeros(tf.stack(pad), dy.dtype)], axis=axis)
    dx = tf.gather(dy, table[0], axis=axis)
    for rows in table[1:]:
        dx += tf.gather(dy, rows, axis=axis)
    return dx


def spread_blocks(dy, axis, in_size, k, s, top):
    """`spread_gathers` for bins `[s*b - top, s*b - top + k)` clipped to the input, without gathers.

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
        return slice_axis(dy, axis, q - u, q - u + blocks)

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
    return slice_axis(dx, axis, top, top + in_size)


def spread_back(dy, axis, in_size, out_size):
    """Adjoint of summing each bin of `axis`: every input row gets the sum of its bins' `dy`."""
    axis_window = bins.axis_window(in_size, out_size)
    if axis_window is not None:
        return spread_blocks(dy, axis, in_size, *axis_window)
    return spread_gathers(dy, axis, in_size, out_size)


def broadcast_gradient(height, width, out_h, out_w):
    """The 1 x 1 average's gradient: `dy / area` broadcast to the input (not compiled)."""
    del out_h, out_w
    area = height * width

    def grad(x, y, dy):
        del y
        return tf.broadcast_to(dy * tf.constant(1.0 / area, dy.dtype), tf.shape(x))

    return grad


@functools.cache
def spread_gradient(height, width, out_h, out_w):
    """Any average's gradient: scale by each bin's inverse area, then `spread_back` per axis.

    XLA fuses the scaling and the spreads into one pass that writes `dx`.
    """
    pooled = [
        (a, n, m)
        for a, n, m in zip((1, 2), (height, width), (out_h, out_w), strict=True)
        if m not in (None, n)
    ]
    inv_area = np.ones((1, 1, 1, 1))
    for a, n, m in pooled:
        starts, ends = bins.adaptive_bins(n, m)
        inv_area = inv_area * (1.0 / (ends - starts)).reshape(
            [1, m, 1, 1] if a == 1 else [1, 1, m, 1]
        )

    def spread(dy):
        dy = dy * tf.constant(inv_area, dy.dtype)
        for a, n, m in pooled[::-1]:
            dy = spread_back(dy, a, n, m)
        return dy

    spread = compiled(spread)

    def grad(x, y, dy):
        del x, y
        return spread(dy)

    return grad


# --- max -----------------------------------------------------------------------------------------


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


def _first_max_code(x, y, rows, cols):
    """`h * width + w` of the first maximum, in row-major order, of every bin (NHWC, static).

    Separable: each input row's maximum over every column bin and the first column holding it,
    then, per bin, the first row whose maximum is the bin's. Offsets padded past a bin's end
    repeat its last row/column, which comes later in that order, so they never win.
    """
    width = x.shape[2]
    taken = [take(x, cols[:, t], 2) for t in range(cols.shape[1])]
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
        candidate = along(row, 1) * width + take(first_col, rows[:, t], 1)
        hit = take(row_max, rows[:, t], 1) == y
        code = candidate if code is None else tf.where(hit, candidate, code)
    return materialize(code)


@functools.cache
def first_max_chains_gradient(height, width, out_h, out_w):
    """The 1 x 1 max's gradient, the first maximum found by select chains over rows and columns."""
    del out_h, out_w

    def grad(x, y, dy):
        code = _global_first_max_code(x, y)
        position = along(tf.range(height), 1) * width + along(tf.range(width), 2)
        return tf.where(position == code, dy, tf.zeros((), dy.dtype))

    return compiled(grad)


@functools.cache
def first_max_search_gradient(height, width, out_h, out_w):
    """The 1 x 1 max's gradient, the first maximum found by a `reduce_min` over a full-size select."""
    del out_h, out_w
    area = height * width

    def grad(x, y, dy):
        flat = tf.reshape(x, tf.stack([-1, area, tf.shape(x)[3]]))
        peak_shape = tf.stack([-1, 1, tf.shape(x)[3]])
        dx = first_max_gradient(flat, tf.reshape(y, peak_shape), tf.reshape(dy, peak_shape), axis=1)
        return tf.reshape(dx, tf.shape(x))

    return compiled(grad)


@functools.cache
def first_max_routed_gradient(height, width, out_h, out_w):
    """A shrinking max's gradient: each bin's first maximum code, then `route_to_first_max`."""
    rows, cols = bins.bin_table(height, out_h), bins.bin_table(width, out_w)
    row_start, col_start = rows[:, 0], cols[:, 0]

    def grad(x, y, dy):
        code = _first_max_code(x, y, rows, cols)
        return route_to_first_max(
            x, code, dy, tf.constant(row_start), tf.constant(col_start), True, 1
        )

    return compiled(grad)


# Each factory takes `(height, width, out_h, out_w)` and returns `(x, y, dy) -> dx`.
GRADIENTS = {
    "broadcast": broadcast_gradient,
    "spread": spread_gradient,
    "first_max_chains": first_max_chains_gradient,
    "first_max_search": first_max_search_gradient,
    "first_max_routed": first_max_routed_gradient,
}


def with_gradient(forward, gradient):
    """`forward` (`x -> y`) whose gradient is `gradient(x, y, dy)`."""

    @tf.custom_gradient
    def pool(x):
        y = forward(x)

        def grad(dy):
            return gradient(x, y, dy)

        return y, grad

    return pool
