"""Efficient channel attention (ECA)."""

from __future__ import annotations

import keras

from keras_cnn_ext.layers.base import Layer
from keras_cnn_ext.ops import attention as attention_ops
from keras_cnn_ext.utils import check_channels, check_int, check_number, normalize_data_format


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class EfficientChannelAttention(Layer):
    """Efficient channel attention: a 1D convolution across the pooled channels gates them.

    Wang et al., "ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks"
    (CVPR 2020). The feature map is averaged over its spatial positions; a 1D convolution of
    size `k` without bias slides across the channel axis (zero-padded so every channel sees its
    `k` neighbours), and its sigmoid multiplies the input. Only `k` weights, no bottleneck.

    When `kernel_size` is `None`, `k` follows the paper's adaptive rule from the channel count
    `C` read at build time: `t = int(|log2(C) + b| / gamma)`, `k = t` if `t` is odd else `t + 1`,
    and at least 3 (C = 64 -> 3, 256 -> 5, 512 -> 5, 2048 -> 7).

    Args:
        kernel_size: odd size of the channel convolution, or `None` (default) for the adaptive
            rule.
        gamma: `gamma` of the adaptive rule. Defaults to `2`.
        b: `b` of the adaptive rule. Defaults to `1`.
        gate_activation: gate activation. Defaults to `"sigmoid"`.
        kernel_initializer: initializer of the convolution. Defaults to `"glorot_uniform"`.
        data_format: `"channels_last"` or `"channels_first"`; `None` (default) uses
            `keras.config.image_data_format()`.

    Input shape:
        4D tensor `(batch, height, width, channels)` or `(batch, channels, height, width)`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.random.normal((2, 8, 8, 64))
    >>> layer = EfficientChannelAttention()
    >>> layer(x).shape, tuple(layer.kernel.shape)  # k = 3 for 64 channels
    (TensorShape([2, 8, 8, 64]), (3, 1, 1))
    """

    def __init__(
        self,
        kernel_size=None,
        gamma=2,
        b=1,
        gate_activation="sigmoid",
        kernel_initializer="glorot_uniform",
        data_format=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.kernel_size = check_int(kernel_size, "kernel_size", minimum=1, allow_none=True)
        if self.kernel_size is not None and self.kernel_size % 2 == 0:
            # An even kernel would pad one side more and shift every channel's neighbourhood.
            raise ValueError(
                f"`kernel_size` must be None or a positive odd integer. Received: {kernel_size!r}"
            )
        check_number(gamma, "gamma", minimum=0, min_inclusive=False)
        check_number(b, "b")
        self.gamma = gamma
        self.b = b
        self.gate_activation = keras.activations.get(gate_activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.data_format = normalize_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def effective_kernel_size(self, channels):
        """The convolution size used for an input with `channels` channels."""
        if self.kernel_size is not None:
            return self.kernel_size
        return attention_ops.eca_kernel_size(channels, self.gamma, self.b)

    def build(self, input_shape):
        channels = check_channels(input_shape, self.data_format, type(self).__name__)
        k = self.effective_kernel_size(channels)
        # (width, in, out) as tf.nn.conv1d and keras.layers.Conv1D store it.
        self.kernel = self.add_weight(
            name="kernel", shape=(k, 1, 1), initializer=self.kernel_initializer
        )
        channel_axis = -1 if self.data_format == "channels_last" else 1
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={channel_axis: channels})

    def call(self, inputs):
        return attention_ops.efficient_channel_attention(
            inputs, self.kernel, gate=self.gate_activation, data_format=self.data_format
        )

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "kernel_size": self.kernel_size,
                "gamma": self.gamma,
                "b": self.b,
                "gate_activation": keras.activations.serialize(self.gate_activation),
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "data_format": self.data_format,
            }
        )
        return config
