"""The shared base of the convolutional block layers: pluggable norm/activation, channel axis.

`ResidualBlock`, `DenseBlock`, `TransitionBlock` and `SeparableConvBlock` are composite layers
whose normalisation and activation are chosen by name through `layers.factories`; this base
holds those arguments, the channel axis and their part of `get_config`, once.
"""

from __future__ import annotations

import numbers

import keras

from keras_cnn_ext.layers.factories import create_activation, create_norm, layer_spec_name
from keras_cnn_ext.utils import check_input_rank, normalize_data_format


def check_positive_int(value, name, minimum=1):
    """Returns `value` as an int, or raises a ValueError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}. Received: {name}={value!r}")
    return int(value)


def check_choice(value, name, accepted):
    """Returns `value` if it is one of `accepted`, or raises a ValueError naming the argument."""
    if value not in accepted:
        raise ValueError(f"`{name}` must be one of {accepted}. Received: {name}={value!r}")
    return value


class ConvBlockBase(keras.layers.Layer):
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
        self.norm_epsilon = float(norm_epsilon)
        self.norm_momentum = float(norm_momentum)
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
        input_shape = check_input_rank(input_shape, 4)
        channels = input_shape[self._channel_axis]
        if channels is None:
            raise ValueError(
                f"The channel axis of the input must be known. Received: {input_shape}"
            )
        return channels

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
