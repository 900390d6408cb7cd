"""GroupPooling: max or mean over the group axis of a p4 / p4m feature map."""

from __future__ import annotations

import keras

from keras_cnn_ext.layers.base import Layer
from keras_cnn_ext.ops.group_conv import check_group, group_order, group_pool
from keras_cnn_ext.utils import check_channels, check_choice, normalize_data_format


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class GroupPooling(Layer):
    """Pools each field over its |G| group channels: group feature map -> invariant map.

    With `GroupConv2D` outputs (`F * |G|` channels, field-major), the result has `F` channels
    and transforms like an image: pooling `g . f` gives the pooled `f` moved spatially by `g`
    (Cohen & Welling, 2016, section 6.3). Followed by global spatial pooling, a p4/p4m network
    is exactly invariant to 90-degree rotations (and flips).

    Spatial pooling layers (`keras.layers.MaxPooling2D`, `AveragePooling2D`, the global ones)
    work on group feature maps as they are: they act per channel, so they keep the layout.

    Args:
        group: `"p4"` (default) or `"p4m"`.
        reduction: `"max"` (default) or `"avg"`.
        data_format: `"channels_last"` or `"channels_first"`; default Keras' global setting.

    Input shape:
        4D tensor with `F * |G|` channels.

    Output shape:
        4D tensor with `F` channels.

    Example:

    >>> tuple(GroupPooling("p4")(keras.ops.ones((2, 5, 5, 12))).shape)
    (2, 5, 5, 3)
    """

    def __init__(self, group="p4", reduction="max", data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.group = check_group(group)
        self.reduction = check_choice(reduction, "reduction", ("max", "avg"))
        self.data_format = normalize_data_format(data_format)
        self.order = group_order(self.group)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        channels = check_channels(input_shape, self.data_format, type(self).__name__)
        if channels % self.order:
            raise ValueError(
                f"`GroupPooling(group={self.group!r})` needs input channels that are a multiple "
                f"of |G| = {self.order}. Received: {channels} channels"
            )

    def call(self, inputs):
        return group_pool(inputs, self.group, self.reduction, self.data_format)

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        axis = 3 if self.data_format == "channels_last" else 1
        if shape[axis] is not None:
            shape[axis] //= self.order
        return tuple(shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"group": self.group, "reduction": self.reduction, "data_format": self.data_format}
        )
        return config
