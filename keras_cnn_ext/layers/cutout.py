"""Cutout: fixed-size square holes (DeVries & Taylor, 2017)."""

from __future__ import annotations

import keras

from keras_cnn_ext.layers.base import Layer
from keras_cnn_ext.ops.erasing import cutout
from keras_cnn_ext.utils import (
    check_number,
    check_seed,
    normalize_data_format,
    normalize_tuple,
    replica_seed,
)


def image_spatial_shape(input_shape, data_format):
    """`(height, width)` of a rank-3 or rank-4 image shape; ValueError for other ranks."""
    shape = tuple(input_shape)
    if len(shape) not in (3, 4):
        raise ValueError(
            "`inputs` must be a rank-4 batch of images or a rank-3 single image "
            f"(channels_last or channels_first). Received shape: {shape}"
        )
    image = shape[-3:]
    return image[:2] if data_format == "channels_last" else image[1:]


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class Cutout(Layer):
    """Masks out fixed-size square holes at random positions of each image during training.

    Cutout (DeVries & Taylor, 2017, "Improved regularization of convolutional neural networks
    with cutout") writes `fill_value` into `num_holes` holes of `size` pixels per image. Each
    hole's centre is drawn uniformly over the whole image, so holes near the border are
    partly outside it (clipped), as in the paper; the paper used one 16x16 hole on CIFAR-10
    and 8x8 on CIFAR-100. Every image gets its own holes; the masks are built vectorised with
    stateless ops seeded per replica, so the layer works in a model (also under
    `jit_compile=True` and `tf.distribute`) and in a `tf.data` pipeline
    (`ds.map(lambda x: layer(x, training=True))`). At inference it is the identity (apart
    from casting to the layer's compute dtype, like Keras' preprocessing layers).

    Args:
        num_holes: int >= 1, holes per image (they may overlap). Defaults to 1.
        size: int or `(height, width)` of each hole in pixels, >= 1 and not larger than the
            image. Defaults to 16 (the paper's CIFAR-10 setting).
        fill_value: float, the value written into the holes. Defaults to 0.0 (the paper
            applies cutout to normalised images, so 0 is the mean).
        data_format: `"channels_last"` or `"channels_first"`. Defaults to
            `keras.config.image_data_format()`.
        seed: int or `None`, for reproducible holes.

    Input shape:
        3D (one image) or 4D (batch) tensor in `data_format` layout.

    Output shape:
        Same as the input.

    Example:

    >>> images = keras.ops.ones((2, 32, 32, 3))
    >>> out = Cutout(size=16, seed=1)(images, training=True)
    >>> tuple(out.shape)
    (2, 32, 32, 3)
    """

    def __init__(self, num_holes=1, size=16, fill_value=0.0, data_format=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.num_holes = normalize_tuple(num_holes, 1, "num_holes", minimum=1)[0]
        self.size = normalize_tuple(size, 2, "size", minimum=1)
        self.fill_value = check_number(fill_value, "fill_value")
        self.data_format = normalize_data_format(data_format)
        self.seed = check_seed(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)

    def build(self, input_shape):
        spatial = image_spatial_shape(input_shape, self.data_format)
        for size, dim in zip(self.size, spatial, strict=True):
            if dim is not None and size > dim:
                raise ValueError(
                    f"`size` must not exceed the image height and width. Received: "
                    f"size={self.size} for input shape {tuple(input_shape)}"
                )

    def call(self, inputs, training=None):
        if not training:
            return inputs
        return cutout(
            inputs,
            self.num_holes,
            self.size,
            replica_seed(self.seed_generator.next()),
            fill_value=self.fill_value,
            data_format=self.data_format,
        )

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_holes": self.num_holes,
                "size": self.size,
                "fill_value": self.fill_value,
                "data_format": self.data_format,
                "seed": self.seed,
            }
        )
        return config
