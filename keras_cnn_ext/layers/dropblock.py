"""DropBlock2D: structured dropout of contiguous regions (Ghiasi et al., 2018)."""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_cnn_ext.layers.base import Layer
from keras_cnn_ext.ops.dropblock import drop_block_2d
from keras_cnn_ext.utils import (
    check_bool,
    check_input_rank,
    check_positive_int,
    check_rate,
    check_seed,
    normalize_data_format,
    replica_seed,
)


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class DropBlock2D(Layer):
    """Drops contiguous square blocks of a feature map during training.

    DropBlock (Ghiasi et al., 2018, "DropBlock: A regularization method for convolutional
    networks") drops `block_size x block_size` regions instead of independent units, which
    removes spatially correlated information that plain dropout leaves in neighbouring units.
    Block centres are drawn with probability
    `gamma = rate * H * W / (block_size**2 * (H - block_size + 1) * (W - block_size + 1))`,
    only where the whole block fits in the map, grown into blocks by a stride-1 max-pool, and
    the kept units are rescaled by `numel / kept` (over the batch). Each sample (and, by
    default, each channel) gets its own mask. Blocks overlap and the border has fewer valid
    centres, so the fraction actually dropped is somewhat below `rate` (the paper's
    approximation). With `block_size` equal to the map size every channel map is kept or
    dropped whole: spatial dropout. At inference the layer is the identity.

    A `block_size` larger than the map is clamped to `min(block_size, height, width)` (as the
    authors' TPU reference code and timm do), whether the size is known when the layer is
    built or only at run time (then one branch per possible clamped size is traced and the
    right one runs): a 7x7 block on a 5x5 map drops 5x5 blocks, i.e. whole channel maps.

    The rate lives in a non-trainable variable, `rate_variable`, read by the compiled step,
    so a schedule can change it between steps without retracing: the paper ramps it linearly
    from 0 during training, which `keras_cnn_ext.layers.LinearRateSchedule` does (the config
    keeps the constructor's `rate`; the current value is saved with the weights). Masks are
    drawn with stateless ops seeded per replica, so replicas of a `tf.distribute` strategy
    drop different blocks.

    Args:
        rate: float in [0, 1), the target fraction of units to drop (the initial value of
            `rate_variable`).
        block_size: int >= 1, the side of the dropped squares; clamped to the height and width
            of the input when larger.
        data_format: `"channels_last"` or `"channels_first"`. Defaults to
            `keras.config.image_data_format()`.
        seed: int or `None`, for reproducible masks.
        shared_channels: bool, default `False`: each channel gets its own mask (the paper's
            reference code and timm). `True` shares one mask across the channels of a sample.

    Input shape:
        4D tensor `(batch, height, width, channels)` or `(batch, channels, height, width)`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.random.normal((2, 16, 16, 8))
    >>> y = DropBlock2D(rate=0.1, block_size=5, seed=1)(x, training=True)
    >>> tuple(y.shape)
    (2, 16, 16, 8)
    """

    def __init__(
        self,
        rate,
        block_size,
        data_format=None,
        seed=None,
        shared_channels=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.rate = check_rate(rate)
        self.block_size = check_positive_int(block_size, "block_size")
        self.data_format = normalize_data_format(data_format)
        self.seed = check_seed(seed)
        self.shared_channels = check_bool(shared_channels, "shared_channels")
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        self.supports_masking = True

    def build(self, input_shape):
        check_input_rank(input_shape, 4)
        # Assigned from the host (see LinearRateSchedule); "only_first_replica" keeps one
        # consistent value should anyone assign it inside a replica context.
        self.rate_variable = self.add_weight(
            name="rate",
            shape=(),
            initializer=keras.initializers.Constant(self.rate),
            dtype="float32",
            trainable=False,
            autocast=False,
            aggregation="only_first_replica",
        )

    def _spatial_axes(self):
        return (1, 2) if self.data_format == "channels_last" else (2, 3)

    def call(self, inputs, training=None):
        if not training:
            return inputs
        seed = replica_seed(self.seed_generator.next())

        def drop(block_size):
            return drop_block_2d(
                inputs,
                self.rate_variable,
                block_size,
                seed,
                data_format=self.data_format,
                shared_channels=self.shared_channels,
            )

        sizes = [inputs.shape[axis] for axis in self._spatial_axes()]
        largest = min([self.block_size] + [s for s in sizes if s is not None])
        if None not in sizes or largest == 1:
            return drop(largest)
        # The clamped size is known only at run time: trace each candidate, run one.
        shape = tf.shape(inputs)
        clamped = tf.minimum(largest, tf.reduce_min([shape[a] for a in self._spatial_axes()]))
        branches = [lambda k=k: drop(k) for k in range(1, largest + 1)]
        return tf.switch_case(tf.maximum(clamped, 1) - 1, branches)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "rate": self.rate,
                "block_size": self.block_size,
                "data_format": self.data_format,
                "seed": self.seed,
                "shared_channels": self.shared_channels,
            }
        )
        return config
