"""`FractionalMaxPooling2D`: Graham's fractional max pooling as a Keras 3 layer."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_cnn_ext.layers.base import Layer
from keras_cnn_ext.ops.fractional_max_pool import (
    fractional_max_pool2d,
    fractional_output_size,
    fractional_pooling_sequence,
)
from keras_cnn_ext.utils import (
    check_bool,
    check_input_rank,
    check_seed,
    normalize_data_format,
    normalize_float_tuple,
    replica_seed,
)

# Salt of the fixed inference seed, so inference regions do not coincide with the first
# training draw of a layer built with the same `seed`.
_INFERENCE_SALT = 0x46D9


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class FractionalMaxPooling2D(Layer):
    """Fractional max pooling (Graham, 2014) with TensorFlow's region rules.

    Shrinks height and width by a non-integer factor such as sqrt(2): the output has
    `floor(size / ratio)` rows/columns and each window spans `k` or `k + 1` inputs
    (`k = floor(size / output_size)`), with boundaries drawn pseudo-randomly (or randomly) as in
    `tf.nn.fractional_max_pool`. One set of regions is drawn per call and shared by the batch and
    the channels. See `keras_cnn_ext.ops.fractional_max_pool2d`.

    In training every call draws fresh regions (from the layer's seed generator, folded with the
    replica id under `tf.distribute`). At inference the regions are fixed: they depend only on the
    input size and `seed`, so predictions, saved models and exported models are deterministic.
    When the height and width are known at trace time these fixed regions are computed once and
    embedded as constants, so TFLite (builtin ops) and ONNX exports contain only gathers and
    maxima.

    Args:
        pooling_ratio: a float > 1, or a `(height_ratio, width_ratio)` pair. The output must keep
            at least one row and column.
        pseudo_random: draw pseudo-random (default) rather than random region boundaries.
        overlapping: whether adjacent regions share their boundary row/column. Defaults to
            `False`.
        seed: `None` or a non-negative int seeding the training regions and fixing the
            inference regions (`None` uses 0 for the latter).
        data_format: `"channels_last"` or `"channels_first"`; `None` (default) uses
            `keras.config.image_data_format()`.
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Input shape:
        4D tensor `(batch, height, width, channels)` (channels_last) or
        `(batch, channels, height, width)` (channels_first).

    Output shape:
        4D tensor with height and width `floor(size / ratio)`.

    Example:

    >>> layer = FractionalMaxPooling2D(1.414, overlapping=True, seed=1)
    >>> layer(np.zeros((2, 32, 32, 3), "float32")).shape
    TensorShape([2, 22, 22, 3])
    """

    def __init__(
        self,
        pooling_ratio,
        pseudo_random=True,
        overlapping=False,
        seed=None,
        data_format=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        ratios = normalize_float_tuple(pooling_ratio, 2, "pooling_ratio")
        if not all(np.isfinite(r) and r > 1.0 for r in ratios):
            raise ValueError(
                "`pooling_ratio` must be a number > 1 or a (height, width) pair of such numbers. "
                f"Received: {pooling_ratio!r}"
            )
        self.pooling_ratio = ratios
        self.pseudo_random = check_bool(pseudo_random, "pseudo_random")
        self.overlapping = check_bool(overlapping, "overlapping")
        self.seed = check_seed(seed)
        self.data_format = normalize_data_format(data_format)
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def _spatial_axes(self):
        return (1, 2) if self.data_format == "channels_last" else (2, 3)

    def build(self, input_shape):
        check_input_rank(input_shape, 4)
        for axis, ratio in zip(self._spatial_axes(), self.pooling_ratio, strict=True):
            size = input_shape[axis]
            if size is not None and fractional_output_size(size, ratio) < 1:
                raise ValueError(
                    f"`pooling_ratio` must be in (1, {size}] for an input of spatial size {size} "
                    f"(the output size floor(size / ratio) must be >= 1). Received: "
                    f"{self.pooling_ratio} for input shape {tuple(input_shape)}"
                )

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        for axis, ratio in zip(self._spatial_axes(), self.pooling_ratio, strict=True):
            shape[axis] = fractional_output_size(shape[axis], ratio)
        return tuple(shape)

    def _inference_seed(self):
        return tf.constant([self.seed or 0, _INFERENCE_SALT], tf.int32)

    def _inference_sequences(self, inputs):
        """The fixed regions: NumPy constants when the size is static, else drawn in the graph."""
        sizes = [inputs.shape[axis] for axis in self._spatial_axes()]
        if any(size is None for size in sizes):
            return None, None
        # Drawn eagerly at trace time with the same stateless ops (and seeds) as the op's
        # in-graph path, then embedded as constants.
        with tf.init_scope():
            seeds = tf.random.experimental.stateless_split(self._inference_seed(), 2, alg="philox")
            return tuple(
                np.asarray(
                    fractional_pooling_sequence(
                        size, fractional_output_size(size, ratio), seed, self.pseudo_random
                    )
                )
                for size, ratio, seed in zip(sizes, self.pooling_ratio, seeds, strict=True)
            )

    def call(self, inputs, training=None):
        if training:
            seed = replica_seed(self.seed_generator.next())
            rows = cols = None
        else:
            seed = self._inference_seed()
            rows, cols = self._inference_sequences(inputs)
        outputs, _, _ = fractional_max_pool2d(
            inputs,
            self.pooling_ratio,
            pseudo_random=self.pseudo_random,
            overlapping=self.overlapping,
            seed=seed,
            row_pooling_sequence=rows,
            col_pooling_sequence=cols,
            data_format=self.data_format,
        )
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "pooling_ratio": self.pooling_ratio,
                "pseudo_random": self.pseudo_random,
                "overlapping": self.overlapping,
                "seed": self.seed,
                "data_format": self.data_format,
            }
        )
        return config
