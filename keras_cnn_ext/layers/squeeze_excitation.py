"""Squeeze-and-excitation channel attention."""

from __future__ import annotations

import keras

from keras_cnn_ext.layers.base import Layer
from keras_cnn_ext.ops import attention as attention_ops
from keras_cnn_ext.utils import check_channels, check_int, check_number, normalize_data_format


def check_reduction_args(ratio, reduced_channels, min_channels, divisor):
    """Validates the bottleneck-width arguments shared by SE and CBAM's channel attention."""
    check_int(reduced_channels, "reduced_channels", minimum=1, allow_none=True)
    check_int(min_channels, "min_channels", minimum=1, allow_none=True)
    check_int(divisor, "divisor", minimum=1)
    # A ratio of 0 would leave no channel in the bottleneck.
    return check_number(ratio, "ratio", minimum=0, min_inclusive=False)


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class SqueezeExcitation(Layer):
    """Squeeze-and-excitation block: re-weights channels by a gate computed from their means.

    Hu et al., "Squeeze-and-Excitation Networks" (CVPR 2018). The feature map is averaged over
    its spatial positions (squeeze), passed through a bottleneck of two fully connected layers
    (equivalently 1x1 convolutions, with biases, as in timm's `SEModule`), and the resulting
    per-channel gate in [0, 1] multiplies the input (excitation).

    The bottleneck width is `reduced_channels` when given, else
    `make_divisible(channels * ratio, divisor, min_channels)`: timm's rounding to a multiple of
    `divisor` that never drops more than 10% below `channels * ratio`. The channel count is
    read from the input at build time.

    Args:
        ratio: bottleneck width as a fraction of the input channels (timm's `rd_ratio`,
            TF Model Garden's `se_ratio`). Defaults to `0.25` (EfficientNet/MobileNetV3);
            Hu et al. use `1/16`.
        reduced_channels: explicit bottleneck width; overrides `ratio`. Defaults to `None`.
        min_channels: the smallest bottleneck width. Defaults to `None` (= `divisor`).
        divisor: the bottleneck width is rounded to a multiple of this. Defaults to `8`.
        activation: hidden activation, any Keras activation name or callable.
            Defaults to `"relu"`.
        gate_activation: gate activation, e.g. `"sigmoid"` (default) or `"hard_sigmoid"`
            (`relu6(x + 3) / 6`, MobileNetV3).
        use_bias: whether both fully connected layers have biases. Defaults to `True`.
        kernel_initializer: initializer of both kernels. Defaults to `"glorot_uniform"`.
        bias_initializer: initializer of both biases. Defaults to `"zeros"`.
        data_format: `"channels_last"` or `"channels_first"`; `None` (default) uses
            `keras.config.image_data_format()`.

    Input shape:
        4D tensor `(batch, height, width, channels)` or `(batch, channels, height, width)`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.random.normal((2, 8, 8, 32))
    >>> SqueezeExcitation(ratio=0.25)(x).shape
    TensorShape([2, 8, 8, 32])
    """

    # Squeeze by the spatial mean only; CBAM's ChannelAttention adds the max.
    pooling = "avg"

    def __init__(
        self,
        ratio=0.25,
        reduced_channels=None,
        min_channels=None,
        divisor=8,
        activation="relu",
        gate_activation="sigmoid",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        data_format=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.ratio = check_reduction_args(ratio, reduced_channels, min_channels, divisor)
        self.reduced_channels = reduced_channels
        self.min_channels = min_channels
        self.divisor = int(divisor)
        self.activation = keras.activations.get(activation)
        self.gate_activation = keras.activations.get(gate_activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.data_format = normalize_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def hidden_channels(self, channels):
        """The bottleneck width for an input with `channels` channels."""
        if self.reduced_channels is not None:
            return int(self.reduced_channels)
        return attention_ops.reduced_channels(channels, self.ratio, self.divisor, self.min_channels)

    def _maybe_bias(self, name, size):
        if not self.use_bias:
            return None
        return self.add_weight(name=name, shape=(size,), initializer=self.bias_initializer)

    def build(self, input_shape):
        channels = check_channels(input_shape, self.data_format, type(self).__name__)
        hidden = self.hidden_channels(channels)
        # Weights in the order of the plain-Keras equivalent (Conv2D, Conv2D): kernel, bias, ...
        self.reduce_kernel = self.add_weight(
            name="reduce_kernel", shape=(channels, hidden), initializer=self.kernel_initializer
        )
        self.reduce_bias = self._maybe_bias("reduce_bias", hidden)
        self.expand_kernel = self.add_weight(
            name="expand_kernel", shape=(hidden, channels), initializer=self.kernel_initializer
        )
        self.expand_bias = self._maybe_bias("expand_bias", channels)
        channel_axis = -1 if self.data_format == "channels_last" else 1
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={channel_axis: channels})

    def call(self, inputs):
        return attention_ops.squeeze_excitation(
            inputs,
            self.reduce_kernel,
            self.reduce_bias,
            self.expand_kernel,
            self.expand_bias,
            activation=self.activation,
            gate=self.gate_activation,
            pooling=self.pooling,
            data_format=self.data_format,
        )

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "ratio": self.ratio,
                "reduced_channels": self.reduced_channels,
                "min_channels": self.min_channels,
                "divisor": self.divisor,
                "activation": keras.activations.serialize(self.activation),
                "gate_activation": keras.activations.serialize(self.gate_activation),
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "data_format": self.data_format,
            }
        )
        return config
