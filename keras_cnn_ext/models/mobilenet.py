"""MobileNet v1 (Howard et al., 2017): depthwise-separable convolutions with a width multiplier."""

from __future__ import annotations

import keras

from keras_cnn_ext.layers.separable_conv_block import SeparableConvBlock
from keras_cnn_ext.models.builder import finish_model
from keras_cnn_ext.models.inputs import (
    Downsample,
    check_multiplier,
    check_positive_int,
    make_inputs,
    validate_builder_args,
)
from keras_cnn_ext.models.parts import act_name, apply, make_activation, make_norm
from keras_cnn_ext.models.registry import register_builder
from keras_cnn_ext.utils import normalize_data_format

# Table 1 of the paper: the stem's filters, then (pointwise filters, stride) of the 13
# depthwise-separable blocks.
MOBILENET_V1_STEM = 32
MOBILENET_V1_BLOCKS = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)


def mobilenet_v1_stages():
    """The spatial reductions (stem, then each stride-2 block) for input-size checks."""
    stages = [Downsample("conv1", 3, 2, "same")]
    stages += [
        # keras.applications pads (0, 1) before the 3x3 "valid" stride-2 depthwise convolution.
        Downsample(f"conv_dw_{i}", 3, 2, 1)
        for i, (_, stride) in enumerate(MOBILENET_V1_BLOCKS, start=1)
        if stride == 2
    ]
    return stages


def _separable_block(x, filters, stride, depth_multiplier, block_id, norm, activation, data_format):
    """One depthwise-separable block, padded for stride 2 as keras.applications.MobileNet."""
    if stride == 2:
        # Pad bottom/right, then a "valid" 3x3 window: keras.applications' layout (TF's "same"
        # for even sizes), so its weights give the same outputs for any input size.
        x = keras.layers.ZeroPadding2D(
            ((0, 1), (0, 1)), data_format=data_format, name=f"conv_pad_{block_id}"
        )(x)
    return SeparableConvBlock(
        filters,
        3,
        strides=stride,
        padding="same" if stride == 1 else "valid",
        depth_multiplier=depth_multiplier,
        norm=norm,
        activation=activation,
        use_bias=norm is None,
        data_format=data_format,
        name=f"conv_sep_{block_id}",
    )(x)


@register_builder("mobilenetv1", "mobilenet")
def MobileNetV1(
    input_shape=None,
    alpha=1.0,
    depth_multiplier=1,
    dropout=1e-3,
    include_top=True,
    weights=None,
    input_tensor=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name=None,
    *,
    norm="batch",
    activation="relu6",
):
    """Builds MobileNet v1.

    Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
    Applications" (2017): a 3x3 stride-2 stem and 13 depthwise-separable blocks (depthwise 3x3
    -> BN -> ReLU6 -> pointwise 1x1 -> BN -> ReLU6), global average pooling and a classifier.
    The arguments, layer order and parameter counts are keras.applications.MobileNet's
    Each block is a `keras_cnn_ext.layers.SeparableConvBlock`
    (4,253,864 parameters for `alpha=1.0`, 2,601,976 for 0.75, 1,342,536 for 0.5 with 1000
    classes), so its weights copy over with `copy_weights` (its 1x1 convolution classifier
    maps onto our `Dense`).

    Args:
        input_shape: optional `(height, width, 3)`; default `(224, 224, 3)` with the
            classifier, `(None, None, 3)` without (keras.applications' rule). At least 31x31.
        alpha: the width multiplier; each layer has `int(filters * alpha)` filters. Default 1.
        depth_multiplier: the depthwise convolutions' channel multiplier. Default 1.
        dropout: dropout rate before the classifier. Default 1e-3.
        include_top, weights, input_tensor, pooling, classes, classifier_activation, name: as
            in `keras.applications`.
        norm: normalisation after each convolution (`"batch"`, `None` or a layer class; with
            `None` the convolutions get biases). Default `"batch"`.
        activation: default `"relu6"`.

    Input shape:
        `(batch, height, width, 3)` (channels last).

    Output shape:
        `(batch, classes)` with the top; otherwise the pooled features or the feature map.

    Example:

    >>> model = MobileNetV1(input_shape=(32, 32, 3), alpha=0.25, classes=10)
    >>> model.output_shape
    (None, 10)
    """
    validate_builder_args(
        include_top=include_top,
        weights=weights,
        pooling=pooling,
        classes=classes,
        dropout=dropout,
    )
    check_multiplier(alpha, "alpha")
    check_positive_int(depth_multiplier, "depth_multiplier")
    data_format = normalize_data_format(None)
    inputs = make_inputs(
        input_tensor,
        input_shape,
        default_shape=(224, 224, 3),
        stages=mobilenet_v1_stages(),
        include_top=include_top,
    )
    act = act_name(activation)
    x = keras.layers.Conv2D(
        int(MOBILENET_V1_STEM * alpha),
        3,
        strides=2,
        padding="same",
        use_bias=norm is None,
        data_format=data_format,
        name="conv1",
    )(inputs)
    x = apply(make_norm(norm, "conv1_bn", data_format), x)
    x = apply(make_activation(activation, f"conv1_{act}"), x)
    for block_id, (filters, stride) in enumerate(MOBILENET_V1_BLOCKS, start=1):
        x = _separable_block(
            x,
            int(filters * alpha),
            stride,
            depth_multiplier,
            block_id,
            norm,
            activation,
            data_format,
        )
    return finish_model(
        inputs,
        x,
        name=f"mobilenet_{alpha:0.2f}" if name is None else name,
        weights=weights,
        include_top=include_top,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        dropout=dropout,
    )
