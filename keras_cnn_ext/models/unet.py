"""A small U-Net (Ronneberger et al., 2015) for segmentation."""

from __future__ import annotations

import keras

from keras_cnn_ext.models.builder import finalize_model
from keras_cnn_ext.models.inputs import (
    check_multiplier,
    check_positive_int,
    make_inputs,
    validate_builder_args,
)
from keras_cnn_ext.models.parts import act_name, apply, make_activation, make_norm, make_pool
from keras_cnn_ext.models.registry import register_builder
from keras_cnn_ext.utils import normalize_data_format

UNET_MAX_DEPTH = 6


def _double_conv(x, filters, prefix, norm, activation, dropout, data_format):
    """Two 3x3 "same" convolutions, each followed by `norm` and `activation`."""
    act = act_name(activation)
    for i in (1, 2):
        x = keras.layers.Conv2D(
            filters,
            3,
            padding="same",
            use_bias=norm is None,
            data_format=data_format,
            name=f"{prefix}_conv{i}",
        )(x)
        x = apply(make_norm(norm, f"{prefix}_conv{i}_bn", data_format), x)
        x = apply(make_activation(activation, f"{prefix}_conv{i}_{act}"), x)
        if i == 1 and dropout:
            x = keras.layers.Dropout(dropout, name=f"{prefix}_drop")(x)
    return x


@register_builder("unet")
def UNet(
    input_shape=None,
    classes=1,
    base_filters=16,
    depth=4,
    include_top=True,
    weights=None,
    input_tensor=None,
    classifier_activation="auto",
    name="unet",
    *,
    norm="batch",
    activation="relu",
    pool_type="max",
    width_multiplier=1.0,
    dropout=0.0,
):
    """Builds a small U-Net: a convolutional encoder, a transposed-convolution decoder, skips.

    Ronneberger, Fischer and Brox, "U-Net: Convolutional Networks for Biomedical Image
    Segmentation" (MICCAI 2015), with "same" padding (the output has the input's size) and
    batch normalisation by default. Level `i` (0 to `depth`) has `base_filters * 2**i`
    filters: each encoder level is two 3x3 convolutions and a 2x2 pooling; each decoder level
    a 2x2 stride-2 `Conv2DTranspose`, a concatenation with the encoder's skip tensor, two 3x3
    convolutions. The head is a 1x1 convolution to `classes` channels.

    Sizes: with a known `input_shape` whose height or width is not a multiple of `2**depth`,
    the input is zero-padded at the bottom/right to the next multiple and the output cropped
    back, so the output always has the input's height and width. With unknown spatial sizes
    (`input_shape=(None, None, C)`) inputs must be multiples of `2**depth`.

    Train it with `keras_cnn_ext.losses.SoftIoULoss` or `keras.losses.Dice` (pass
    `axis=(1, 2, 3)` for per-image values), or cross-entropy.

    Args:
        input_shape: `(height, width, channels)`; default `(None, None, 3)`.
        classes: output channels (1 for binary masks). Default 1.
        base_filters: filters of the first level. Default 16.
        depth: the number of downsamplings, 1 to 6. Default 4.
        include_top: add the 1x1 classifier; otherwise the output is the last decoder
            feature map. Default True.
        weights, input_tensor, name: as in `keras.applications`.
        classifier_activation: the head's activation; `"auto"` (default) is `"sigmoid"` for
            one class and `"softmax"` otherwise; `None` gives logits.
        norm: normalisation after each convolution (`create_norm` names, a layer class, or
            `None`). Default `"batch"`.
        activation: default `"relu"`.
        pool_type: the encoder's downsampling, `"max"` (default) or `"avg"`.
        width_multiplier: scales every level's filters. Default 1.
        dropout: dropout between the two convolutions of each level. Default 0.

    Input shape:
        `(batch, height, width, channels)` (channels last).

    Output shape:
        `(batch, height, width, classes)`.

    Example:

    >>> model = UNet((20, 20, 3), classes=2, base_filters=4, depth=2)
    >>> model.output_shape
    (None, 20, 20, 2)
    """
    validate_builder_args(
        include_top=include_top, weights=weights, classes=classes, dropout=dropout
    )
    base_filters = check_positive_int(base_filters, "base_filters")
    depth = check_positive_int(depth, "depth", UNET_MAX_DEPTH)
    check_multiplier(width_multiplier, "width_multiplier")
    if classifier_activation == "auto":
        classifier_activation = "sigmoid" if classes == 1 else "softmax"
    data_format = normalize_data_format(None)
    channels_first = data_format == "channels_first"
    inputs = make_inputs(input_tensor, input_shape, default_shape=(None, None, 3))
    spatial = tuple(inputs.shape[2:4] if channels_first else inputs.shape[1:3])
    multiple = 2**depth
    pads = tuple(0 if s is None else -s % multiple for s in spatial)
    x = inputs
    if any(pads):
        # Pad to a multiple of 2**depth so every pooling halves exactly and the decoder's
        # upsampled tensors line up with the skips; the output is cropped back below.
        x = keras.layers.ZeroPadding2D(
            ((0, pads[0]), (0, pads[1])), data_format=data_format, name="pad_to_multiple"
        )(x)
    filters = [max(1, round(base_filters * width_multiplier * 2**i)) for i in range(depth + 1)]
    common = dict(norm=norm, activation=activation, dropout=dropout, data_format=data_format)
    skips = []
    for level in range(depth):
        x = _double_conv(x, filters[level], f"enc{level + 1}", **common)
        skips.append(x)
        x = make_pool(pool_type, 2, 2, data_format=data_format, name=f"enc{level + 1}_pool")(x)
    x = _double_conv(x, filters[depth], "bottleneck", **common)
    for level in reversed(range(depth)):
        x = keras.layers.Conv2DTranspose(
            filters[level], 2, strides=2, data_format=data_format, name=f"dec{level + 1}_up"
        )(x)
        x = keras.layers.Concatenate(
            axis=1 if channels_first else -1, name=f"dec{level + 1}_concat"
        )([x, skips[level]])
        x = _double_conv(x, filters[level], f"dec{level + 1}", **common)
    if include_top:
        # float32 head: a float16 softmax/sigmoid saturates and its loss underflows.
        x = keras.layers.Conv2D(
            classes,
            1,
            activation=classifier_activation,
            data_format=data_format,
            dtype="float32",
            name="predictions",
        )(x)
    if any(pads):
        x = keras.layers.Cropping2D(
            ((0, pads[0]), (0, pads[1])), data_format=data_format, name="crop_to_input"
        )(x)
    return finalize_model(inputs, x, name=name, weights=weights)
