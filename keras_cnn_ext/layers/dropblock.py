"""DropBlock2D: structured dropout of contiguous regions (Ghiasi et al., 2018)."""

from __future__ import annotations

import numbers

import keras

from keras_cnn_ext.ops.dropblock import drop_block_2d
from keras_cnn_ext.utils import (
    check_input_rank,
    check_rate,
    check_seed,
    normalize_data_format,
    replica_seed,
)


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class DropBlock2D(keras.layers.Layer):
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

    The rate lives in a non-trainable variable, `rate_variable`, read by the compiled step,
    so a schedule can change it between steps without retracing: the paper ramps it linearly
    from 0 during training, which `keras_cnn_ext.layers.LinearRateSchedule` does (the config
    keeps the constructor's `rate`; the current value is saved with the weights). Masks are
    drawn with stateless ops seeded per replica, so replicas of a `tf.distribute` strategy
    drop different blocks.

    Args:
        rate: float in [0, 1), the target fraction of units to drop (the initial value of
            `rate_variable`).
        block_size: int >= 1, the side of the dropped squares; it must not exceed the height
            or width of the input.
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
        if (
            isinstance(block_size, bool)
            or not isinstance(block_size, numbers.Integral)
            or block_size < 1
        ):
            raise ValueError(f"`block_size` must be an integer >= 1. Received: {block_size!r}")
        self.block_size = int(block_size)
        self.data_format = normalize_data_format(data_format)
        self.seed = check_seed(seed)
        self.shared_channels = bool(shared_channels)
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        self.supports_masking = True

    def build(self, input_shape):
        shape = check_input_rank(input_shape, 4)
        spatial = shape[1:3] if self.data_format == "channels_last" else shape[2:4]
        for axis_name, size in zip(("height", "width"), spatial, strict=True):
            if size is not None and self.block_size > size:
                raise ValueError(
                    f"`block_size` must not exceed the input {axis_name}. "
                    f"Received: block_size={self.block_size} for input shape {shape}"
                )
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

    def call(self, inputs, training=None):
        if not training:
            return inputs
        return drop_block_2d(
            inputs,
            self.rate_variable,
            self.block_size,
            replica_seed(self.seed_generator.next()),
            data_format=self.data_format,
            shared_channels=self.shared_channels,
        )

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
