"""ChannelPad: the zero-padded channels of an option-A ResNet shortcut, as a layer."""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class ChannelPad(keras.layers.Layer):
    """Zero-pads the channel axis (option-A shortcut of the CIFAR ResNets, He et al. 2015).

    Args:
        before: channels added before. after: channels added after.
        data_format: `"channels_last"` (default) or `"channels_first"`.
    """

    def __init__(self, before, after, data_format="channels_last", **kwargs):
        super().__init__(**kwargs)
        self.before = int(before)
        self.after = int(after)
        self.data_format = data_format

    def call(self, inputs):
        paddings = [[0, 0]] * 4
        paddings[1 if self.data_format == "channels_first" else 3] = [self.before, self.after]
        return tf.pad(inputs, paddings)

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        axis = 1 if self.data_format == "channels_first" else 3
        if shape[axis] is not None:
            shape[axis] += self.before + self.after
        return tuple(shape)

    def get_config(self):
        config = super().get_config()
        config.update({"before": self.before, "after": self.after, "data_format": self.data_format})
        return config
