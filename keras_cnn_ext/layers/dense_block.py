"""DenseBlock and TransitionBlock: the building blocks of DenseNet (Huang et al., 2017)."""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_cnn_ext.layers.conv_block_base import ConvBlockBase
from keras_cnn_ext.utils import (
    check_bool,
    check_number,
    check_positive_int,
    check_rate,
    check_seed,
    replica_seed,
)


class _DenseNetBlock(ConvBlockBase):
    """What the DenseNet blocks share: bias-free "same" convolutions and shape arithmetic."""

    def _make_conv(self, filters, kernel, name):
        return keras.layers.Conv2D(
            filters,
            kernel,
            padding="same",
            use_bias=False,
            kernel_initializer=self.kernel_initializer,
            data_format=self.data_format,
            dtype=self.dtype_policy,
            name=name,
        )

    def _with_channels(self, input_shape, channels, reduce=1):
        shape = list(input_shape)
        shape[self._channel_axis] = channels
        for axis in (2, 3) if self._channel_axis == 1 else (1, 2):
            if shape[axis] is not None:
                shape[axis] //= reduce
        return tuple(shape)


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class DenseBlock(_DenseNetBlock):
    """A dense block: each layer's output is concatenated to all the features before it.

    Huang et al. 2017 ("Densely connected convolutional networks"): layer `l` sees the
    concatenation of the block input (`k0` channels) and the `k` ("growth rate") new channels of
    every earlier layer, so the block outputs `k0 + k * num_layers` channels. With `bottleneck`
    (DenseNet-B) each layer is BN-ReLU-1x1 convolution to `bottleneck_width * k` channels, then
    BN-ReLU-3x3 convolution to `k`; otherwise BN-ReLU-3x3 only. Dropout, when asked for, follows
    each convolution, as in the paper. The sublayer names follow `keras.applications.DenseNet121`
    (`{name}_block{i}_0_bn`, `_1_conv`, `_1_bn`, `_2_conv`), so its weights map one to one.

    Args:
        num_layers: the number of layers in the block.
        growth_rate: `k`, the channels each layer adds. Default 32 (DenseNet-121).
        bottleneck: whether each layer has the 1x1 bottleneck convolution. Default `True`.
        bottleneck_width: the bottleneck's channels over `growth_rate`. Default 4.
        dropout_rate: dropout after each convolution in training, in [0, 1). Default 0.
        norm: the normalisation, a `create_norm` name or layer class. Default `"batch"`.
        norm_epsilon: the normalisation epsilon; default 1.001e-5 as keras.applications.
        norm_momentum: the batch-normalisation momentum. Default 0.99.
        activation: a `create_activation` name, callable or class. Default `"relu"`.
        kernel_initializer: the convolution kernels' initializer. Default `"glorot_uniform"`.
        data_format: `"channels_last"` or `"channels_first"`; default Keras' global setting.
        seed: int or `None`, the seed of the dropout masks.

    Input shape:
        4D tensor `(batch, height, width, k0)` (or channels first).

    Output shape:
        4D tensor `(batch, height, width, k0 + growth_rate * num_layers)`.

    Example:

    >>> x = keras.random.normal((2, 8, 8, 16))
    >>> tuple(DenseBlock(4, growth_rate=12)(x).shape)
    (2, 8, 8, 64)
    """

    def __init__(
        self,
        num_layers,
        growth_rate=32,
        bottleneck=True,
        bottleneck_width=4,
        dropout_rate=0.0,
        norm="batch",
        norm_epsilon=1.001e-5,
        norm_momentum=0.99,
        activation="relu",
        kernel_initializer="glorot_uniform",
        data_format=None,
        seed=None,
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
        self.num_layers = check_positive_int(num_layers, "num_layers")
        self.growth_rate = check_positive_int(growth_rate, "growth_rate")
        self.bottleneck = check_bool(bottleneck, "bottleneck")
        self.bottleneck_width = check_positive_int(bottleneck_width, "bottleneck_width")
        self.dropout_rate = check_rate(dropout_rate, "dropout_rate")
        self.seed = check_seed(seed)
        self.seed_generator = (
            keras.random.SeedGenerator(self.seed) if self.dropout_rate > 0 else None
        )
        # One list entry per dense layer; the 1x1 entries are None without a bottleneck.
        self.norms0, self.acts0, self.convs1, self.norms1, self.acts1, self.convs2 = (
            [],
            [],
            [],
            [],
            [],
            [],
        )
        for i in range(1, self.num_layers + 1):
            prefix = f"{self.name}_block{i}"
            self.norms0.append(self._make_norm(f"{prefix}_0_bn"))
            self.acts0.append(self._make_activation(f"{prefix}_0_relu"))
            if self.bottleneck:
                width = self.bottleneck_width * self.growth_rate
                self.convs1.append(self._make_conv(width, 1, f"{prefix}_1_conv"))
                self.norms1.append(self._make_norm(f"{prefix}_1_bn"))
                self.acts1.append(self._make_activation(f"{prefix}_1_relu"))
            else:
                self.convs1.append(None)
                self.norms1.append(None)
                self.acts1.append(None)
            self.convs2.append(self._make_conv(self.growth_rate, 3, f"{prefix}_2_conv"))

    def build(self, input_shape):
        channels = self._channels(input_shape)
        for i in range(self.num_layers):
            shape = self._with_channels(input_shape, channels + i * self.growth_rate)
            self.norms0[i].build(shape)
            self.acts0[i].build(shape)
            if self.convs1[i] is not None:
                self.convs1[i].build(shape)
                shape = self.convs1[i].compute_output_shape(shape)
                self.norms1[i].build(shape)
                self.acts1[i].build(shape)
            self.convs2[i].build(shape)
        self.built = True

    def _dropout(self, x, training):
        if self.seed_generator is None or not training:
            return x
        seed = replica_seed(self.seed_generator.next())
        return tf.nn.experimental.stateless_dropout(x, self.dropout_rate, seed=seed)

    def call(self, inputs, training=None):
        features = inputs
        for i in range(self.num_layers):
            x = self.acts0[i](self.norms0[i](features, training=training))
            if self.convs1[i] is not None:
                x = self._dropout(self.convs1[i](x), training)
                x = self.acts1[i](self.norms1[i](x, training=training))
            x = self._dropout(self.convs2[i](x), training)
            features = tf.concat([features, x], axis=self._channel_axis)
        return features

    def compute_output_shape(self, input_shape):
        channels = self._channels(input_shape)
        return self._with_channels(input_shape, channels + self.num_layers * self.growth_rate)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_layers": self.num_layers,
                "growth_rate": self.growth_rate,
                "bottleneck": self.bottleneck,
                "bottleneck_width": self.bottleneck_width,
                "dropout_rate": self.dropout_rate,
                "seed": self.seed,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class TransitionBlock(_DenseNetBlock):
    """A DenseNet transition: BN-ReLU-1x1 convolution to `floor(theta * C)` channels, 2x2 pool.

    Huang et al. 2017: between dense blocks, a 1x1 convolution compresses the channels by the
    factor `compression` (theta; 0.5 in DenseNet-BC and keras.applications) and a 2x2 average
    pooling with stride 2 halves the spatial size. Sublayer names follow keras.applications
    (`{name}_bn`, `{name}_conv`).

    Args:
        compression: theta in (0, 1], the kept fraction of channels. Default 0.5.
        norm: the normalisation, a `create_norm` name or layer class. Default `"batch"`.
        norm_epsilon: the normalisation epsilon; default 1.001e-5 as keras.applications.
        norm_momentum: the batch-normalisation momentum. Default 0.99.
        activation: a `create_activation` name, callable or class. Default `"relu"`.
        kernel_initializer: the convolution kernel's initializer. Default `"glorot_uniform"`.
        data_format: `"channels_last"` or `"channels_first"`; default Keras' global setting.

    Input shape:
        4D tensor `(batch, height, width, channels)` (or channels first).

    Output shape:
        4D tensor `(batch, height // 2, width // 2, floor(compression * channels))`.

    Example:

    >>> x = keras.random.normal((2, 8, 8, 64))
    >>> tuple(TransitionBlock(0.5)(x).shape)
    (2, 4, 4, 32)
    """

    def __init__(
        self,
        compression=0.5,
        norm="batch",
        norm_epsilon=1.001e-5,
        norm_momentum=0.99,
        activation="relu",
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
        self.compression = check_number(
            compression, "compression", minimum=0, min_inclusive=False, maximum=1, what="a float"
        )
        self.norm_layer = self._make_norm(f"{self.name}_bn")
        self.act = self._make_activation(f"{self.name}_relu")
        self.conv = None
        self.pool = keras.layers.AveragePooling2D(
            2,
            strides=2,
            data_format=self.data_format,
            dtype=self.dtype_policy,
            name=f"{self.name}_pool",
        )

    def _out_channels(self, channels):
        out = int(channels * self.compression)  # keras.applications' int(C * reduction)
        if out < 1:
            raise ValueError(
                f"`compression`={self.compression} leaves no channels for an input with "
                f"{channels} channels."
            )
        return out

    def build(self, input_shape):
        channels = self._channels(input_shape)
        self.conv = self._make_conv(self._out_channels(channels), 1, f"{self.name}_conv")
        self.norm_layer.build(input_shape)
        self.act.build(input_shape)
        self.conv.build(input_shape)
        self.pool.build(self.conv.compute_output_shape(input_shape))
        self.built = True

    def call(self, inputs, training=None):
        x = self.act(self.norm_layer(inputs, training=training))
        return self.pool(self.conv(x))

    def compute_output_shape(self, input_shape):
        channels = self._out_channels(self._channels(input_shape))
        return self._with_channels(input_shape, channels, reduce=2)

    def get_config(self):
        config = super().get_config()
        config["compression"] = self.compression
        return config
