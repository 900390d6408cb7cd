"""Cutout and Random Erasing as pure, vectorised, XLA-safe TensorFlow functions.

Every image of the batch gets its own rectangles; masks are built from integer box bounds by
comparing against `tf.range` rows and columns, so there is no per-image Python loop and no
gather/scatter, and the functions run inside `tf.data` pipelines and under `jit_compile=True`.
Images may be batched (rank 4) or single (rank 3).
"""

from __future__ import annotations

import math

import tensorflow as tf

from keras_cnn_ext.utils import STATELESS_RNG_ALG, normalize_data_format

FILL_MODES = ("constant", "random", "random_uniform", "mean")


def _to_batch(images):
    """Returns `(rank-4 images, whether a batch axis was added)`."""
    images = tf.convert_to_tensor(images)
    rank = images.shape.rank
    if rank not in (3, 4):
        raise ValueError(
            "`images` must be a rank-3 (single image) or rank-4 (batch) tensor. "
            f"Received shape: {images.shape}"
        )
    if rank == 3:
        return images[None], True
    return images, False


def _spatial_shape(images, data_format):
    shape = tf.shape(images)
    if data_format == "channels_last":
        return shape[0], shape[1], shape[2]
    return shape[0], shape[2], shape[3]


def box_mask(height, width, top, left, box_height, box_width):
    """Bool masks `(..., height, width)` that are true inside the boxes.

    `top`, `left`, `box_height` and `box_width` are int32 tensors of one shape (e.g. `(N,)` or
    `(N, holes)`); rows `[top, top + box_height)` and columns `[left, left + box_width)` are
    marked, and the parts of a box outside the image are simply ignored (clipped).
    """
    rows = tf.range(height)
    cols = tf.range(width)
    in_rows = (rows >= top[..., None]) & (rows < (top + box_height)[..., None])
    in_cols = (cols >= left[..., None]) & (cols < (left + box_width)[..., None])
    return in_rows[..., :, None] & in_cols[..., None, :]


def _apply(images, mask, fill, data_format, squeeze):
    """Writes `fill` where the `(N, H, W)` `mask` is true, on every channel."""
    axis = -1 if data_format == "channels_last" else 1
    mask = tf.expand_dims(mask, axis)
    out = tf.where(mask, tf.cast(fill, images.dtype), images)
    return out[0] if squeeze else out


def cutout(images, num_holes, size, seed, fill_value=0.0, data_format="channels_last"):
    """Cutout (DeVries & Taylor, 2017): `num_holes` fixed-size rectangles per image.

    Each hole's centre is drawn uniformly over all pixels, so holes near the border are
    clipped by the image, as in the paper; holes may overlap. The hole spans rows
    `[cy - size_h // 2, cy - size_h // 2 + size_h)` (exactly `size_h` rows when not clipped).

    Args:
        images: a rank-3 or rank-4 tensor.
        num_holes: the number of holes per image, an int >= 1.
        size: `(size_h, size_w)` of every hole in pixels, ints >= 1.
        seed: a `(2,)` integer seed for the stateless random ops.
        fill_value: the value written into the holes.
        data_format: `"channels_last"` or `"channels_first"`.

    Returns:
        A tensor of the shape and dtype of `images`.
    """
    data_format = normalize_data_format(data_format)
    images, squeeze = _to_batch(images)
    batch, height, width = _spatial_shape(images, data_format)
    size_h, size_w = int(size[0]), int(size[1])
    seed_y, seed_x = tf.unstack(
        tf.random.experimental.stateless_split(seed, 2, alg=STATELESS_RNG_ALG)
    )
    shape = tf.stack([batch, num_holes])
    center_y = tf.random.stateless_uniform(
        shape, seed_y, minval=0, maxval=height, dtype=tf.int32, alg=STATELESS_RNG_ALG
    )
    center_x = tf.random.stateless_uniform(
        shape, seed_x, minval=0, maxval=width, dtype=tf.int32, alg=STATELESS_RNG_ALG
    )
    top = center_y - size_h // 2
    left = center_x - size_w // 2
    holes = box_mask(height, width, top, left, tf.fill(shape, size_h), tf.fill(shape, size_w))
    mask = tf.reduce_any(holes, axis=1)
    return _apply(images, mask, fill_value, data_format, squeeze)


def _erasing_boxes(seed, batch, height, width, area_range, aspect_ratio_range, attempts):
    """Samples one box per image the way Zhong et al. (2017) do, without a Python loop.

    The paper repeats "draw an area fraction, an aspect ratio and a position; accept when the
    box lies inside the image" until it succeeds. Here `attempts` candidates are drawn per
    image at once and the first accepted one is kept (the paper's distribution whenever one of
    them is accepted). If none is (rare: only large areas with extreme ratios fail often), the
    last candidate's sides are clipped to the image and its position is drawn uniformly among
    the positions where it fits, so every image selected for erasing is erased: the
    probability means what it says (timm instead gives up after 10 attempts and leaves the
    image untouched).
    """
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 6, alg=STATELESS_RNG_ALG))
    shape = tf.stack([batch, attempts])
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    area = tf.random.stateless_uniform(
        shape, seeds[0], minval=area_range[0], maxval=area_range[1], alg=STATELESS_RNG_ALG
    ) * (h * w)
    log_ratio = tf.random.stateless_uniform(
        shape,
        seeds[1],
        minval=math.log(aspect_ratio_range[0]),
        maxval=math.log(aspect_ratio_range[1]),
        alg=STATELESS_RNG_ALG,
    )
    ratio = tf.exp(log_ratio)  # height / width, log-uniform as in timm and torchvision
    box_h = tf.maximum(tf.cast(tf.round(tf.sqrt(area * ratio)), tf.int32), 1)
    box_w = tf.maximum(tf.cast(tf.round(tf.sqrt(area / ratio)), tf.int32), 1)
    # The paper's position: uniform over the whole image, accepted if the box fits from there.
    top = tf.cast(tf.random.stateless_uniform(shape, seeds[2], alg=STATELESS_RNG_ALG) * h, tf.int32)
    left = tf.cast(
        tf.random.stateless_uniform(shape, seeds[3], alg=STATELESS_RNG_ALG) * w, tf.int32
    )
    fits = (top + box_h <= height) & (left + box_w <= width)
    first = tf.argmax(tf.cast(fits, tf.int32), axis=1, output_type=tf.int32)
    pick = tf.one_hot(first, attempts, dtype=tf.int32)

    def chosen(values):
        return tf.reduce_sum(values * pick, axis=1)

    # Fallback for images where no candidate fitted: clip the last candidate.
    fb_h = tf.minimum(box_h[:, -1], height)
    fb_w = tf.minimum(box_w[:, -1], width)
    u = tf.random.stateless_uniform(tf.stack([2, batch]), seeds[4], alg=STATELESS_RNG_ALG)
    fb_top = tf.cast(u[0] * tf.cast(height - fb_h + 1, tf.float32), tf.int32)
    fb_left = tf.cast(u[1] * tf.cast(width - fb_w + 1, tf.float32), tf.int32)
    accepted = tf.reduce_any(fits, axis=1)
    return (
        tf.where(accepted, chosen(top), fb_top),
        tf.where(accepted, chosen(left), fb_left),
        tf.where(accepted, chosen(box_h), fb_h),
        tf.where(accepted, chosen(box_w), fb_w),
        seeds[5],
    )


def random_erasing(
    images,
    seed,
    probability=0.5,
    area_range=(0.02, 1.0 / 3.0),
    aspect_ratio_range=(0.3, 3.3),
    fill_mode="constant",
    fill_value=0.0,
    value_range=(0.0, 255.0),
    data_format="channels_last",
    attempts=10,
):
    """Random Erasing (Zhong et al., 2017): one rectangle per selected image.

    Each image is selected independently with probability `probability`; a selected image gets
    one rectangle whose area is a uniform fraction in `area_range` of the image and whose
    aspect ratio (height / width) is log-uniform in `aspect_ratio_range` (see
    `_erasing_boxes` for how the paper's rejection loop is vectorised).

    Args:
        images: a rank-3 or rank-4 tensor.
        seed: a `(2,)` integer seed for the stateless random ops.
        probability: the probability that an image is erased, in [0, 1].
        area_range: `(min, max)` fraction of the image area to erase.
        aspect_ratio_range: `(min, max)` of height / width, sampled log-uniformly.
        fill_mode: `"constant"` (`fill_value`), `"random"` (per-pixel standard normal: timm's
            "pixel" mode, for standardised inputs), `"random_uniform"` (per-pixel uniform in
            `value_range`: the paper's random values in [0, 255]) or `"mean"` (the image's own
            per-channel mean).
        fill_value: the value for `fill_mode="constant"`.
        value_range: `(low, high)` for `fill_mode="random_uniform"`.
        data_format: `"channels_last"` or `"channels_first"`.
        attempts: candidates drawn per image before falling back to clipping.

    Returns:
        A tensor of the shape and dtype of `images`.
    """
    data_format = normalize_data_format(data_format)
    if fill_mode not in FILL_MODES:
        raise ValueError(f"`fill_mode` must be one of {FILL_MODES}. Received: {fill_mode!r}")
    images, squeeze = _to_batch(images)
    batch, height, width = _spatial_shape(images, data_format)
    seed_box, seed_apply = tf.unstack(
        tf.random.experimental.stateless_split(seed, 2, alg=STATELESS_RNG_ALG)
    )
    top, left, box_h, box_w, seed_fill = _erasing_boxes(
        seed_box, batch, height, width, area_range, aspect_ratio_range, attempts
    )
    selected = (
        tf.random.stateless_uniform(tf.stack([batch]), seed_apply, alg=STATELESS_RNG_ALG)
        < probability
    )
    mask = box_mask(height, width, top, left, box_h, box_w) & selected[:, None, None]

    if fill_mode == "constant":
        fill = fill_value
    elif fill_mode == "random":
        fill = tf.random.stateless_normal(tf.shape(images), seed_fill, alg=STATELESS_RNG_ALG)
    elif fill_mode == "random_uniform":
        fill = tf.random.stateless_uniform(
            tf.shape(images),
            seed_fill,
            minval=value_range[0],
            maxval=value_range[1],
            alg=STATELESS_RNG_ALG,
        )
    else:
        spatial = (1, 2) if data_format == "channels_last" else (2, 3)
        fill = tf.reduce_mean(images, axis=spatial, keepdims=True)
    return _apply(images, mask, fill, data_format, squeeze)
