"""GroupConv2D: p4 / p4m group-equivariant convolution (Cohen & Welling, 2016)."""

from __future__ import annotations

import math

import keras

from keras_cnn_ext.layers.base import Layer
from keras_cnn_ext.ops.group_conv import (
    add_group_bias,
    check_group,
    group_conv2d,
    group_order,
)
from keras_cnn_ext.utils import (
    check_bool,
    check_channels,
    check_choice,
    check_positive_int,
    normalize_data_format,
    normalize_tuple,
)

_GETTERS = {
    "activation": keras.activations.get,
    "kernel_initializer": keras.initializers.get,
    "bias_initializer": keras.initializers.get,
    "kernel_regularizer": keras.regularizers.get,
    "bias_regularizer": keras.regularizers.get,
    "kernel_constraint": keras.constraints.get,
    "bias_constraint": keras.constraints.get,
}


def _resolve(name, value):
    try:
        return _GETTERS[name](value)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"`{name}` could not be interpreted: {e}. Received: {name}={value!r}"
        ) from None


def conv_output_length(length, kernel, stride, dilation, padding):
    """Keras' conv output length (`None` stays `None`)."""
    if length is None:
        return None
    if padding == "same":
        return math.ceil(length / stride)
    return math.ceil((length - dilation * (kernel - 1)) / stride)


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class GroupConv2D(Layer):
    """Group-equivariant 2D convolution for p4 (90-degree rotations) or p4m (and mirror flips).

    Cohen & Welling (2016), "Group Equivariant Convolutional Networks", eq. 10-11. The lifting
    layer (`lifting=True`) correlates an image with every rotated (p4m: and flipped) copy of each
    filter; the group-to-group layer (`lifting=False`) takes a group feature map and also
    permutes its group axis per output element. The layer is exactly equivariant:
    `layer(g . x) == g . layer(x)` for every group element `g` (see
    `keras_cnn_ext.ops.group_conv.transform_group_map`), when the sampling grid is symmetric:
    odd kernels, and with strides `s`, `(size - kernel) % s == 0` for `"valid"` padding or
    `(size - 1) % s == 0` for `"same"`.

    The filter bank is expanded from the base filters once per call and ONE ordinary
    convolution runs (as escnn's `R2Conv`), so the layer costs a `Conv2D` with
    `filters * |G|` outputs and exports to TFLite/ONNX with builtin ops.

    Channel layout: a group feature map with `F` fields has `F * |G|` channels, field-major
    (channel `f * |G| + g` is field `f` at group element `g`; group elements `g = m * 4 + r`
    stand for "rotate by `r` x 90 degrees counterclockwise, then mirror the width axis if
    `m`"). `|G|` is 4 for p4 and 8 for p4m.

    Weights: the base kernel is `(k, k, C_in, F)` for a lifting layer and
    `(k, k, C_in * |G|, F)` for a group-to-group layer (C_in fields), i.e. `k*k*C_in*F` and
    `|G|*k*k*C_in*F` weights as in the paper, and one bias per field. The kernel initializer
    draws with the fans of the expanded bank (`fan_out = k*k*F*|G|`, and `fan_in` includes the
    group axis for group-to-group layers), so `"glorot_uniform"`/`"he_normal"` keep their
    intended variance.

    An even kernel with `padding="same"` raises a ValueError: the padding is then asymmetric
    and no rotation equivariance can hold. Non-square kernels cannot be rotated and raise too.

    Args:
        filters: number of output fields `F` (the output has `F * |G|` channels).
        kernel_size: odd int or `(k, k)` (square); even sizes only with `padding="valid"`.
        group: `"p4"` (default) or `"p4m"`.
        lifting: whether the input is an image (True, default) or a group feature map of the
            same group (False; its channels must be a multiple of |G|).
        strides, padding, data_format, dilation_rate, activation, use_bias,
        kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer,
        activity_regularizer, kernel_constraint, bias_constraint: as `keras.layers.Conv2D`.

    Input shape:
        4D tensor `(batch, height, width, channels)` (or channels first).

    Output shape:
        4D tensor `(batch, new_height, new_width, filters * |G|)`, `new_*` as `Conv2D`.

    Example:

    >>> lift = GroupConv2D(4, 3, group="p4", padding="same")
    >>> y = lift(keras.ops.ones((1, 9, 9, 3)))
    >>> tuple(y.shape)
    (1, 9, 9, 16)
    >>> tuple(GroupConv2D(2, 3, group="p4", lifting=False)(y).shape)
    (1, 7, 7, 8)
    """

    def __init__(
        self,
        filters,
        kernel_size,
        group="p4",
        lifting=True,
        strides=(1, 1),
        padding="valid",
        data_format=None,
        dilation_rate=(1, 1),
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(
            activity_regularizer=_resolve("kernel_regularizer", activity_regularizer), **kwargs
        )
        self.filters = check_positive_int(filters, "filters")
        self.kernel_size = normalize_tuple(kernel_size, 2, "kernel_size", minimum=1)
        self.group = check_group(group)
        self.lifting = check_bool(lifting, "lifting")
        self.strides = normalize_tuple(strides, 2, "strides", minimum=1)
        if not isinstance(padding, str):
            raise TypeError(f"`padding` must be 'valid' or 'same'. Received: padding={padding!r}")
        self.padding = check_choice(padding.lower(), "padding", ("valid", "same"))
        self.data_format = normalize_data_format(data_format)
        self.dilation_rate = normalize_tuple(dilation_rate, 2, "dilation_rate", minimum=1)
        self.use_bias = check_bool(use_bias, "use_bias")
        self.activation = _resolve("activation", activation)
        self.kernel_initializer = _resolve("kernel_initializer", kernel_initializer)
        self.bias_initializer = _resolve("bias_initializer", bias_initializer)
        self.kernel_regularizer = _resolve("kernel_regularizer", kernel_regularizer)
        self.bias_regularizer = _resolve("bias_regularizer", bias_regularizer)
        self.kernel_constraint = _resolve("kernel_constraint", kernel_constraint)
        self.bias_constraint = _resolve("bias_constraint", bias_constraint)
        kh, kw = self.kernel_size
        if kh != kw:
            raise ValueError(
                "`kernel_size` must be square: a group convolution rotates its filters by 90 "
                f"degrees. Received: kernel_size={kernel_size!r}"
            )
        if kh % 2 == 0 and self.padding == "same":
            raise ValueError(
                "`kernel_size` must be odd with `padding='same'`: an even kernel pads "
                "asymmetrically and the layer cannot be rotation-equivariant (use "
                f"padding='valid'). Received: kernel_size={kernel_size!r}, padding='same'"
            )
        self.order = group_order(self.group)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        channels = check_channels(input_shape, self.data_format, type(self).__name__)
        n = self.order
        if not self.lifting and channels % n:
            raise ValueError(
                f"`GroupConv2D(group={self.group!r}, lifting=False)` needs input channels that "
                f"are a multiple of |G| = {n} (fields x group elements). Received: {channels} "
                "channels; use `lifting=True` on images."
            )
        kernel_shape = (*self.kernel_size, channels, self.filters)
        bank_shape = (*self.kernel_size, channels, self.filters * n)
        initializer = self.kernel_initializer

        def group_fan_initializer(shape, dtype=None):
            # Draw as for the expanded bank, keep one filter per field: the fans count |G|.
            return keras.ops.reshape(
                initializer(bank_shape, dtype=dtype), (*shape[:3], self.filters, n)
            )[..., 0]

        self.kernel = self.add_weight(
            name="kernel",
            shape=kernel_shape,
            initializer=group_fan_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.filters,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        axis = -1 if self.data_format == "channels_last" else 1
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={axis: channels})

    def call(self, inputs):
        outputs = group_conv2d(
            inputs,
            self.kernel,
            self.group,
            self.lifting,
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
            data_format=self.data_format,
        )
        if self.use_bias:
            outputs = add_group_bias(outputs, self.bias, self.group, self.data_format)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        spatial = shape[1:3] if self.data_format == "channels_last" else shape[2:4]
        new = tuple(
            conv_output_length(n, k, s, d, self.padding)
            for n, k, s, d in zip(
                spatial, self.kernel_size, self.strides, self.dilation_rate, strict=True
            )
        )
        channels = self.filters * self.order
        if self.data_format == "channels_last":
            return (shape[0], *new, channels)
        return (shape[0], channels, *new)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "group": self.group,
                "lifting": self.lifting,
                "strides": self.strides,
                "padding": self.padding,
                "data_format": self.data_format,
                "dilation_rate": self.dilation_rate,
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
                "activity_regularizer": keras.regularizers.serialize(self.activity_regularizer),
                "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
                "bias_constraint": keras.constraints.serialize(self.bias_constraint),
            }
        )
        return config
