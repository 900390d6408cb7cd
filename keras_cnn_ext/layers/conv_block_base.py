"""The shared base of the convolutional block layers: pluggable norm/activation, channel axis.

`ResidualBlock`, `DenseBlock`, `TransitionBlock` and `SeparableConvBlock` are composite layers
whose normalisation and activation are chosen by name through `layers.factories`; this base
holds those arguments, the channel axis and their part of `get_config`, once.
"""

from __future__ import annotations

import keras

from keras_cnn_ext.layers.base import Layer
from keras_cnn_ext.layers.factories import create_activation, create_norm, layer_spec_name
from keras_cnn_ext.utils import check_channels, check_number, normalize_data_format


class ConvBlockBase(Layer):
    """Base of the block layers (not registered: only its subclasses are used)."""

    def __init__(
        self,
        norm="batch",
        norm_epsilon=1.001e-5,
        norm_momentum=0.99,
        activation="relu",
        kernel_initializer="glorot_uniform",
        data_format=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.norm = layer_spec_name(norm)
        self.norm_epsilon = check_number(norm_epsilon, "norm_epsilon", minimum=0)
        self.norm_momentum = check_number(norm_momentum, "norm_momentum", minimum=0, maximum=1)
        self.activation = layer_spec_name(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.data_format = normalize_data_format(data_format)
        self._channel_axis = 1 if self.data_format == "channels_first" else 3

    def _make_norm(self, name):
        return create_norm(
            self.norm,
            axis=self._channel_axis,
            epsilon=self.norm_epsilon,
            momentum=self.norm_momentum,
            dtype=self.dtype_policy,
            name=name,
        )

    def _make_activation(self, name):
        return create_activation(self.activation, name=name, dtype=self.dtype_policy)

    def _channels(self, input_shape):
        """The input's channel count; raises for a wrong rank or an unknown channel axis."""
        return check_channels(input_shape, self.data_format, type(self).__name__)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "norm": self.norm,
                "norm_epsilon": self.norm_epsilon,
                "norm_momentum": self.norm_momentum,
                "activation": self.activation,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "data_format": self.data_format,
            }
        )
        return config
