"""Stochastic depth (Huang et al., 2016) as a pure, XLA-safe TensorFlow function."""

from __future__ import annotations

import tensorflow as tf

from keras_cnn_ext.utils import STATELESS_RNG_ALG, check_rate


def drop_path(inputs, rate, seed):
    """Zeroes whole samples with probability `rate` and scales the rest by `1 / (1 - rate)`.

    This is the per-sample, inverted-scaling convention of timm's `DropPath`, torchvision's
    `StochasticDepth(mode="row")` and TF Model Garden: applied to a residual branch it drops
    the branch for some samples of the batch, and the expectation of the output equals the
    input, so nothing changes at inference.

    Args:
        inputs: a float tensor of rank >= 1 whose first axis is the batch.
        rate: the probability of dropping a sample, a Python float or scalar tensor in [0, 1).
        seed: a `(2,)` integer seed for `tf.random.stateless_uniform`.

    Returns:
        A tensor of the shape and dtype of `inputs`.
    """
    inputs = tf.convert_to_tensor(inputs)
    keep_prob = 1.0 - tf.cast(rate, tf.float32)
    # One draw per sample, broadcast over every other axis.
    mask_shape = tf.concat([tf.shape(inputs)[:1], tf.ones([tf.rank(inputs) - 1], tf.int32)], axis=0)
    noise = tf.random.stateless_uniform(
        mask_shape, seed=seed, dtype=tf.float32, alg=STATELESS_RNG_ALG
    )
    # floor(keep_prob + U) is 1 with probability keep_prob; divide_no_nan guards rate == 1.
    keep = tf.floor(keep_prob + noise)
    return inputs * tf.cast(tf.math.divide_no_nan(keep, keep_prob), inputs.dtype)


def drop_path_rates(max_rate, num_blocks):
    """The linear stochastic-depth schedule over a network's blocks.

    Block `i` (0-based) gets `max_rate * i / (num_blocks - 1)`: the first block is never
    dropped and the last one gets `max_rate`. This is timm's convention
    (`torch.linspace(0, drop_path_rate, depth)`); Huang et al. (2016) write
    `p_l = l / L * p_L` with 1-based `l`, which gives the first block `max_rate / L` instead.

    Args:
        max_rate: the rate of the last block, a float in [0, 1).
        num_blocks: the number of blocks, an int >= 1 (a single block gets rate 0).

    Returns:
        A list of `num_blocks` Python floats.
    """
    max_rate = check_rate(max_rate, "max_rate")
    if isinstance(num_blocks, bool) or not isinstance(num_blocks, int) or num_blocks < 1:
        raise ValueError(f"`num_blocks` must be an integer >= 1. Received: {num_blocks!r}")
    if num_blocks == 1:
        return [0.0]
    return [max_rate * i / (num_blocks - 1) for i in range(num_blocks)]
