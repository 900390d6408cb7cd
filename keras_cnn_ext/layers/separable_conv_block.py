"""SeparableConvBlock: depthwise and pointwise convolutions, each with norm and activation."""

from __future__ import annotations

import keras

from keras_cnn_ext.layers.conv_block_base import ConvBlockBase
from keras_cnn_ext.utils import check_choice, check_input_rank, check_positive_int


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class SeparableConvBlock(ConvBlockBase):
    """A MobileNet v1 depthwise-separable block: depthwise-BN-act, then pointwise-BN-act.

    Howard et al. 2017 ("MobileNets") factor a `K x K` convolution from `C_in` to `C_out`
    channels into a depthwise `K x K` convolution (one filter per input channel) and a 1x1
    pointwise convolution. Without biases that costs `K*K*C_in + C_in*C_out` weights instead of
    `K*K*C_in*C_out`, a ratio of `1/C_out + 1/K**2`; each convolution is followed by a
    normalisation (`4 * channels` more parameters for batch normalisation, half of them
    trainable) and an activation. Unlike `keras.layers.SeparableConv2D`, the normalisation and
    activation sit between the two convolutions.

    Args:
        filters: `C_out`, the channels of the pointwise convolution.
        kernel_size: the depthwise kernel size. Default 3.
        strides: the depthwise stride. Default 1.
        padding: `"same"` or `"valid"` for the depthwise convolution. Default `"same"`.
        depth_multiplier: depthwise output channels per input channel. Default 1.
        dilation_rate: the depthwise dilation. Default 1.
        norm: the normalisation, a `create_norm` name or layer class. Default `"batch"`.
        norm_epsilon: the normalisation epsilon. Default 1e-3 (Keras, keras.applications
            MobileNet).
        norm_momentum: the batch-normalisation momentum. Default 0.99.
        activation: a `create_activation` name, callable or class. Default `"relu6"` (MobileNet).
        use_bias: whether the convolutions have biases. Default `False`.
        kernel_initializer: the pointwise kernel's initializer. Default `"glorot_uniform"`.
        data_format: `"channels_last"` or `"channels_first"`; default Keras' global setting.

    Input shape:
        4D tensor `(batch, height, width, C_in)` (or channels first).

    Output shape:
        4D tensor `(batch, new_height, new_width, filters)`, the sizes of the depthwise
        convolution.

    Example:

    >>> x = keras.random.normal((2, 16, 16, 32))
    >>> tuple(SeparableConvBlock(64, strides=2)(x).shape)
    (2, 8, 8, 64)
    """

    def __init__(
        self,
        filters,
        kernel_size=3,
        strides=1,
        padding="same",
        depth_multiplier=1,
        dilation_rate=1,
        norm="batch",
        norm_epsilon=1e-3,
        norm_momentum=0.99,
        activation="relu6",
        use_bias=False,
        kernel_initializer="glorot_uniform",
        data_format=None,
        **kwargs,
    ):
        super().__init__(
            norm=norm,
            norm_epsilon=norm_epsilon,
            norm_momentum=norm_momentum,
            activation=activation,
            kernel_initializer=kernel_initializer,
            data_format=data_format,
            **kwargs,
        )
        self.filters = check_positive_int(filters, "filters")
        self.kernel_size = check_positive_int(kernel_size, "kernel_size")
        self.strides = check_positive_int(strides, "strides")
        self.padding = check_choice(padding, "padding", ("same", "valid"))
        self.depth_multiplier = check_positive_int(depth_multiplier, "depth_multiplier")
        self.dilation_rate = check_positive_int(dilation_rate, "dilation_rate")
        if self.strides > 1 and self.dilation_rate > 1:
            raise ValueError(
                "`strides` > 1 and `dilation_rate` > 1 cannot be combined. "
                f"Received: strides={strides}, dilation_rate={dilation_rate}"
            )
        self.use_bias = bool(use_bias)
        common = dict(data_format=self.data_format, dtype=self.dtype_policy)
        name = self.name
        self.depthwise = keras.layers.DepthwiseConv2D(
            self.kernel_size,
            strides=self.strides,
            padding=self.padding,
            depth_multiplier=self.depth_multiplier,
            dilation_rate=self.dilation_rate,
            use_bias=self.use_bias,
            name=f"{name}_dw",
            **common,
        )
        self.pointwise = keras.layers.Conv2D(
            self.filters,
            1,
            use_bias=self.use_bias,
            kernel_initializer=self.kernel_initializer,
            name=f"{name}_pw",
            **common,
        )
        self.depthwise_norm = self._make_norm(f"{name}_dw_bn")
        self.depthwise_act = self._make_activation(f"{name}_dw_relu")
        self.pointwise_norm = self._make_norm(f"{name}_pw_bn")
        self.pointwise_act = self._make_activation(f"{name}_pw_relu")

    def build(self, input_shape):
        input_shape = check_input_rank(input_shape, 4)
        self._channels(input_shape)
        self.depthwise.build(input_shape)
        shape = self.depthwise.compute_output_shape(input_shape)
        self.depthwise_norm.build(shape)
        self.depthwise_act.build(shape)
        self.pointwise.build(shape)
        shape = self.pointwise.compute_output_shape(shape)
        self.pointwise_norm.build(shape)
        self.pointwise_act.build(shape)
        self.built = True

    def call(self, inputs, training=None):
        x = self.depthwise_act(self.depthwise_norm(self.depthwise(inputs), training=training))
        return self.pointwise_act(self.pointwise_norm(self.pointwise(x), training=training))

    def compute_output_shape(self, input_shape):
        input_shape = check_input_rank(input_shape, 4)
        shape = self.depthwise.compute_output_shape(input_shape)
        return self.pointwise.compute_output_shape(shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
                "depth_multiplier": self.depth_multiplier,
                "dilation_rate": self.dilation_rate,
                "use_bias": self.use_bias,
            }
        )
        return config
