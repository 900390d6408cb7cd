"""Max-pooling gradients as fused gathers, shared by fractional and adaptive max pooling.

Both poolings have windows whose starts increase along each axis and where a position lies in
at most two windows per axis (its own, the last one starting at or before it, and the one
before). The gradient of each output goes to the first maximum of its window in row-major order
(TF's MaxPoolGrad and FractionalMaxPoolGrad, and torch's adaptive_max_pool2d): the caller
encodes that maximum as `h * width + w` ("code"), and `route_to_first_max` gathers, for every
input position, the upstream gradients of the windows whose code names it. Under XLA this is
one fused loop that writes the input gradient once, with no scatter.
"""

from __future__ import annotations

import tensorflow as tf


def along(vector, axis):
    """Reshapes a 1-D vector to broadcast along `axis` of a rank-4 tensor."""
    shape = [1, 1, 1, 1]
    shape[axis] = -1
    return tf.reshape(vector, shape)


def materialize(code):
    """Makes XLA write the (non-negative) argmax codes to memory instead of fusing them.

    XLA would otherwise copy the argmax search into each of the four gathers that read it and
    redo it per read (its optimisation barrier is removed before fusion on CPU, and identity
    scatters are simplified away). A conditional's operand is always materialised, and XLA
    cannot prove at compile time that the codes are non-negative, so it keeps the branch.
    Only used inside compiled functions.
    """
    keep = tf.reduce_all(tf.reshape(code, [-1])[:1] >= 0)
    return tf.cond(keep, lambda: code, lambda: tf.zeros_like(code))


def _owners(start, size, overlapping):
    """The windows that may hold each position, earlier first, as `(index, valid)` pairs.

    Position `p` lies in `own(p)`, the last window starting at or before it, and when windows
    overlap possibly also in `own(p) - 1`.
    """
    positions = tf.range(size, dtype=tf.int32)
    own = tf.reduce_sum(tf.cast(start[None, :] <= positions[:, None], tf.int32), axis=1) - 1
    owners = [(tf.maximum(own, 0), own >= 0)]
    if overlapping:
        owners.insert(0, (tf.maximum(own - 1, 0), own >= 1))
    return owners


def route_to_first_max(x, code, grad_z, row_start, col_start, overlapping, h_axis):
    """Sends every output gradient to its window's first maximum, as gathers (no scatter).

    Args:
        x: the pooled input (only its shape is used).
        code: int32, output-shaped: `h * width + w` of each window's first maximum.
        grad_z: the upstream gradient, output-shaped.
        row_start, col_start: int32 window starts along the height and the width.
        overlapping: whether a position may also lie in the window before its own.
        h_axis: 1 (NHWC) or 2 (NCHW).

    An input position receives from at most 2 x 2 windows. TF adds their gradients in output
    order ((i-1, j-1), (i-1, j), (i, j-1), (i, j)); adding them in that order keeps the float
    result bit-identical.
    """
    w_axis = h_axis + 1
    height, width = tf.shape(x)[h_axis], tf.shape(x)[w_axis]
    position = along(tf.range(height), h_axis) * width + along(tf.range(width), w_axis)
    zero = tf.zeros([], grad_z.dtype)
    grad_x = None
    for row_owner, row_valid in _owners(row_start, height, overlapping):
        code_rows = tf.gather(code, row_owner, axis=h_axis)
        grad_rows = tf.gather(grad_z, row_owner, axis=h_axis)
        for col_owner, col_valid in _owners(col_start, width, overlapping):
            hit = (tf.gather(code_rows, col_owner, axis=w_axis) == position) & (
                along(row_valid, h_axis) & along(col_valid, w_axis)
            )
            term = tf.where(hit, tf.gather(grad_rows, col_owner, axis=w_axis), zero)
            grad_x = term if grad_x is None else grad_x + term
    return grad_x
