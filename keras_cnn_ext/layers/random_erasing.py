"""RandomErasing: one random rectangle per image with an exact probability (Zhong et al., 2017)."""

from __future__ import annotations

import keras

from keras_cnn_ext.layers.base import Layer
from keras_cnn_ext.layers.cutout import image_spatial_shape
from keras_cnn_ext.ops.erasing import FILL_MODES, random_erasing
from keras_cnn_ext.utils import (
    check_choice,
    check_number,
    check_rate,
    check_seed,
    normalize_data_format,
    normalize_float_tuple,
    replica_seed,
)


def _check_range(value, name, low, high, low_inclusive):
    pair = normalize_float_tuple(value, 2, name)
    low_ok = pair[0] >= low if low_inclusive else pair[0] > low
    if not (low_ok and pair[0] <= pair[1] and (high is None or pair[1] <= high)):
        bounds = f"{'[' if low_inclusive else '('}{low}, {'inf)' if high is None else f'{high}]'}"
        raise ValueError(
            f"`{name}` must be a (min, max) pair with min <= max, both in {bounds}. "
            f"Received: {value!r}"
        )
    return pair


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class RandomErasing(Layer):
    """Erases one random rectangle in each image with probability `probability`.

    Random Erasing (Zhong et al., 2017, "Random erasing data augmentation"): every image is
    selected independently with probability `probability` (exactly: `probability=1.0` erases
    every image); a selected image gets one rectangle covering a uniform fraction in
    `area_range` of its area, with aspect ratio (height / width) log-uniform in
    `aspect_ratio_range`, placed where it fits. The paper's "retry until the rectangle fits"
    loop is vectorised: 10 candidates are drawn per image and the first one that fits is used;
    if none fits, the last one is clipped to the image (so the probability stays exact, unlike
    timm, which then leaves the image unerased). Every image gets its own rectangle, drawn
    with stateless ops seeded per replica; the layer works in a model (also under
    `jit_compile=True` and `tf.distribute`) and in a `tf.data` pipeline. At inference it is
    the identity (apart from casting to the compute dtype).

    Differences from `keras.layers.RandomErasing`: Keras' `factor=1.0` draws a per-image
    probability uniformly in [0, 1] and so erases only about half the images; its `scale`
    range is split between two independent side fractions, with no aspect-ratio control.

    Args:
        probability: float in [0, 1], the probability that an image is erased. Defaults to 0.5
            (the paper's setting).
        area_range: `(min, max)` fractions of the image area, in (0, 1]. Defaults to
            `(0.02, 1/3)`.
        aspect_ratio_range: `(min, max)` of height / width, > 0, sampled log-uniformly.
            Defaults to `(0.3, 3.3)`.
        fill_mode: `"constant"` (default: `fill_value`), `"random"` (per-pixel standard normal,
            timm's "pixel" mode, for standardised inputs), `"random_uniform"` (per-pixel
            uniform in `value_range`, the paper's random values) or `"mean"` (each image's own
            per-channel mean).
        fill_value: float, the fill for `fill_mode="constant"`. Defaults to 0.0.
        value_range: `(low, high)` range of `fill_mode="random_uniform"`. Defaults to
            `(0, 255)`.
        data_format: `"channels_last"` or `"channels_first"`. Defaults to
            `keras.config.image_data_format()`.
        seed: int or `None`, for reproducible erasing.

    Input shape:
        3D (one image) or 4D (batch) tensor in `data_format` layout.

    Output shape:
        Same as the input.

    Example:

    >>> images = keras.ops.ones((4, 32, 32, 3))
    >>> out = RandomErasing(probability=1.0, seed=1)(images, training=True)
    >>> tuple(out.shape)
    (4, 32, 32, 3)
    """

    def __init__(
        self,
        probability=0.5,
        area_range=(0.02, 1.0 / 3.0),
        aspect_ratio_range=(0.3, 3.3),
        fill_mode="constant",
        fill_value=0.0,
        value_range=(0.0, 255.0),
        data_format=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.probability = check_rate(probability, "probability", upper_inclusive=True)
        self.area_range = _check_range(area_range, "area_range", 0.0, 1.0, False)
        self.aspect_ratio_range = _check_range(
            aspect_ratio_range, "aspect_ratio_range", 0.0, None, False
        )
        self.fill_mode = check_choice(fill_mode, "fill_mode", FILL_MODES)
        self.fill_value = check_number(fill_value, "fill_value")
        self.value_range = normalize_float_tuple(value_range, 2, "value_range")
        if self.value_range[0] > self.value_range[1]:
            raise ValueError(
                f"`value_range` must be (low, high) with low <= high. Received: {value_range!r}"
            )
        self.data_format = normalize_data_format(data_format)
        self.seed = check_seed(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)

    def build(self, input_shape):
        image_spatial_shape(input_shape, self.data_format)

    def call(self, inputs, training=None):
        if not training:
            return inputs
        return random_erasing(
            inputs,
            replica_seed(self.seed_generator.next()),
            probability=self.probability,
            area_range=self.area_range,
            aspect_ratio_range=self.aspect_ratio_range,
            fill_mode=self.fill_mode,
            fill_value=self.fill_value,
            value_range=self.value_range,
            data_format=self.data_format,
        )

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "probability": self.probability,
                "area_range": self.area_range,
                "aspect_ratio_range": self.aspect_ratio_range,
                "fill_mode": self.fill_mode,
                "fill_value": self.fill_value,
                "value_range": self.value_range,
                "data_format": self.data_format,
                "seed": self.seed,
            }
        )
        return config
