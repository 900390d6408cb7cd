"""GroupedConv2D: `keras.layers.Conv2D` whose grouped convolution also exports to ONNX."""

from __future__ import annotations

import keras

from keras_cnn_ext.ops.grouped_conv import grouped_conv2d


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class GroupedConv2D(keras.layers.Conv2D):
    """2D convolution with `groups`, computed as one convolution per group.

    The same layer as `keras.layers.Conv2D` (same arguments, weights, `get_config`, and outputs
    for the same kernel), with `groups > 1` computed by `keras_cnn_ext.ops.grouped_conv2d`
    instead of Keras' CPU path through a nested XLA function, which tf2onnx cannot convert
    ("StatefulPartitionedCall is not supported"). Grouped convolutions date to AlexNet
    (Krizhevsky et al., 2012), whose two GPUs each saw half of the channels.

    Args:
        As `keras.layers.Conv2D`; `groups` must divide the input channels and `filters`.

    Input shape:
        4D tensor `(batch, height, width, channels)` (or channels first).

    Output shape:
        4D tensor `(batch, new_height, new_width, filters)`, as `Conv2D`.

    Example:

    >>> layer = GroupedConv2D(8, 3, groups=2)
    >>> tuple(layer(keras.ops.ones((1, 5, 5, 4))).shape)
    (1, 3, 3, 8)
    """

    def convolution_op(self, inputs, kernel):
        if self.groups == 1:
            return super().convolution_op(inputs, kernel)
        return grouped_conv2d(
            inputs,
            kernel,
            self.groups,
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
            data_format=self.data_format,
        )
