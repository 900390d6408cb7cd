"""DropBlock (Ghiasi et al., 2018) as a pure, XLA-safe TensorFlow function."""

from __future__ import annotations

import tensorflow as tf

from keras_cnn_ext.utils import STATELESS_RNG_ALG, normalize_data_format


def dropblock_gamma(rate, block_size, height, width):
    """Seed probability that drops a fraction `rate` of the units on average.

    Ghiasi et al. (2018), eq. (1): `gamma = rate * H * W / (bs**2 * (H - bs + 1) * (W - bs + 1))`.
    The denominator counts the valid seed positions, those whose block lies inside the map.
    Returns 0 when no position is valid (the map is smaller than the block), so nothing is
    dropped instead of dividing by zero, and clips to [0, 1].
    """
    rate = tf.cast(rate, tf.float32)
    height = tf.cast(height, tf.float32)
    width = tf.cast(width, tf.float32)
    block = float(block_size)
    valid = tf.maximum(height - block + 1.0, 0.0) * tf.maximum(width - block + 1.0, 0.0)
    gamma = tf.math.divide_no_nan(rate * height * width, block * block * valid)
    return tf.clip_by_value(gamma, 0.0, 1.0)


def drop_block_2d(
    inputs,
    rate,
    block_size,
    seed,
    data_format="channels_last",
    shared_channels=False,
):
    """Applies DropBlock to a batch of feature maps (training-mode behaviour).

    Block seeds are drawn with probability `gamma` (see `dropblock_gamma`) only where a whole
    `block_size x block_size` block fits in the map, grown into blocks by a stride-1 max-pool,
    and the kept units are rescaled by `numel / kept` over the whole batch (as the paper's
    reference code and timm do), so the expected sum is unchanged. When every unit is dropped
    the output is zeros, not NaN.

    Args:
        inputs: a rank-4 float tensor.
        rate: the fraction of units to drop, a Python float or a scalar tensor in [0, 1).
        block_size: the side of the square blocks, a Python int >= 1.
        seed: a `(2,)` integer seed for `tf.random.stateless_uniform`.
        data_format: `"channels_last"` (NHWC) or `"channels_first"` (NCHW).
        shared_channels: if `False` (default, the paper's reference code and timm), each channel
            of each sample gets its own mask; if `True`, one mask per sample is shared by all
            channels.

    Returns:
        A tensor of the shape and dtype of `inputs`.
    """
    data_format = normalize_data_format(data_format)
    block_size = int(block_size)
    if block_size < 1:
        raise ValueError(f"`block_size` must be an integer >= 1. Received: {block_size!r}")
    inputs = tf.convert_to_tensor(inputs)
    shape = tf.shape(inputs)
    if data_format == "channels_last":
        batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    else:
        batch, channels, height, width = shape[0], shape[1], shape[2], shape[3]
    mask_channels = 1 if shared_channels else channels

    gamma = dropblock_gamma(rate, block_size, height, width)
    # Seeds are drawn only where a whole block fits: the (H - bs + 1) x (W - bs + 1) region
    # that gamma counts, so no random number is wasted on the border. The mask is built in
    # NHWC whatever the data format: CPU max-pooling supports only NHWC.
    valid_h = tf.maximum(height - block_size + 1, 0)
    valid_w = tf.maximum(width - block_size + 1, 0)
    noise = tf.random.stateless_uniform(
        tf.stack([batch, valid_h, valid_w, mask_channels]),
        seed=seed,
        dtype=tf.float32,
        alg=STATELESS_RNG_ALG,
    )
    seeds = tf.cast(noise < gamma, tf.float32)
    if shared_channels:
        # CPU max-pooling over one channel was ~40x slower than over 32 (72 vs 1.9 ms at
        # 32x56x56): pool the samples as channels of one image, then move them back.
        seeds = tf.transpose(seeds, (3, 1, 2, 0))
    # A stride-1 SAME max-pool pads (bs - 1) // 2 before and bs // 2 after, so the seed at
    # valid index i must sit at row i + bs // 2 for its block to cover rows [i, i + bs).
    top = tf.minimum(block_size // 2, height)
    left = tf.minimum(block_size // 2, width)
    blocks = tf.pad(
        seeds,
        [[0, 0], [top, height - valid_h - top], [left, width - valid_w - left], [0, 0]],
    )
    if block_size > 1:
        # A k x k max is separable: two 1-D pools cost 2k instead of k*k comparisons per unit.
        blocks = tf.nn.max_pool2d(blocks, (block_size, 1), 1, "SAME")
        blocks = tf.nn.max_pool2d(blocks, (1, block_size), 1, "SAME")
    if shared_channels:
        blocks = tf.transpose(blocks, (3, 1, 2, 0))
    keep = 1.0 - blocks
    numel = tf.cast(tf.size(keep), tf.float32)
    scale = tf.math.divide_no_nan(numel, tf.reduce_sum(keep))
    keep = keep * scale
    if data_format == "channels_first":
        keep = tf.transpose(keep, (0, 3, 1, 2))
    return inputs * tf.cast(keep, inputs.dtype)
