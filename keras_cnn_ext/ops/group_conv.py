"""Group actions and group convolutions for the wallpaper groups p4 and p4m.

Cohen & Welling (2016), "Group Equivariant Convolutional Networks", eq. 10-11: a lifting
convolution correlates an image with every rotated (and flipped) copy of each filter, and a
group-to-group convolution also permutes the input's group axis for each output element. As in
escnn's `R2Conv`, the filter bank is expanded once per call from the base filters (one constant
`gather` and a transpose) and ONE ordinary convolution runs, so the layer is as fast as a conv of
the same width and exports with builtin ops.

Conventions (used by every function here and by the layers):

- Group elements are indexed `g = m * 4 + r` for the transform `F^m R^r` (apply `R^r`, then
  `F^m`): `R` rotates an image by 90 degrees counterclockwise (`np.rot90` on the height and width
  axes) and `F` mirrors the width axis. p4 holds `r = 0..3` (`m = 0`); p4m holds all 8.
- A group feature map with `C` fields stores `C * |G|` channels, field-major:
  channel `c * |G| + g` holds field `c` at group element `g` (`reshape(..., C, |G|)`).
- `g` acts on a group feature map by `(g . f)(x, h) = f(g^-1 x, g^-1 h)`: the spatial axes are
  transformed by `g` and the group axis permuted; on a plain image only the spatial axes move.
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

from keras_cnn_ext.utils import normalize_data_format, normalize_tuple

GROUP_ORDERS = {"p4": 4, "p4m": 8}


def check_group(group, name="group"):
    """Returns the lower-case group name, or a ValueError naming the argument."""
    if not isinstance(group, str) or group.lower() not in GROUP_ORDERS:
        raise ValueError(
            f"`{name}` must be one of {tuple(GROUP_ORDERS)}. Received: {name}={group!r}"
        )
    return group.lower()


def group_order(group):
    """The number of elements |G| of `group` (4 for p4, 8 for p4m)."""
    return GROUP_ORDERS[check_group(group)]


def _element(g):
    return divmod(int(g), 4)  # (m, r)


@functools.cache
def _cayley(group):
    """`table[a, b]` = index of the product `a b`, and `inverse[a]`."""
    n = GROUP_ORDERS[group]
    table = np.zeros((n, n), dtype=np.int64)
    for a in range(n):
        m1, r1 = _element(a)
        for b in range(n):
            m2, r2 = _element(b)
            # F^m1 R^r1 F^m2 R^r2 = F^(m1+m2) R^((-1)^m2 r1 + r2), since F R F = R^-1.
            table[a, b] = ((m1 + m2) % 2) * 4 + ((-r1 if m2 else r1) + r2) % 4
    inverse = np.array([int(np.argmax(table[a] == 0)) for a in range(n)])
    return table, inverse


def group_multiplication_table(group):
    """`(|G|, |G|)` int array: `table[a, b]` is the index of the product `a b`."""
    return _cayley(check_group(group))[0].copy()


def group_inverse(group):
    """`(|G|,)` int array: the index of each element's inverse."""
    return _cayley(check_group(group))[1].copy()


def group_permutation(group, g):
    """Indices `p` with `(g . f)[h] = f[p[h]]` on the group axis: `p[h] = g^-1 h`."""
    table, inverse = _cayley(check_group(group))
    return table[inverse[int(g)]].copy()


def _check_element(group, g):
    n = group_order(group)
    if isinstance(g, bool) or not isinstance(g, (int, np.integer)) or not 0 <= g < n:
        raise ValueError(f"`g` must be an integer in [0, {n}) for {group}. Received: g={g!r}")
    return int(g)


def _flip(x, axis, xp):
    return xp.reverse(x, [axis]) if xp is tf else np.flip(x, axis)


def _swap(x, a, b, xp):
    perm = list(range(len(x.shape)))
    perm[a], perm[b] = perm[b], perm[a]
    return xp.transpose(x, perm)


def _rotate(x, r, h_axis, w_axis, xp):
    # numpy's rot90 algorithm, so the TF and NumPy versions agree element for element.
    r %= 4
    if r == 0:
        return x
    if r == 2:
        return _flip(_flip(x, h_axis, xp), w_axis, xp)
    if r == 1:
        return _swap(_flip(x, w_axis, xp), h_axis, w_axis, xp)
    return _flip(_swap(x, h_axis, w_axis, xp), w_axis, xp)


def _spatial(x, g, h_axis, w_axis, xp):
    m, r = _element(g)
    x = _rotate(x, r, h_axis, w_axis, xp)
    return _flip(x, w_axis, xp) if m else x


def rotate90(x, r=1, data_format=None):
    """Rotates the spatial axes of a 4D tensor by `r` x 90 degrees counterclockwise."""
    h, w = _spatial_axes(normalize_data_format(data_format))
    return _rotate(tf.convert_to_tensor(x), int(r), h, w, tf)


def flip_width(x, data_format=None):
    """Mirrors the width axis of a 4D tensor (the reflection `F` of p4m)."""
    _, w = _spatial_axes(normalize_data_format(data_format))
    return tf.reverse(tf.convert_to_tensor(x), [w])


def _spatial_axes(data_format):
    return (2, 3) if data_format == "channels_first" else (1, 2)


def transform_image(x, g, group="p4", data_format=None):
    """`g . x` on a plain image batch: only the spatial axes move (H must equal W if g rotates)."""
    g = _check_element(group, g)
    h, w = _spatial_axes(normalize_data_format(data_format))
    return _spatial(tf.convert_to_tensor(x), g, h, w, tf)


def _permute_group_axis(x, group, g, channel_axis):
    n = group_order(group)
    shape = tf.shape(x)
    split = tf.concat([shape[:channel_axis], [-1, n], shape[channel_axis + 1 :]], axis=0)
    y = tf.gather(tf.reshape(x, split), group_permutation(group, g), axis=channel_axis + 1)
    return tf.reshape(y, shape)


def transform_group_map(x, g, group="p4", data_format=None):
    """`g . f` on a group feature map (`C * |G|` channels, field-major).

    The spatial axes are rotated/flipped by `g` and the group axis permuted, `(g . f)(x, h) =
    f(g^-1 x, g^-1 h)`, which is what a group convolution's output undergoes when its input is
    transformed by `g`.
    """
    g = _check_element(group, g)
    data_format = normalize_data_format(data_format)
    h, w = _spatial_axes(data_format)
    channel_axis = 1 if data_format == "channels_first" else 3
    x = _spatial(tf.convert_to_tensor(x), g, h, w, tf)
    return _permute_group_axis(x, group, g, channel_axis)


@functools.cache
def _bank_indices(group, kh, kw, lifting):
    """`(|G|, kh * kw * G_in)` gather indices into a flattened `(kh, kw, G_in)` base filter.

    Row `g` is the base filter transformed by `g` (spatially, and on its input group axis for a
    group-to-group filter): the indices are obtained by applying the very same array action to
    `arange`, so the bank and `transform_group_map` cannot disagree.
    """
    n = GROUP_ORDERS[group]
    g_in = 1 if lifting else n
    index = np.arange(kh * kw * g_in).reshape(kh, kw, g_in)
    rows = []
    for g in range(n):
        moved = _spatial(index, g, 0, 1, np)
        if not lifting:
            moved = moved[:, :, group_permutation(group, g)]
        rows.append(np.ascontiguousarray(moved).reshape(-1))
    return np.stack(rows).astype(np.int32)


# Banks up to this many weights are expanded with one gather from a precomputed flat index
# (an int32 constant as large as the bank: 1 MiB at the limit); larger ones with a gather over
# the spatial/group axes and a transpose, whose index is independent of the channel counts.
FLAT_GATHER_MAX_WEIGHTS = 1 << 18


@functools.cache
def _flat_bank_indices(group, kh, kw, c_in, filters, lifting):
    """Flat indices into `kernel` (any shape, flattened) giving the whole bank, flattened."""
    n = GROUP_ORDERS[group]
    g_in = 1 if lifting else n
    # (G, kh, kw, G_in) -> (kh, kw, 1, G_in, 1, G): the source position of each bank weight.
    source = _bank_indices(group, kh, kw, lifting).reshape(n, kh, kw, g_in)
    source = source.transpose(1, 2, 3, 0)[:, :, None, :, None, :]
    i, j, h = source // (kw * g_in), (source // g_in) % kw, source % g_in
    c = np.arange(c_in).reshape(1, 1, c_in, 1, 1, 1)
    f = np.arange(filters).reshape(1, 1, 1, 1, filters, 1)
    flat = (((i * kw + j) * c_in + c) * g_in + h) * filters + f  # (kh, kw, C, G_in, F, G)
    return flat.reshape(-1).astype(np.int32)


def expand_filter_bank(kernel, group="p4", lifting=True):
    """Expands base filters into the bank of one ordinary convolution.

    Args:
        kernel: lifting: `(kh, kw, C_in, F)`; group-to-group: `(kh, kw, C_in * |G|, F)` with the
            input channels field-major (`c * |G| + h`).
        group: `"p4"` or `"p4m"`.
        lifting: whether the input is a plain image (True) or a group feature map.

    Returns:
        `(kh, kw, C_in_total, F * |G|)`: output channel `f * |G| + g` holds filter `f`
        transformed by `g`, so the convolution's output is a field-major group feature map.
        For a square kernel the expansion is one gather (banks up to `FLAT_GATHER_MAX_WEIGHTS`)
        or one gather and one transpose (XLA-safe, no loops over data); a non-square kernel
        cannot be rotated and raises.
    """
    group = check_group(group)
    n = GROUP_ORDERS[group]
    kernel = tf.convert_to_tensor(kernel)
    kh, kw, c_total, filters = kernel.shape
    if kh != kw:
        raise ValueError(
            f"`kernel` must be square to be rotated by 90 degrees. Received shape: {kernel.shape}"
        )
    g_in = 1 if lifting else n
    if c_total % g_in:
        raise ValueError(
            f"`kernel` input channels must be a multiple of |G| = {n} for a group-to-group "
            f"filter. Received shape: {kernel.shape}"
        )
    c_in = c_total // g_in
    if kh * kw * c_total * filters * n <= FLAT_GATHER_MAX_WEIGHTS:
        # One gather: a per-call cost of one small op (the filter expansion is a fixed cost per
        # call, not per image, and a small layer's convolution is short).
        index = _flat_bank_indices(group, kh, kw, c_in, filters, bool(lifting))
        bank = tf.gather(tf.reshape(kernel, (-1,)), index)
        return tf.reshape(bank, (kh, kw, c_total, filters * n))
    # (kh, kw, C, G_in, F) -> (kh * kw * G_in, C, F): the axes the group acts on come first.
    base = tf.reshape(kernel, (kh, kw, c_in, g_in, filters))
    base = tf.reshape(tf.transpose(base, (0, 1, 3, 2, 4)), (kh * kw * g_in, c_in, filters))
    bank = tf.gather(base, _bank_indices(group, kh, kw, bool(lifting)))  # (G, kh*kw*G_in, C, F)
    bank = tf.reshape(bank, (n, kh, kw, g_in, c_in, filters))
    bank = tf.transpose(bank, (1, 2, 4, 3, 5, 0))  # (kh, kw, C, G_in, F, G)
    return tf.reshape(bank, (kh, kw, c_total, filters * n))


def group_conv2d(
    inputs,
    kernel,
    group="p4",
    lifting=True,
    strides=1,
    padding="valid",
    dilation_rate=1,
    data_format=None,
):
    """Lifting or group-to-group convolution: the expanded bank in one `tf.nn.convolution`.

    Args:
        inputs: 4D tensor; a group feature map (`C_in * |G|` channels) unless `lifting`.
        kernel: base filters, see `expand_filter_bank`.
        group, lifting: see `expand_filter_bank`.
        strides, padding, dilation_rate, data_format: as `keras.ops.conv`.

    Returns:
        The group feature map with `F * |G|` channels, field-major.
    """
    data_format = normalize_data_format(data_format)
    strides = normalize_tuple(strides, 2, "strides", minimum=1)
    dilation_rate = normalize_tuple(dilation_rate, 2, "dilation_rate", minimum=1)
    bank = tf.cast(expand_filter_bank(kernel, group, lifting), inputs.dtype)
    channels_first = data_format == "channels_first"
    if channels_first:
        # TF's CPU Conv2D only runs NHWC ("only supports the NHWC tensor format on the CPU").
        inputs = tf.transpose(inputs, (0, 2, 3, 1))
    outputs = tf.nn.convolution(
        inputs, bank, strides=strides, padding=padding.upper(), dilations=dilation_rate
    )
    return tf.transpose(outputs, (0, 3, 1, 2)) if channels_first else outputs


def group_pool(inputs, group="p4", reduction="max", data_format=None):
    """Max or mean over the group axis: `C * |G|` channels -> `C` invariant channels."""
    n = group_order(group)
    data_format = normalize_data_format(data_format)
    channel_axis = 1 if data_format == "channels_first" else 3
    shape = tf.shape(inputs)
    split = tf.concat([shape[:channel_axis], [-1, n], shape[channel_axis + 1 :]], axis=0)
    if reduction not in ("max", "avg"):
        raise ValueError(f"`reduction` must be 'max' or 'avg'. Received: reduction={reduction!r}")
    reduce = tf.reduce_max if reduction == "max" else tf.reduce_mean
    return reduce(tf.reshape(inputs, split), axis=channel_axis + 1)


def add_group_bias(inputs, bias, group="p4", data_format=None):
    """Adds one bias per field, shared by its |G| channels (so equivariance holds)."""
    n = group_order(group)
    data_format = normalize_data_format(data_format)
    bias = tf.cast(bias, inputs.dtype)
    # Each field's bias repeated |G| times (tf.repeat builds ~20 shape ops for the same).
    bias = tf.reshape(tf.broadcast_to(bias[:, None], (bias.shape[0], n)), (-1,))
    fmt = "NCHW" if data_format == "channels_first" else "NHWC"
    return tf.nn.bias_add(inputs, bias, data_format=fmt)  # BiasAddGrad, as Keras' Conv2D
