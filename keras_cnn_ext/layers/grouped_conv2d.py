"""GroupedConv2D: `keras.layers.Conv2D` whose grouped convolution also exports to ONNX."""

from __future__ import annotations

import inspect

import keras

from keras_cnn_ext.layers.base import CastsIntegerInputs
from keras_cnn_ext.ops.grouped_conv import grouped_conv2d
from keras_cnn_ext.utils import check_bool, check_positive_int

_CONV2D_SIGNATURE = inspect.signature(keras.layers.Conv2D.__init__)
# Arguments Keras resolves with a getter whose error does not name the argument
# ("Could not interpret initializer identifier: nope").
_GETTERS = {
    "activation": keras.activations.get,
    "kernel_initializer": keras.initializers.get,
    "bias_initializer": keras.initializers.get,
    "kernel_regularizer": keras.regularizers.get,
    "bias_regularizer": keras.regularizers.get,
    "activity_regularizer": keras.regularizers.get,
    "kernel_constraint": keras.constraints.get,
    "bias_constraint": keras.constraints.get,
}


def _check_conv_arguments(arguments):
    """Checks what Keras' conv base lets through or reports without the argument's name."""
    check_positive_int(arguments["filters"], "filters")
    check_positive_int(arguments["groups"], "groups")
    check_bool(arguments["use_bias"], "use_bias")
    for name, get in _GETTERS.items():
        try:
            get(arguments[name])
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"`{name}` could not be interpreted: {e}. Received: {name}={arguments[name]!r}"
            ) from None


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class GroupedConv2D(CastsIntegerInputs, keras.layers.Conv2D):
    """2D convolution with `groups`, computed as one convolution per group.

    The same layer as `keras.layers.Conv2D` (same arguments, weights, `get_config`, and outputs
    for the same kernel), with `groups > 1` computed by `keras_cnn_ext.ops.grouped_conv2d`
    instead of Keras' CPU path through a nested XLA function, which tf2onnx cannot convert
    ("StatefulPartitionedCall is not supported"). Grouped convolutions date to AlexNet
    (Krizhevsky et al., 2012), whose two GPUs each saw half of the channels.

    Bad arguments raise errors that name them, including those Keras' conv base reports
    without a name (`filters="3"` gives "'<=' not supported between instances of 'str' and
    'int'" there).

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

    def __init__(self, *args, **kwargs):
        try:
            bound = _CONV2D_SIGNATURE.bind(self, *args, **kwargs)
        except TypeError as e:
            raise TypeError(f"GroupedConv2D takes keras.layers.Conv2D's arguments: {e}") from None
        bound.apply_defaults()
        _check_conv_arguments(bound.arguments)
        super().__init__(*args, **kwargs)

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


# `help(GroupedConv2D)` and editors show Conv2D's arguments rather than `*args, **kwargs`.
GroupedConv2D.__init__.__signature__ = _CONV2D_SIGNATURE
