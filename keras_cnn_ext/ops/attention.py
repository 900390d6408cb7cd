"""Channel and spatial attention as pure TensorFlow functions (SE, ECA, CBAM).

Every function takes the feature map and the weights as tensors and returns the re-weighted map
with the input's shape and dtype. They are XLA-safe (no Python loops over data; batch and spatial
sizes may be unknown) and use only ops that TFLite (builtins) and tf2onnx convert.
"""

from __future__ import annotations

import math
import numbers

import tensorflow as tf

from keras_cnn_ext.utils import make_divisible, normalize_data_format


def _spatial_axes(data_format):
    return (1, 2) if data_format == "channels_last" else (2, 3)


def _channel_axis(data_format):
    return -1 if data_format == "channels_last" else 1


def _as_broadcastable(scale, data_format):
    """(batch, channels) -> (batch, 1, 1, channels) or (batch, channels, 1, 1)."""
    if data_format == "channels_last":
        return tf.expand_dims(tf.expand_dims(scale, 1), 1)
    return tf.expand_dims(tf.expand_dims(scale, -1), -1)


def reduced_channels(channels, ratio, divisor=8, min_channels=None):
    """Hidden width of a squeeze-and-excitation style bottleneck.

    `make_divisible(channels * ratio, divisor, min_channels)` (timm's rule, with TF Model Garden's
    guard against rounding down by more than 10%).

    Raises:
        ValueError: if the result is not a positive number of channels.
    """
    reduced = make_divisible(channels * ratio, divisor, min_value=min_channels)
    if reduced < 1:
        raise ValueError(
            f"`ratio`={ratio!r} leaves {reduced} channels for an input with {channels} channels "
            f"(divisor={divisor}, min_channels={min_channels}). Use a larger `ratio`."
        )
    return int(reduced)


def eca_kernel_size(channels, gamma=2, b=1):
    """ECA's adaptive kernel size (Wang et al. 2020, eq. 12).

    t = int(|log2(C) + b| / gamma); k = t if t is odd else t + 1, and at least 3.
    """
    if isinstance(channels, bool) or not isinstance(channels, numbers.Integral) or channels < 1:
        raise ValueError(f"`channels` must be a positive integer. Received: {channels!r}")
    t = int(abs(math.log2(channels) + b) / gamma)
    return max(t if t % 2 else t + 1, 3)


POOLINGS = ("avg", "avg_max")


def squeeze_excitation(
    inputs,
    reduce_kernel,
    reduce_bias,
    expand_kernel,
    expand_bias,
    activation=tf.nn.relu,
    gate=tf.sigmoid,
    pooling="avg",
    data_format="channels_last",
):
    """Squeeze-and-excitation (Hu et al. 2018): `x * gate(W2 act(W1 mean(x) + b1) + b2)`.

    With `pooling="avg_max"` this is CBAM's channel attention (Woo et al. 2018, eq. 2):
    `x * gate(MLP(mean(x)) + MLP(max(x)))`, the MLP shared by both descriptors.

    Args:
        inputs: rank-4 feature map.
        reduce_kernel: `(C, R)` matrix; reduce_bias: `(R,)` or `None`.
        expand_kernel: `(R, C)` matrix; expand_bias: `(C,)` or `None`.
        activation: hidden activation (callable).
        gate: gate activation (callable), e.g. sigmoid or hard sigmoid.
        pooling: `"avg"` (SE) or `"avg_max"` (CBAM).
        data_format: `"channels_last"` or `"channels_first"`.
    """
    data_format = normalize_data_format(data_format)
    if pooling not in POOLINGS:
        raise ValueError(f"`pooling` must be one of {POOLINGS}. Received: {pooling!r}")
    axes = _spatial_axes(data_format)
    descriptors = [tf.reduce_mean(inputs, axis=axes)]
    if pooling == "avg_max":
        descriptors.append(tf.reduce_max(inputs, axis=axes))

    # A 1x1 convolution on a 1x1 map is a matrix product: matmul skips the conv kernels' setup.
    summed = None
    for descriptor in descriptors:  # one or two descriptors, not a loop over data
        hidden = tf.matmul(descriptor, reduce_kernel)
        if reduce_bias is not None:
            hidden = tf.nn.bias_add(hidden, reduce_bias)
        hidden = activation(hidden)
        summed = hidden if summed is None else summed + hidden
    # The last layer is linear: sum_i (W2 h_i + b2) = W2 sum_i h_i + n b2, one product for all.
    logits = tf.matmul(summed, expand_kernel)
    if expand_bias is not None:
        logits = tf.nn.bias_add(logits, len(descriptors) * expand_bias)
    return inputs * _as_broadcastable(gate(logits), data_format)


def channel_attention(inputs, *weights, **kwargs):
    """CBAM's channel attention: `squeeze_excitation(..., pooling="avg_max")`."""
    return squeeze_excitation(inputs, *weights, pooling="avg_max", **kwargs)


def efficient_channel_attention(inputs, kernel, gate=tf.sigmoid, data_format="channels_last"):
    """Efficient channel attention (Wang et al. 2020): a 1D convolution across pooled channels.

    Args:
        inputs: rank-4 feature map.
        kernel: `(k, 1, 1)` filter of the channel convolution (no bias), zero-padded "same".
        gate: gate activation (callable).
        data_format: `"channels_last"` or `"channels_first"`.
    """
    data_format = normalize_data_format(data_format)
    pooled = tf.reduce_mean(inputs, axis=_spatial_axes(data_format))
    # Channels become the 1D "width" axis of a single-feature signal.
    logits = tf.nn.conv1d(tf.expand_dims(pooled, -1), kernel, stride=1, padding="SAME")
    scale = gate(tf.squeeze(logits, -1))
    return inputs * _as_broadcastable(scale, data_format)


def spatial_attention(inputs, kernel, bias=None, mode="sigmoid", data_format="channels_last"):
    """CBAM's spatial attention: a convolution over the channel-average and channel-max maps.

    Args:
        inputs: rank-4 feature map.
        kernel: `(kh, kw, 2, 1)` filter over the `[mean, max]` maps, zero-padded "same".
        bias: `(1,)` bias or `None`.
        mode: `"sigmoid"` (CBAM: an independent gate per position) or `"softmax"` (weights
            normalised over all positions of each image, so they sum to 1).
        data_format: `"channels_last"` or `"channels_first"`.
    """
    data_format = normalize_data_format(data_format)
    if mode not in ("sigmoid", "softmax"):
        raise ValueError(f"`mode` must be 'sigmoid' or 'softmax'. Received: {mode!r}")
    axis = _channel_axis(data_format)
    descriptor = tf.concat(
        [
            tf.reduce_mean(inputs, axis=axis, keepdims=True),
            tf.reduce_max(inputs, axis=axis, keepdims=True),
        ],
        axis=axis,
    )
    if data_format == "channels_first":
        # TF has no NCHW convolution on CPU; transposing the 2-channel map is cheap.
        descriptor = tf.transpose(descriptor, (0, 2, 3, 1))
    logits = tf.nn.conv2d(descriptor, kernel, strides=1, padding="SAME")
    if bias is not None:
        logits = tf.nn.bias_add(logits, bias)
    if mode == "sigmoid":
        weights = tf.sigmoid(logits)
    else:
        shape = tf.shape(logits)
        flat = tf.reshape(logits, (shape[0], -1))
        # Half-precision softmax: a float16 sum over thousands of positions loses precision.
        wide = tf.float32 if logits.dtype in (tf.float16, tf.bfloat16) else logits.dtype
        probs = tf.nn.softmax(tf.cast(flat, wide), axis=-1)
        weights = tf.reshape(tf.cast(probs, logits.dtype), shape)
    if data_format == "channels_first":
        weights = tf.transpose(weights, (0, 3, 1, 2))
    return inputs * weights
