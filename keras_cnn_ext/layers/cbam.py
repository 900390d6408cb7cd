"""Convolutional block attention module (CBAM): channel attention, spatial attention, both."""

from __future__ import annotations

import keras

from keras_cnn_ext.layers.base import Layer
from keras_cnn_ext.layers.squeeze_excitation import SqueezeExcitation
from keras_cnn_ext.ops import attention as attention_ops
from keras_cnn_ext.utils import (
    check_choice,
    check_input_rank,
    normalize_data_format,
    normalize_tuple,
)

SPATIAL_MODES = ("sigmoid", "softmax")


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class ChannelAttention(SqueezeExcitation):
    """CBAM's channel attention: a shared MLP over average- and max-pooled channel descriptors.

    Woo et al., "CBAM: Convolutional Block Attention Module" (ECCV 2018), eq. 2:
    `M_c = sigmoid(MLP(AvgPool(x)) + MLP(MaxPool(x)))`, `output = M_c * x`. The MLP is
    `C -> R -> C` with a ReLU between, its weights shared by both descriptors; `R` is
    `reduced_channels` or `make_divisible(C * ratio, divisor, min_channels)`.

    Args:
        ratio: bottleneck width as a fraction of the channels. Defaults to `1/16` (the paper's
            reduction r = 16).
        reduced_channels: explicit bottleneck width; overrides `ratio`. Defaults to `None`.
        min_channels: the smallest bottleneck width. Defaults to `None` (= `divisor`).
        divisor: the bottleneck width is rounded to a multiple of this. Defaults to `1`
            (no rounding, as the paper and timm's `CbamModule`).
        activation: hidden activation. Defaults to `"relu"`.
        gate_activation: gate activation. Defaults to `"sigmoid"`.
        use_bias: whether the MLP layers have biases (the authors' code: yes; timm: no).
            Defaults to `True`.
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
    >>> ChannelAttention()(x).shape
    TensorShape([2, 8, 8, 32])
    """

    pooling = "avg_max"

    def __init__(
        self,
        ratio=0.0625,
        reduced_channels=None,
        min_channels=None,
        divisor=1,
        activation="relu",
        gate_activation="sigmoid",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        data_format=None,
        **kwargs,
    ):
        # Same layer as SqueezeExcitation (weights, config) with CBAM's defaults and pooling.
        super().__init__(
            ratio=ratio,
            reduced_channels=reduced_channels,
            min_channels=min_channels,
            divisor=divisor,
            activation=activation,
            gate_activation=gate_activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            data_format=data_format,
            **kwargs,
        )


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class SpatialAttention(Layer):
    """CBAM's spatial attention: a convolution over the channel-average and channel-max maps.

    Woo et al. (ECCV 2018), eq. 3: `M_s = sigmoid(conv7x7([mean_c(x); max_c(x)]))`,
    `output = M_s * x`, one gate per position shared by all channels. With `mode="softmax"`
    the conv output is instead normalised over all positions of each image (the weights of an
    image sum to 1), the form of spatial attention as a distribution over positions. The
    authors' code follows the convolution with batch normalization; this layer uses a bias
    instead, so inference and training behave the same.

    Args:
        kernel_size: size of the convolution, an int or a pair. Defaults to `7`.
        mode: `"sigmoid"` (default, CBAM) or `"softmax"` (over positions).
        use_bias: whether the convolution has a bias. Defaults to `True`.
        kernel_initializer: initializer of the convolution. Defaults to `"glorot_uniform"`.
        bias_initializer: initializer of the bias. Defaults to `"zeros"`.
        data_format: `"channels_last"` or `"channels_first"`; `None` (default) uses
            `keras.config.image_data_format()`.

    Input shape:
        4D tensor `(batch, height, width, channels)` or `(batch, channels, height, width)`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.random.normal((2, 8, 8, 32))
    >>> SpatialAttention(kernel_size=7)(x).shape
    TensorShape([2, 8, 8, 32])
    """

    def __init__(
        self,
        kernel_size=7,
        mode="sigmoid",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        data_format=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.kernel_size = normalize_tuple(kernel_size, 2, "kernel_size", minimum=1)
        self.mode = check_choice(mode, "mode", SPATIAL_MODES)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.data_format = normalize_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        # Any channel count, even unknown: the conv only sees the [mean, max] maps.
        check_input_rank(input_shape, 4)
        # Always (kh, kw, in, out) with in = [mean, max]; the op handles channels_first.
        self.kernel = self.add_weight(
            name="kernel", shape=(*self.kernel_size, 2, 1), initializer=self.kernel_initializer
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(1,), initializer=self.bias_initializer)

    def call(self, inputs):
        return attention_ops.spatial_attention(
            inputs, self.kernel, self.bias, mode=self.mode, data_format=self.data_format
        )

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "kernel_size": self.kernel_size,
                "mode": self.mode,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "data_format": self.data_format,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class CBAM(Layer):
    """Convolutional block attention module: channel attention, then spatial attention.

    Woo et al., "CBAM: Convolutional Block Attention Module" (ECCV 2018):
    `x' = ChannelAttention(x)`, `output = SpatialAttention(x')` (the sequential, channel-first
    order the paper found best). See `ChannelAttention` and `SpatialAttention` for the parts.

    Args:
        ratio: channel-MLP width as a fraction of the channels. Defaults to `1/16`.
        reduced_channels: explicit channel-MLP width; overrides `ratio`. Defaults to `None`.
        min_channels: the smallest channel-MLP width. Defaults to `None` (= `divisor`).
        divisor: the channel-MLP width is rounded to a multiple of this. Defaults to `1`.
        activation: channel-MLP hidden activation. Defaults to `"relu"`.
        gate_activation: channel gate activation. Defaults to `"sigmoid"`.
        use_bias: whether the MLP and the spatial convolution have biases. Defaults to `True`.
        kernel_size: spatial convolution size. Defaults to `7`.
        mode: spatial gate, `"sigmoid"` (default, CBAM) or `"softmax"` (over positions).
        data_format: `"channels_last"` or `"channels_first"`; `None` (default) uses
            `keras.config.image_data_format()`.

    Input shape:
        4D tensor `(batch, height, width, channels)` or `(batch, channels, height, width)`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.random.normal((2, 8, 8, 32))
    >>> CBAM(ratio=0.25, kernel_size=3)(x).shape
    TensorShape([2, 8, 8, 32])
    """

    def __init__(
        self,
        ratio=0.0625,
        reduced_channels=None,
        min_channels=None,
        divisor=1,
        activation="relu",
        gate_activation="sigmoid",
        use_bias=True,
        kernel_size=7,
        mode="sigmoid",
        data_format=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.data_format = normalize_data_format(data_format)
        self.channel_attention = ChannelAttention(
            ratio=ratio,
            reduced_channels=reduced_channels,
            min_channels=min_channels,
            divisor=divisor,
            activation=activation,
            gate_activation=gate_activation,
            use_bias=use_bias,
            data_format=self.data_format,
            dtype=self.dtype_policy,
            name="channel_attention",
        )
        self.spatial_attention = SpatialAttention(
            kernel_size=kernel_size,
            mode=mode,
            use_bias=use_bias,
            data_format=self.data_format,
            dtype=self.dtype_policy,
            name="spatial_attention",
        )
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        self.channel_attention.build(input_shape)
        self.spatial_attention.build(input_shape)

    def call(self, inputs):
        return self.spatial_attention(self.channel_attention(inputs))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        channel, spatial = self.channel_attention, self.spatial_attention
        config.update(
            {
                "ratio": channel.ratio,
                "reduced_channels": channel.reduced_channels,
                "min_channels": channel.min_channels,
                "divisor": channel.divisor,
                "activation": keras.activations.serialize(channel.activation),
                "gate_activation": keras.activations.serialize(channel.gate_activation),
                "use_bias": channel.use_bias,
                "kernel_size": spatial.kernel_size,
                "mode": spatial.mode,
                "data_format": self.data_format,
            }
        )
        return config
