"""Pluggable parts of a builder: normalisation, activation and pooling layers by name.

Builders take `norm`, `activation` and `pool_type` as a name or a layer class; the names are
resolved once, package-wide, by `keras_cnn_ext.layers.factories`. These wrappers add what a
builder needs on top: `None` means "no layer" (so a model without normalisation has no
`Identity` layers and keeps its layer names), and the channel axis follows `data_format`.
"""

from __future__ import annotations

import keras

from keras_cnn_ext.layers.factories import (
    ADAPTIVE_POOLINGS,
    POOLINGS,
    create_activation,
    create_norm,
    create_pooling,
)
from keras_cnn_ext.utils import normalize_data_format

# The poolings that downsample a feature map inside a network (the adaptive ones pool to a
# fixed size and belong to heads).
POOL_TYPES = tuple(p for p in POOLINGS if p not in ADAPTIVE_POOLINGS)


def make_norm(norm, name, data_format=None, **kwargs):
    """A normalisation layer (`create_norm` names or a layer class), or None for `norm=None`."""
    if norm is None:
        return None
    axis = 1 if normalize_data_format(data_format) == "channels_first" else -1
    return create_norm(norm, axis=axis, name=name, **kwargs)


def make_activation(activation, name):
    """An activation layer (`create_activation` names, callables, layer classes), or None."""
    if activation is None:
        return None
    return create_activation(activation, name=name)


def act_name(activation):
    """The name part of an activation's layer: its name, or `"act"` for a callable or class."""
    return activation if isinstance(activation, str) else "act"


def make_pool(pool_type, pool_size, strides, padding="valid", data_format=None, name=None):
    """A downsampling pooling layer: `"max"`, `"avg"`, `"fractional"` (ratio `strides`) or a
    layer class taking Keras' pooling arguments."""
    data_format = normalize_data_format(data_format)
    if isinstance(pool_type, type) and issubclass(pool_type, keras.layers.Layer):
        return pool_type(
            pool_size=pool_size,
            strides=strides,
            padding=padding,
            data_format=data_format,
            name=name,
        )
    if pool_type not in POOL_TYPES:
        raise ValueError(
            f"`pool_type` must be one of {POOL_TYPES} or a pooling layer class. "
            f"Received: pool_type={pool_type!r}"
        )
    if pool_type == "fractional":
        return create_pooling(
            pool_type, pooling_ratio=float(strides), data_format=data_format, name=name
        )
    return create_pooling(
        pool_type,
        pool_size=pool_size,
        strides=strides,
        padding=padding,
        data_format=data_format,
        name=name,
    )


def apply(layer, x):
    """`layer(x)`, or `x` when the factory returned no layer."""
    return x if layer is None else layer(x)
