"""The affine 8-bit arithmetic of TFLite's quantization scheme, as plain NumPy helpers.

A real value `r` is stored as an integer `q` with `r = scale * (q - zero_point)` (Jacob et al.
2018, "Quantization and training of neural networks for efficient integer-arithmetic-only
inference", eq. 1). For a range `[min, max]` (widened to contain 0, so that 0 is exact):
`scale = (max - min) / (qmax - qmin)` (`/ 255` for 8 bits) and
`zero_point = qmin + round(-min / scale)`, clamped to `[qmin, qmax]`. int8 uses
`[qmin, qmax] = [-128, 127]`; uint8 `[0, 255]`, so uint8's zero point is int8's + 128.
Symmetric weights (per channel in TFLite) use the narrow range `[-127, 127]`, zero point 0,
`scale = max(|min|, |max|) / 127`.

These are the values the TFLite converter writes into a file for ranges learned by
quantization-aware training, and what `tf.quantization.fake_quant_with_min_max_vars` simulates.
"""

from __future__ import annotations

import numpy as np

_DTYPES = {"int8": (-128, 127), "uint8": (0, 255)}


def _qrange(dtype, narrow_range):
    if dtype not in _DTYPES:
        raise ValueError(f"`dtype` must be one of {tuple(_DTYPES)}. Received: {dtype!r}")
    qmin, qmax = _DTYPES[dtype]
    return (qmin + 1 if narrow_range else qmin), qmax


def affine_params(min_value, max_value, *, dtype="int8", narrow_range=False, symmetric=False):
    """Returns `(scale, zero_point)` for the real range `[min_value, max_value]`.

    Args:
        min_value, max_value: the range's ends (scalars or arrays of per-channel ends).
        dtype: `"int8"` (TFLite's default, `[-128, 127]`) or `"uint8"`. Default `"int8"`.
        narrow_range: leave out the lowest integer (`[-127, 127]` for int8). Default False.
        symmetric: zero point 0 (int8) and `scale = max(|min|, |max|) / qmax`, as TFLite's
            weights. Default False.

    Returns:
        `scale` (float64 array or scalar) and `zero_point` (int64).

    Raises:
        ValueError: if `min_value > max_value` anywhere.

    Example:

    >>> affine_params(-1.0, 3.0)
    (0.01568627450980392, -64)
    """
    lo = np.minimum(np.asarray(min_value, np.float64), 0.0)
    hi = np.maximum(np.asarray(max_value, np.float64), 0.0)
    if np.any(np.asarray(min_value) > np.asarray(max_value)):
        raise ValueError(
            f"`min_value` must not exceed `max_value`. Received: {min_value!r} > {max_value!r}"
        )
    qmin, qmax = _qrange(dtype, narrow_range)
    if symmetric:
        bound = np.maximum(np.abs(lo), np.abs(hi))
        scale = bound / qmax if dtype == "int8" else 2 * bound / (qmax - qmin)
        zero = np.zeros_like(scale, np.int64) + (0 if dtype == "int8" else (qmin + qmax + 1) // 2)
    else:
        scale = (hi - lo) / (qmax - qmin)
        safe = np.where(scale > 0, scale, 1.0)
        zero = np.clip(np.round(qmin - lo / safe), qmin, qmax).astype(np.int64)
    if np.ndim(scale) == 0:
        return float(scale), int(zero)
    return scale, zero


def quantize(values, scale, zero_point, *, dtype="int8", narrow_range=False, axis=None):
    """`q = clamp(round(values / scale) + zero_point)` as `dtype` integers.

    `scale` and `zero_point` are scalars, or per-channel arrays along `axis` of `values`.
    Rounding is half away from zero, as TFLite's reference kernels.
    """
    values = np.asarray(values, np.float64)
    scale, zero_point = _along(values, scale, zero_point, axis)
    qmin, qmax = _qrange(dtype, narrow_range)
    scaled = values / scale
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)
    return np.clip(rounded + zero_point, qmin, qmax).astype(dtype)


def dequantize(q, scale, zero_point, *, axis=None):
    """`values = scale * (q - zero_point)` as float32 (per channel along `axis` when given)."""
    q = np.asarray(q)
    scale, zero_point = _along(q, scale, zero_point, axis)
    return (scale * (q.astype(np.float64) - zero_point)).astype(np.float32)


def _along(values, scale, zero_point, axis):
    scale = np.asarray(scale, np.float64)
    zero_point = np.asarray(zero_point, np.float64)
    if axis is None or scale.ndim == 0:
        return scale, zero_point
    shape = [1] * values.ndim
    shape[axis] = -1
    return scale.reshape(shape), np.broadcast_to(zero_point, scale.shape).reshape(shape)
