"""GroupBatchNormalization: batch normalization with statistics shared over the group axis."""

from __future__ import annotations

import keras

from keras_cnn_ext.layers.base import CastsIntegerInputs
from keras_cnn_ext.ops.group_conv import check_group, group_order
from keras_cnn_ext.utils import check_channels, normalize_data_format


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class GroupBatchNormalization(CastsIntegerInputs, keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` for p4 / p4m feature maps: one mean, variance, gamma
    and beta per field, shared by its |G| channels.

    A plain `BatchNormalization` on `F * |G|` channels normalises each group element on its
    own, which breaks equivariance (rotating the input permutes the group channels, but not
    their statistics). Here the statistics are taken over batch, space and the group axis
    (Cohen & Welling, 2016, section 7), so `bn(g . f) == g . bn(f)` in training and
    inference. Implemented as Keras' batch normalization over the field axis of the
    `(..., F, |G|)` view of the input: every Keras argument behaves as there.

    Args:
        group: `"p4"` (default) or `"p4m"`.
        data_format: `"channels_last"` or `"channels_first"`; default Keras' global setting.
        momentum, epsilon, center, scale, beta_initializer, gamma_initializer,
        moving_mean_initializer, moving_variance_initializer, beta_regularizer,
        gamma_regularizer, beta_constraint, gamma_constraint, synchronized: as
        `keras.layers.BatchNormalization` (there is no `axis`: the field axis is implied).

    Input shape:
        4D tensor with `F * |G|` channels (field-major, as `GroupConv2D` writes them).

    Output shape:
        Same as the input.

    Example:

    >>> bn = GroupBatchNormalization("p4")
    >>> tuple(bn(keras.ops.ones((2, 5, 5, 8))).shape)
    (2, 5, 5, 8)
    >>> [tuple(w.shape) for w in bn.weights]
    [(2,), (2,), (2,), (2,)]
    """

    def __init__(self, group="p4", data_format=None, **kwargs):
        if "axis" in kwargs:
            raise TypeError(
                "`GroupBatchNormalization` has no `axis` argument: it normalises the field axis "
                f"of `data_format`. Received: axis={kwargs['axis']!r}"
            )
        self.group = check_group(group)
        self.data_format = normalize_data_format(data_format)
        self.order = group_order(self.group)
        super().__init__(axis=-2 if self.data_format == "channels_last" else 1, **kwargs)

    def _field_shape(self, shape):
        n = self.order
        if self.data_format == "channels_last":
            return (*shape[:3], shape[3] // n, n)
        return (shape[0], shape[1] // n, n, *shape[2:])

    def build(self, input_shape):
        channels = check_channels(input_shape, self.data_format, type(self).__name__)
        if channels % self.order:
            raise ValueError(
                f"`GroupBatchNormalization(group={self.group!r})` needs input channels that "
                f"are a multiple of |G| = {self.order}. Received: {channels} channels"
            )
        self.fields = channels // self.order
        super().build(self._field_shape(tuple(input_shape)))
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def call(self, inputs, training=None, mask=None):
        shape = keras.ops.shape(inputs)
        n = self.order
        if self.data_format == "channels_last":
            fields = (shape[0], shape[1], shape[2], self.fields, n)
        else:
            fields = (shape[0], self.fields, n, shape[2], shape[3])
        outputs = super().call(keras.ops.reshape(inputs, fields), training=training)
        return keras.ops.reshape(outputs, shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.pop("axis", None)
        config.update({"group": self.group, "data_format": self.data_format})
        return config
