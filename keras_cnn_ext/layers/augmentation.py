"""Augmentation presets: Keras' own geometric/photometric layers composed with ours."""

from __future__ import annotations

import keras

from keras_cnn_ext.layers.cutout import Cutout
from keras_cnn_ext.layers.random_erasing import RandomErasing
from keras_cnn_ext.utils import check_seed, normalize_data_format, normalize_float_tuple

# Each preset is a list of (layer class, keyword arguments); "{value_range}" and
# "{cutout_size}" stand for the builder's arguments. Kept as data so a preset is one table row.
AUGMENTATION_PRESETS = {
    # Geometric only: safe for nearly every image-classification task.
    "light": [
        (keras.layers.RandomFlip, {"mode": "horizontal"}),
        (keras.layers.RandomTranslation, {"height_factor": 0.1, "width_factor": 0.1}),
        (keras.layers.RandomZoom, {"height_factor": 0.1}),
    ],
    # Geometric + mild photometric + Random Erasing (p = 0.5, Zhong et al.'s setting).
    "standard": [
        (keras.layers.RandomFlip, {"mode": "horizontal"}),
        (keras.layers.RandomRotation, {"factor": 0.05}),
        (keras.layers.RandomTranslation, {"height_factor": 0.1, "width_factor": 0.1}),
        (keras.layers.RandomZoom, {"height_factor": 0.1}),
        (keras.layers.RandomBrightness, {"factor": 0.2, "value_range": "{value_range}"}),
        (keras.layers.RandomContrast, {"factor": 0.2, "value_range": "{value_range}"}),
        (RandomErasing, {"probability": 0.5}),
    ],
    # Everything: rotation, translation, scaling, shear, brightness, contrast, saturation, hue,
    # then Cutout and Random Erasing.
    "strong": [
        (keras.layers.RandomFlip, {"mode": "horizontal"}),
        (keras.layers.RandomRotation, {"factor": 0.1}),
        (keras.layers.RandomTranslation, {"height_factor": 0.15, "width_factor": 0.15}),
        (keras.layers.RandomZoom, {"height_factor": 0.2}),
        (keras.layers.RandomShear, {"x_factor": 0.1, "y_factor": 0.1}),
        (keras.layers.RandomBrightness, {"factor": 0.3, "value_range": "{value_range}"}),
        (keras.layers.RandomContrast, {"factor": 0.3, "value_range": "{value_range}"}),
        (keras.layers.RandomSaturation, {"factor": (0.3, 0.7), "value_range": "{value_range}"}),
        (keras.layers.RandomHue, {"factor": 0.05, "value_range": "{value_range}"}),
        (Cutout, {"size": "{cutout_size}"}),
        (RandomErasing, {"probability": 0.5}),
    ],
    # DeVries & Taylor's CIFAR recipe: flip, 4-pixel shifts (of 32) and one 16x16 hole.
    "cutout": [
        (keras.layers.RandomFlip, {"mode": "horizontal"}),
        (keras.layers.RandomTranslation, {"height_factor": 0.125, "width_factor": 0.125}),
        (Cutout, {"size": "{cutout_size}"}),
    ],
}

# Keras' RandomBrightness and RandomContrast take no `data_format` (they are layout-agnostic).
_NO_DATA_FORMAT = (keras.layers.RandomBrightness, keras.layers.RandomContrast)


def augmentation_preset(
    name="standard",
    value_range=(0.0, 255.0),
    cutout_size=16,
    data_format=None,
    seed=None,
):
    """Returns a `keras.Sequential` of augmentation layers for a named recipe.

    Composes Keras' preprocessing layers (`RandomFlip`, `RandomRotation`, `RandomTranslation`,
    `RandomZoom`, `RandomShear`, `RandomBrightness`, `RandomContrast`, `RandomSaturation`,
    `RandomHue`) with this package's `Cutout` and `RandomErasing`, without re-implementing any
    of them. Every layer is random only in training and the identity at inference (Keras'
    layers and ours), so the result can be the first block of a model or mapped over a
    `tf.data` pipeline with `training=True`.

    Presets (see `AUGMENTATION_PRESETS` for the exact arguments):
        - `"light"`: horizontal flip, 10% translation, 10% zoom.
        - `"standard"`: light + rotation up to 18 degrees, brightness and contrast 0.2, and
          Random Erasing with probability 0.5.
        - `"strong"`: everything, including shear, saturation, hue, Cutout and Random
          Erasing.
        - `"cutout"`: the Cutout paper's CIFAR recipe: flip, 12.5% translation, one hole of
          `cutout_size`.

    Args:
        name: the preset's name. Defaults to `"standard"`.
        value_range: `(low, high)` of the input pixels, for the photometric layers. Defaults to
            `(0, 255)`.
        cutout_size: int, the hole size of Cutout in the presets that use it. Defaults to 16.
        data_format: `"channels_last"` or `"channels_first"`. Defaults to
            `keras.config.image_data_format()`.
        seed: int or `None`; layer `i` gets `seed + i`, so the whole pipeline is reproducible.

    Returns:
        A `keras.Sequential` named `"augmentation_<name>"`.

    Example:

    >>> augment = augmentation_preset("light", seed=1)
    >>> tuple(augment(keras.ops.ones((2, 32, 32, 3)), training=True).shape)
    (2, 32, 32, 3)
    """
    if name not in AUGMENTATION_PRESETS:
        raise ValueError(
            f"`name` must be one of {sorted(AUGMENTATION_PRESETS)}. Received: {name!r}"
        )
    value_range = normalize_float_tuple(value_range, 2, "value_range")
    data_format = normalize_data_format(data_format)
    seed = check_seed(seed)
    substitutions = {"{value_range}": value_range, "{cutout_size}": cutout_size}
    layers = []
    for index, (layer_cls, kwargs) in enumerate(AUGMENTATION_PRESETS[name]):
        kwargs = {
            k: substitutions.get(v, v) if isinstance(v, str) else v for k, v in kwargs.items()
        }
        kwargs["seed"] = None if seed is None else seed + index
        if layer_cls not in _NO_DATA_FORMAT:
            kwargs["data_format"] = data_format
        layers.append(layer_cls(**kwargs))
    return keras.Sequential(layers, name=f"augmentation_{name}")
