"""Plain convolution stacks (LeNet, AlexNet, VGG): layer tables and the one builder body.

A plain network is a table of `Conv`, `Pool` and `LRN` entries, applied in order by
`conv_stack`, and a flattening classifier with hidden dense layers; `plain_network` builds the
whole model from a table, so `LeNet5`, `AlexNet` and `VGG` only choose their table and options.
"""

from __future__ import annotations

import collections

import keras

from keras_cnn_ext.layers.grouped_conv2d import GroupedConv2D
from keras_cnn_ext.layers.local_response_normalization import LocalResponseNormalization
from keras_cnn_ext.models.builder import finish_model
from keras_cnn_ext.models.heads import FLATTEN_HEAD_POOLINGS
from keras_cnn_ext.models.inputs import (
    Downsample,
    check_multiplier,
    make_inputs,
    validate_builder_args,
)
from keras_cnn_ext.models.parts import act_name, apply, make_activation, make_norm, make_pool
from keras_cnn_ext.utils import make_divisible, normalize_data_format


class Conv(collections.namedtuple("Conv", ["filters", "kernel", "strides", "padding", "groups"])):
    """A convolution entry of a layer table: `padding` is `"same"`, `"valid"` or an int (zero
    padding on each side, torchvision style, followed by a `"valid"` convolution)."""

    __slots__ = ()

    def __new__(cls, filters, kernel=3, strides=1, padding="same", groups=1):
        return super().__new__(cls, filters, kernel, strides, padding, groups)


class Pool(collections.namedtuple("Pool", ["size", "strides", "padding"])):
    """A pooling entry of a layer table."""

    __slots__ = ()

    def __new__(cls, size=2, strides=2, padding="valid"):
        return super().__new__(cls, size, strides, padding)


class LRN(collections.namedtuple("LRN", [])):
    """A local response normalisation entry of a layer table (AlexNet; no parameters)."""

    __slots__ = ()


def stack_stages(table):
    """The `Downsample` list of a layer table, for `make_inputs`/`check_min_size`."""
    stages, block, conv = [], 1, 0
    for entry in table:
        if isinstance(entry, LRN):
            continue
        if isinstance(entry, Pool):
            stages.append(
                Downsample(f"block{block}_pool", entry.size, entry.strides, entry.padding)
            )
            block, conv = block + 1, 0
        else:
            conv += 1
            padding = entry.padding if isinstance(entry.padding, str) else 2 * entry.padding
            stages.append(
                Downsample(f"block{block}_conv{conv}", entry.kernel, entry.strides, padding)
            )
    return stages


def conv_stack(
    x,
    table,
    *,
    activation="relu",
    norm=None,
    pool_type="max",
    width_multiplier=1.0,
    width_divisor=8,
    data_format=None,
):
    """Applies a plain layer table: each `Conv` is convolution -> `norm` -> `activation`, each
    `Pool` a `pool_type` pooling, each `LRN` a `LocalResponseNormalization` (paper defaults).

    Layers are named like keras.applications' VGG: `block{b}_conv{c}`, `block{b}_pool`.
    With `width_multiplier != 1`, filter counts become `make_divisible(filters * multiplier,
    width_divisor)` (grouped convolutions keep counts divisible by their groups).
    """
    data_format = normalize_data_format(data_format)
    block, conv = 1, 0
    for entry in table:
        if isinstance(entry, LRN):
            x = LocalResponseNormalization(data_format=data_format, name=f"block{block}_lrn")(x)
            continue
        if isinstance(entry, Pool):
            x = make_pool(
                pool_type,
                entry.size,
                entry.strides,
                entry.padding,
                data_format,
                f"block{block}_pool",
            )(x)
            block, conv = block + 1, 0
            continue
        conv += 1
        base = f"block{block}_conv{conv}"
        filters = entry.filters
        if width_multiplier != 1.0:
            divisor = max(width_divisor, entry.groups) // entry.groups * entry.groups
            filters = make_divisible(filters * width_multiplier, divisor)
        padding = entry.padding
        if not isinstance(padding, str):
            x = keras.layers.ZeroPadding2D(padding, data_format=data_format, name=f"{base}_pad")(x)
            padding = "valid"
        # Grouped convolutions through GroupedConv2D: Keras' own runs them in a nested XLA
        # function on CPU, which tf2onnx cannot export.
        conv_cls = GroupedConv2D if entry.groups > 1 else keras.layers.Conv2D
        x = conv_cls(
            filters,
            entry.kernel,
            strides=entry.strides,
            padding=padding,
            groups=entry.groups,
            data_format=data_format,
            name=base,
        )(x)
        x = apply(make_norm(norm, f"{base}_bn", data_format), x)
        x = apply(make_activation(activation, f"{base}_{act_name(activation)}"), x)
    return x


def plain_network(
    table,
    *,
    include_top,
    weights,
    input_tensor,
    input_shape,
    pooling,
    classes,
    classifier_activation,
    name,
    default_shape,
    fc_units,
    head_size,
    head_pooling=None,
    dropout=0.0,
    activation="relu",
    norm=None,
    pool_type="max",
    width_multiplier=1.0,
    width_divisor=8,
):
    """Builds a plain network: `conv_stack(table)`, then a flattening classifier.

    Args:
        table: the layer table (`Conv`, `Pool`, `LRN` entries).
        include_top, weights, input_tensor, input_shape, pooling, classes,
            classifier_activation, name: as in `keras.applications`.
        default_shape: the network's usual `(height, width, channels)`.
        fc_units: the widths of the hidden dense layers.
        head_size: the output size of an adaptive `head_pooling`.
        head_pooling: one of `FLATTEN_HEAD_POOLINGS`; `None` flattens the feature map as it is
            (the input size must then be static when `include_top`).
        dropout: the dropout rate after each hidden dense layer.
        activation, norm, pool_type, width_multiplier, width_divisor: as in `conv_stack`;
            `activation` is also the hidden dense layers'.

    Raises:
        ValueError: for any invalid argument, naming it.
    """
    validate_builder_args(
        include_top=include_top,
        weights=weights,
        pooling=pooling,
        classes=classes,
        dropout=dropout,
        head_pooling=(head_pooling, FLATTEN_HEAD_POOLINGS),
    )
    check_multiplier(width_multiplier, "width_multiplier")
    inputs = make_inputs(
        input_tensor,
        input_shape,
        default_shape=default_shape,
        stages=stack_stages(table),
        include_top=include_top,
        require_static=include_top and head_pooling is None,
    )
    x = conv_stack(
        inputs,
        table,
        activation=activation,
        norm=norm,
        pool_type=pool_type,
        width_multiplier=width_multiplier,
        width_divisor=width_divisor,
    )
    return finish_model(
        inputs,
        x,
        name=name,
        weights=weights,
        include_top=include_top,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        dropout=dropout,
        hidden_units=tuple(fc_units),
        hidden_activation=activation,
        flatten=True,
        head_pooling=head_pooling,
        head_size=head_size,
    )
