"""Adaptive average and max pooling with PyTorch's bin rule, for any input and output size.

Bin `i` of an axis of length `n` pooled to `m` spans `[floor(i * n / m), ceil((i + 1) * n / m))`
(ATen `AdaptivePooling.h`). Both poolings are separable: pooling the width axis and then the
height axis gives the same result as pooling each 2-D bin (and, for the max, the same first
maximum in row-major order, which is where torch sends a tie's gradient).

The package is split by concern:

* `bins`: the bin arithmetic, pure NumPy (bins, strided windows that make them, runs of equal
  bins, gather tables);
* `forward`: the forward formulations (a mean, one strided `avg_pool2d`/`max_pool2d`, sums of
  strided slices, per-axis pooling ops, matmuls and gathers);
* `gradients`: the compiled gradients (the average's spread, the max's routing to first maxima);
* `plans`: the thresholds, and `choose_plan`, which names the forward and the gradient of each
  case.

Sizes unknown until run time are pooled axis by axis (bins from `tf.shape`, which XLA turns
into compile-time constants). The forward ops (pooling, StridedSlice, Concat, Transpose,
MatMul, GatherV2, Reshape, reductions) are TFLite builtins and standard ONNX ops; gradients
never reach an exporter.
"""

from __future__ import annotations

import tensorflow as tf

from keras_cnn_ext.ops.adaptive_pool import plans
from keras_cnn_ext.ops.adaptive_pool.bins import adaptive_bins
from keras_cnn_ext.utils import (
    check_float_dtype,
    check_input_rank,
    in_xla_context,
    normalize_data_format,
    normalize_tuple,
)

__all__ = ["adaptive_avg_pool2d", "adaptive_max_pool2d", "adaptive_bins"]


def _check_args(x, output_size, data_format):
    output_size = normalize_tuple(output_size, 2, "output_size", minimum=1, allow_none=True)
    data_format = normalize_data_format(data_format)
    x = tf.convert_to_tensor(x)
    check_input_rank(x.shape, 4, "x")
    check_float_dtype(x.dtype, "x")
    return x, output_size, data_format


def _adaptive_pool2d(x, output_size, data_format, mode):
    x, output_size, data_format = _check_args(x, output_size, data_format)
    dtype = x.dtype
    if mode == "avg" and dtype in (tf.float16, tf.bfloat16):
        # Accumulate half-precision means in float32, as torch does (opmath type).
        x = tf.cast(x, tf.float32)
    axes = (1, 2) if data_format == "channels_last" else (2, 3)
    sizes = [x.shape[a] for a in axes]
    if None in sizes:  # pooled axis by axis, in the input's layout
        plan = plans.choose_plan(sizes, output_size, mode, x.dtype.name, in_xla_context())
        return tf.cast(plans.apply_plan(plan, x, axes, sizes, output_size, mode), dtype)
    output_size = [n if m is None else m for n, m in zip(sizes, output_size, strict=True)]
    plan = plans.choose_plan(sizes, output_size, mode, x.dtype.name, in_xla_context())
    # Static sizes are pooled as NHWC (pooling ops need it on CPU); XLA and the converters
    # fold the transposes.
    if data_format == "channels_first":
        x = tf.transpose(x, (0, 2, 3, 1))
    x = plans.apply_plan(plan, x, (1, 2), sizes, output_size, mode)
    if data_format == "channels_first":
        x = tf.transpose(x, (0, 3, 1, 2))
    return tf.cast(x, dtype)


def adaptive_avg_pool2d(x, output_size, data_format="channels_last"):
    """Adaptive 2-D average pooling with PyTorch's bins, for any input/output size.

    Output cell `(i, j)` averages the input rows `[floor(i * H / h), ceil((i + 1) * H / h))` and
    columns `[floor(j * W / w), ceil((j + 1) * W / w))`, exactly as
    `torch.nn.functional.adaptive_avg_pool2d`. Works when `h > H` (upsampling), for sizes that do
    not divide, for `H`/`W` unknown until run time, under `tf.function` and `jit_compile=True`.

    Args:
        x: a rank-4 floating-point tensor.
        output_size: an int, or a tuple `(h, w)` of ints; a `None` entry keeps that input size.
        data_format: `"channels_last"` (default, `(batch, H, W, C)`) or `"channels_first"`
            (`(batch, C, H, W)`); `None` means Keras' image data format.

    Returns:
        A tensor of `x`'s dtype with spatial size `(h, w)`.

    Example:

    >>> x = tf.reshape(tf.range(16.0), (1, 4, 4, 1))
    >>> adaptive_avg_pool2d(x, (1, 2))[0, ..., 0].numpy()
    array([[6.5, 8.5]], dtype=float32)
    """
    return _adaptive_pool2d(x, output_size, data_format, "avg")


def adaptive_max_pool2d(x, output_size, data_format="channels_last"):
    """Adaptive 2-D max pooling with PyTorch's bins, for any input/output size.

    Output cell `(i, j)` is the maximum over input rows `[floor(i * H / h), ceil((i + 1) * H / h))`
    and columns `[floor(j * W / w), ceil((j + 1) * W / w))`, exactly as
    `torch.nn.functional.adaptive_max_pool2d`. Works when `h > H` (upsampling), for sizes that do
    not divide, for `H`/`W` unknown until run time, under `tf.function` and `jit_compile=True`.

    Args:
        x: a rank-4 floating-point tensor.
        output_size: an int, or a tuple `(h, w)` of ints; a `None` entry keeps that input size.
        data_format: `"channels_last"` (default, `(batch, H, W, C)`) or `"channels_first"`
            (`(batch, C, H, W)`); `None` means Keras' image data format.

    Returns:
        A tensor of `x`'s dtype with spatial size `(h, w)`.

    Example:

    >>> x = tf.reshape(tf.range(16.0), (1, 4, 4, 1))
    >>> adaptive_max_pool2d(x, (1, 2))[0, ..., 0].numpy()
    array([[13., 15.]], dtype=float32)
    """
    return _adaptive_pool2d(x, output_size, data_format, "max")
