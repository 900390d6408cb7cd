"""Local response normalisation across channels (AlexNet, Krizhevsky et al. 2012)."""

from __future__ import annotations

import tensorflow as tf

from keras_cnn_ext.utils import normalize_data_format


def local_response_normalization(
    inputs, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75, data_format=None
):
    """`x / (bias + alpha * sum of x**2 over 2 * depth_radius + 1 neighbouring channels)**beta`.

    The paper's Section 3.3 formula with `k = bias`, `n = 2 * depth_radius + 1`, `alpha`,
    `beta` (its values k=2, n=5, alpha=1e-4, beta=0.75 are the defaults); it equals
    `tf.nn.local_response_normalization` (whose `alpha` is not divided by `n`; PyTorch's
    `LocalResponseNorm` divides it). Written with pads, slices and adds instead of TF's LRN
    kernel so that it runs in any float dtype (float64 for gradient checks), under XLA, and
    exports to TFLite builtins and ONNX the same way. float16/bfloat16 inputs are computed
    in float32: squares of activations above 256 overflow float16.

    Args:
        inputs: 4D tensor.
        depth_radius: half-width of the channel window. Default 2.
        bias, alpha, beta: the formula's constants. Defaults 2, 1e-4, 0.75.
        data_format: `"channels_last"` or `"channels_first"`; default Keras' global setting.
    """
    data_format = normalize_data_format(data_format)
    axis = 1 if data_format == "channels_first" else 3
    dtype = inputs.dtype
    x = tf.cast(inputs, tf.float32) if dtype in (tf.float16, tf.bfloat16) else inputs
    squares = tf.square(x)
    paddings = [[0, 0]] * 4
    paddings[axis] = [depth_radius, depth_radius]
    padded = tf.pad(squares, paddings)
    channels = tf.shape(x)[axis]
    window_sum = None
    # 2r + 1 shifted channel slices: a loop over the window's structure, not over data.
    for offset in range(2 * depth_radius + 1):
        if axis == 3:
            part = padded[:, :, :, offset : offset + channels]
        else:
            part = padded[:, offset : offset + channels]
        window_sum = part if window_sum is None else window_sum + part
    scale = tf.cast(bias, x.dtype) + tf.cast(alpha, x.dtype) * window_sum
    outputs = x * tf.pow(scale, tf.cast(-beta, x.dtype))
    return tf.cast(outputs, dtype)
