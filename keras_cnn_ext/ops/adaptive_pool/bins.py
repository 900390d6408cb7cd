"""Bin arithmetic of adaptive pooling, in pure NumPy (static sizes, evaluated while tracing).

Bin `i` of an axis of length `n` pooled to `m` spans `[floor(i * n / m), ceil((i + 1) * n / m))`
(ATen `AdaptivePooling.h`). A bin's length is `ceil(frac(i * n / m) + n / m)`: `ceil(n / m)` or
one more. Everything here returns NumPy arrays or Python ints that the formulations bake into
the graph as constants.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "adaptive_bins",
    "averaging_matrix",
    "axis_window",
    "bin_table",
    "bins_of_rows",
    "max_bin_length",
    "max_gather_tables",
    "runs",
    "single_window",
    "window",
]


def adaptive_bins(in_size, out_size):
    """Returns `(starts, ends)` of the `out_size` adaptive bins over an axis of `in_size`.

    PyTorch's rule: `start = floor(i * in / out)`, `end = ceil((i + 1) * in / out)`, in exact
    integer arithmetic.

    Example:

    >>> adaptive_bins(10, 4)
    (array([0, 2, 5, 7]), array([ 3,  5,  8, 10]))
    """
    i = np.arange(out_size)
    starts = (i * in_size) // out_size
    ends = ((i + 1) * in_size + out_size - 1) // out_size
    return starts, ends


def max_bin_length(in_size, out_size):
    """The length of the longest bin."""
    starts, ends = adaptive_bins(in_size, out_size)
    return int(np.max(ends - starts))


def averaging_matrix(in_size, out_size):
    """The `(out, in)` float64 matrix whose row `i` averages the inputs of bin `i`."""
    starts, ends = adaptive_bins(in_size, out_size)
    j = np.arange(in_size)
    inside = (j >= starts[:, None]) & (j < ends[:, None])
    return inside / (ends - starts)[:, None]


def bin_table(in_size, out_size):
    """`(out, L)` int32 rows of every bin, padded to the longest bin `L` by repeating its last row."""
    starts, ends = adaptive_bins(in_size, out_size)
    length = max_bin_length(in_size, out_size)
    return np.minimum(starts[:, None] + np.arange(length), ends[:, None] - 1).astype(np.int32)


def bins_of_rows(in_size, out_size):
    """`(D, in)` table: the bins holding each input row (at most D), `out_size` where fewer."""
    starts, ends = adaptive_bins(in_size, out_size)
    rows = np.arange(in_size)
    member = (rows >= starts[:, None]) & (rows < ends[:, None])  # (out, in)
    row, bins = np.nonzero(member.T)  # sorted by row, then bin
    rank = np.arange(len(row)) - np.searchsorted(row, row)
    table = np.full((int(member.sum(0).max()), in_size), out_size)
    table[rank, row] = bins
    return table


def max_gather_tables(in_size, out_size):
    """Static gather/scatter tables for max pooling one axis by gathers.

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
    table = bins_of_rows(in_size, out_size)
    valid = table < out_size
    bins = np.minimum(table, out_size - 1)
    back = np.where(valid, bins * length + np.arange(in_size) - starts[bins], zero_slot)
    return idx.reshape(-1), back, length


def runs(in_size, out_size):
    """Splits the bins of an axis into runs that one strided pooling window covers.

    A run is `(start, step, length, count)`: `count` consecutive bins of the same `length`
    whose starts are `step` apart. When `out` divides `in` there is one run; 64 -> 7 is one run
    (window 10, step 9); 63 -> 32 three (`[0, 2)`, 30 windows of 3 every 2 rows, `[61, 63)`).

    Example:

    >>> runs(63, 32)
    [(0, 1, 2, 1), (1, 2, 3, 30), (61, 1, 2, 1)]
    """
    starts, ends = adaptive_bins(in_size, out_size)
    lengths = ends - starts
    found = []
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
        found.append((int(starts[first]), step if count > 1 else 1, int(lengths[first]), count))
        first += count
    return found


def window(in_size, out_size, padding):
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
    k = max_bin_length(in_size, out_size)
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


def axis_window(in_size, out_size):
    """`(k, s, top)` when bins `[s*i - top, s*i - top + k)`, clipped, are an axis' bins, or `None`.

    Example:

    >>> axis_window(64, 7), axis_window(63, 32), axis_window(10, 7)
    ((10, 9, 0), (3, 2, 1), None)
    """
    windows = (window(in_size, out_size, padding) for padding in ("VALID", "SAME"))
    return next((w for w in windows if w is not None), None)


def single_window(sizes, output_size):
    """`(ksize, strides, padding)` of one pooling op that makes the 2-D bins, or `None`.

    Example:

    >>> single_window((64, 64), (7, 7))
    ((10, 10), (9, 9), 'VALID')
    """
    for padding in ("VALID", "SAME"):
        windows = [window(n, m, padding) for n, m in zip(sizes, output_size, strict=True)]
        if None not in windows:
            (kh, sh, _), (kw, sw, _) = windows
            return (kh, kw), (sh, sw), padding
    return None
