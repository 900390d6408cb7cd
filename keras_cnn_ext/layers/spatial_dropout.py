"""SpatialDropout2D: drops whole channel maps (Tompson et al., 2015), replica-safe."""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_cnn_ext.layers.base import Layer
from keras_cnn_ext.utils import (
    STATELESS_RNG_ALG,
    check_input_rank,
    check_rate,
    check_seed,
    normalize_data_format,
    replica_seed,
)


def _spatial_dropout(inputs, rate, seed, channel_axis):
    """Zeroes each (sample, channel) map with probability `rate`, scales the rest by 1/(1-rate)."""
    shape = tf.shape(inputs)
    mask_shape = tf.stack([shape[i] if i in (0, channel_axis) else 1 for i in range(4)])
    noise = tf.random.stateless_uniform(mask_shape, seed=seed, alg=STATELESS_RNG_ALG)
    keep_prob = 1.0 - rate
    # floor(keep_prob + U) is 1 with probability keep_prob (U uniform in [0, 1)).
    keep = tf.floor(keep_prob + noise) / keep_prob
    return inputs * tf.cast(keep, inputs.dtype)


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class SpatialDropout2D(Layer):
    """Spatial 2D dropout: drops entire channel maps of each sample during training.

    Tompson et al., "Efficient Object Localization Using Convolutional Networks" (CVPR 2015):
    neighbouring activations of a feature map are strongly correlated, so plain dropout barely
    regularises convolutional layers; dropping whole maps does. Each `(sample, channel)` map is
    zeroed with probability `rate` and the kept maps are scaled by `1 / (1 - rate)`, so the
    expectation is unchanged and the layer is the identity at inference (and in exports).

    Same arguments and semantics as `keras.layers.SpatialDropout2D`, with two differences.
    Masks are drawn with stateless ops whose seed has the replica id folded in, so replicas of
    a `tf.distribute` strategy drop different channels; Keras 3.15's layer draws from a
    mirrored `SeedGenerator` and drops the same channels of the same samples on every replica.
    Integer inputs are cast to the compute dtype (Keras' layer raises a ValueError). It works
    under `jit_compile=True`.

    Args:
        rate: float in [0, 1), the probability of dropping a channel map.
        data_format: `"channels_last"` or `"channels_first"`. Defaults to
            `keras.config.image_data_format()`.
        seed: int or `None`, for reproducible masks.

    Input shape:
        4D tensor `(batch, height, width, channels)` or `(batch, channels, height, width)`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.ops.ones((2, 4, 4, 8))
    >>> y = SpatialDropout2D(0.5, seed=1)(x, training=True)
    >>> sorted(set(keras.ops.convert_to_numpy(y).ravel().tolist()))
    [0.0, 2.0]
    """

    def __init__(self, rate, data_format=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = check_rate(rate)
        self.data_format = normalize_data_format(data_format)
        self.seed = check_seed(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        self.input_spec = keras.layers.InputSpec(ndim=4)
        self.supports_masking = True

    def build(self, input_shape):
        check_input_rank(input_shape, 4)

    def call(self, inputs, training=None):
        if not training or self.rate == 0.0:
            return inputs
        channel_axis = 3 if self.data_format == "channels_last" else 1
        seed = replica_seed(self.seed_generator.next())
        return _spatial_dropout(inputs, self.rate, seed, channel_axis)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "data_format": self.data_format, "seed": self.seed})
        return config
