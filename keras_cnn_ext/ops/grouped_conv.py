"""Grouped 2D convolution as per-group convolutions: runs on CPU and exports cleanly."""

from __future__ import annotations

import tensorflow as tf

from keras_cnn_ext.utils import normalize_data_format, normalize_tuple


def grouped_conv2d(
    inputs, kernel, groups, strides=1, padding="valid", dilation_rate=1, data_format=None
):
    """Grouped convolution: the channels split into `groups`, each convolved with its filters.

    Keras' `Conv2D(groups=g)` on TensorFlow runs grouped convolutions through a nested
    `tf.function(jit_compile=True)` on CPU (TF's CPU kernel has none), which tf2onnx cannot
    convert. Here the `groups` slices are convolved one by one and concatenated, as the two
    GPU towers of AlexNet did: the same numbers, the same kernel layout as Keras
    (`(kh, kw, C_in / groups, C_out)`, output channels grouped consecutively), TFLite builtins
    (SPLIT, CONV_2D, CONCATENATION) and ONNX ops.

    Args:
        inputs: 4D tensor, channels last or first per `data_format`.
        kernel: `(kh, kw, C_in // groups, C_out)`.
        groups: the number of groups; `C_in` and `C_out` must be divisible by it.
        strides, padding, dilation_rate: as `tf.nn.convolution`.
        data_format: `"channels_last"` or `"channels_first"`; default Keras' global setting.

    Returns:
        4D tensor with `C_out` channels.
    """
    data_format = normalize_data_format(data_format)
    strides = normalize_tuple(strides, 2, "strides", minimum=1)
    dilation_rate = normalize_tuple(dilation_rate, 2, "dilation_rate", minimum=1)
    axis = 1 if data_format == "channels_first" else 3
    tf_format = "NCHW" if data_format == "channels_first" else "NHWC"
    parts = tf.split(inputs, groups, axis=axis) if groups > 1 else [inputs]
    kernels = tf.split(kernel, groups, axis=3) if groups > 1 else [kernel]
    outputs = [
        tf.nn.convolution(
            x,
            k,
            strides=strides,
            padding=padding.upper(),
            dilations=dilation_rate,
            data_format=tf_format,
        )
        for x, k in zip(parts, kernels, strict=True)
    ]
    return tf.concat(outputs, axis=axis) if groups > 1 else outputs[0]
