"""Shape, parameter and cost formulas for convolutional layers, as pure Python functions.

These are the small closed forms the analysis walker is built on, exposed so that users can
check a design on paper. They follow Keras' own shape arithmetic exactly (the tests compare them
against what Keras layers produce), and add the `"full"` padding of the classic literature.

Conventions: a *MAC* is one multiply-accumulate; FLOPs are `2 * MACs` (one multiply plus one add),
which is what `tf.profiler` reports for convolutions and matrix products.
"""

from __future__ import annotations

import math
import numbers

PADDINGS = ("valid", "same", "full", "causal")


def _check_positive_int(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an integer >= {minimum}. Received: {value!r}")
    if value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}. Received: {value!r}")
    return int(value)


def _check_padding(padding, allowed=PADDINGS):
    if not isinstance(padding, str) or padding.lower() not in allowed:
        raise ValueError(f"`padding` must be one of {allowed}. Received: {padding!r}")
    return padding.lower()


def effective_kernel_size(kernel_size, dilation=1):
    """Returns the span of a dilated kernel, `1 + (kernel_size - 1) * dilation`."""
    kernel_size = _check_positive_int(kernel_size, "kernel_size")
    dilation = _check_positive_int(dilation, "dilation")
    return 1 + (kernel_size - 1) * dilation


def conv_output_size(input_size, kernel_size, stride=1, padding="valid", dilation=1):
    """Output length of a convolution or pooling window along one axis.

    Matches Keras' `Conv*`/`*Pooling*` layers for `"valid"`, `"same"` and `"causal"` and adds
    `"full"` (zero padding of `k_eff - 1` on both sides), with `k_eff = 1 + (k - 1) * dilation`:

    - valid: `floor((n - k_eff) / s) + 1`
    - same, causal: `ceil(n / s)`
    - full: `floor((n + k_eff - 2) / s) + 1`

    Args:
        input_size: the input length, or `None` when unknown (then `None` is returned).
        kernel_size: the window length (int >= 1).
        stride: the step between windows (int >= 1). Defaults to 1.
        padding: one of `"valid"`, `"same"`, `"full"`, `"causal"`. Defaults to `"valid"`.
        dilation: the dilation rate (int >= 1). Defaults to 1.

    Returns:
        The output length (an int, 0 when the window does not fit), or `None`.

    Example:

    >>> conv_output_size(224, 7, stride=2, padding="same")
    112
    """
    k_eff = effective_kernel_size(kernel_size, dilation)
    stride = _check_positive_int(stride, "stride")
    padding = _check_padding(padding)
    if input_size is None:
        return None
    n = _check_positive_int(input_size, "input_size", minimum=0)
    if padding == "valid":
        return max(0, (n - k_eff) // stride + 1)
    if padding in ("same", "causal"):
        return -(-n // stride)
    return (n + k_eff - 2) // stride + 1


def conv_transpose_output_size(
    input_size, kernel_size, stride=1, padding="valid", output_padding=None, dilation=1
):
    """Output length of a transposed convolution along one axis (Keras/TF semantics).

    With `k_eff = 1 + (k - 1) * dilation`:

    - `output_padding=None`: valid gives `(n - 1) * s + max(k_eff, s)`, same gives `n * s`;
    - otherwise valid gives `(n - 1) * s + k_eff + output_padding` and same gives
      `(n - 1) * s + (k_eff mod 2) + output_padding` (TF's `"same"` removes `k_eff // 2` pixels
      from each side).

    Args:
        input_size: the input length, or `None` when unknown (then `None` is returned).
        kernel_size: the kernel length (int >= 1).
        stride: the upsampling factor (int >= 1). Defaults to 1.
        padding: `"valid"` or `"same"`. Defaults to `"valid"`.
        output_padding: extra length added on one side (int >= 0, smaller than `stride`), or
            `None` (the default) to let the layer pick it.
        dilation: the dilation rate (int >= 1). Defaults to 1.

    Example:

    >>> conv_transpose_output_size(7, 3, stride=2, padding="same")
    14
    """
    k_eff = effective_kernel_size(kernel_size, dilation)
    stride = _check_positive_int(stride, "stride")
    padding = _check_padding(padding, ("valid", "same"))
    if output_padding is not None:
        output_padding = _check_positive_int(output_padding, "output_padding", minimum=0)
    if input_size is None:
        return None
    n = _check_positive_int(input_size, "input_size", minimum=0)
    if output_padding is None:
        if padding == "valid":
            return (n - 1) * stride + max(k_eff, stride)
        return n * stride
    if padding == "valid":
        return (n - 1) * stride + k_eff + output_padding
    return (n - 1) * stride + k_eff % 2 + output_padding


def _kernel_volume(kernel_size):
    if isinstance(kernel_size, numbers.Integral) and not isinstance(kernel_size, bool):
        kernel_size = (kernel_size, kernel_size)
    return math.prod(_check_positive_int(k, "kernel_size") for k in kernel_size)


def conv_params(kernel_size, in_channels, out_channels, groups=1, use_bias=True):
    """Weights of a (grouped) convolution: `K_h*K_w*(C_in/groups)*C_out + C_out`.

    Args:
        kernel_size: an int (square 2D kernel) or a tuple of per-axis lengths.
        in_channels: input channels, divisible by `groups`.
        out_channels: output channels (filters), divisible by `groups`.
        groups: number of channel groups. Defaults to 1 (a standard convolution).
        use_bias: whether a bias of `out_channels` entries is added. Defaults to `True`.
    """
    k = _kernel_volume(kernel_size)
    c_in = _check_positive_int(in_channels, "in_channels")
    c_out = _check_positive_int(out_channels, "out_channels")
    groups = _check_positive_int(groups, "groups")
    if c_in % groups or c_out % groups:
        raise ValueError(
            f"`groups` must divide both `in_channels` and `out_channels`. Received: groups={groups}, "
            f"in_channels={c_in}, out_channels={c_out}"
        )
    return k * (c_in // groups) * c_out + (c_out if use_bias else 0)


def depthwise_conv_params(kernel_size, in_channels, depth_multiplier=1, use_bias=True):
    """Weights of a depthwise convolution: `K_h*K_w*C_in*m + C_in*m` (m = depth multiplier)."""
    m = _check_positive_int(depth_multiplier, "depth_multiplier")
    c_in = _check_positive_int(in_channels, "in_channels")
    return _kernel_volume(kernel_size) * c_in * m + (c_in * m if use_bias else 0)


def separable_conv_params(
    kernel_size, in_channels, out_channels, depth_multiplier=1, use_bias=True
):
    """Weights of a separable convolution: depthwise `K_h*K_w*C_in*m`, then pointwise
    `C_in*m*C_out`, plus `C_out` biases (Keras' `SeparableConv2D` has a single bias)."""
    m = _check_positive_int(depth_multiplier, "depth_multiplier")
    c_in = _check_positive_int(in_channels, "in_channels")
    c_out = _check_positive_int(out_channels, "out_channels")
    return _kernel_volume(kernel_size) * c_in * m + c_in * m * c_out + (c_out if use_bias else 0)


def conv_transpose_params(kernel_size, in_channels, out_channels, use_bias=True):
    """Weights of a transposed convolution: the same count as the forward convolution."""
    return conv_params(kernel_size, in_channels, out_channels, 1, use_bias)


def separable_param_ratio(kernel_size, out_channels, in_channels=None, use_bias=False):
    """Parameters of a separable convolution divided by those of the standard one.

    Without biases and with depth multiplier 1 the ratio does not depend on the input channels:
    `(K^2*C_in + C_in*C_out) / (K^2*C_in*C_out) = 1/C_out + 1/K^2` (MobileNet, Howard et al.,
    2017, section 3.1). The same ratio holds for MACs. Pass `in_channels` and `use_bias=True` to
    get the exact ratio with biases instead.

    Example:

    >>> round(separable_param_ratio(3, 64), 4)  # 1/64 + 1/9
    0.1267
    """
    k = _kernel_volume(kernel_size)
    c_out = _check_positive_int(out_channels, "out_channels")
    if in_channels is None:
        if use_bias:
            raise ValueError("`in_channels` is required when `use_bias=True`.")
        return 1.0 / c_out + 1.0 / k
    separable = separable_conv_params(kernel_size, in_channels, c_out, 1, use_bias)
    return separable / conv_params(kernel_size, in_channels, c_out, 1, use_bias)


def conv_macs(output_spatial, kernel_size, in_channels, out_channels, groups=1, batch_size=1):
    """Multiply-accumulates of a (grouped) convolution, bias excluded:
    `N * prod(output_spatial) * C_out * prod(K) * C_in / groups`.

    The common form `N*H_out*W_out*C_out*(K_h*K_w*C_in + 1)` counts the bias add as one more MAC
    per output element: add `N * prod(output_spatial) * C_out` to get it.
    """
    weights = conv_params(kernel_size, in_channels, out_channels, groups, use_bias=False)
    return batch_size * math.prod(output_spatial) * weights


def receptive_field_step(rf, jump, kernel_size, stride=1, dilation=1):
    """One step of the receptive-field recursion (Araujo et al., Distill 2019).

    `RF_l = RF_{l-1} + (k_eff - 1) * J_{l-1}` and `J_l = J_{l-1} * s_l`, with
    `k_eff = 1 + (k - 1) * dilation`. Returns `(RF_l, J_l)`.

    Example (LeNet-5's first two layers, 5x5 convolution then 2x2 pooling):

    >>> receptive_field_step(*receptive_field_step(1, 1, 5), 2, stride=2)
    (6, 2)
    """
    k_eff = effective_kernel_size(kernel_size, dilation)
    return rf + (k_eff - 1) * jump, jump * stride
