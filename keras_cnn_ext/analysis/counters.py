"""Per-layer cost counters and the registry that maps layer classes to them.

A counter is a function `fn(layer, input_shapes, output_shapes) -> LayerCost`. The shapes are
lists of tuples (one per input/output tensor) whose batch dimension is already the profiled batch
size. Counters never run the layer: they read its configuration and the shapes.

Counting conventions (stated once, used everywhere):

- `macs`: multiply-accumulates of the weighted linear layers (convolutions of every kind, dense
  layers), bias excluded. FLOPs are `2 * macs`, which is what `tf.profiler` reports for `Conv2D`
  and `MatMul`.
- `bias_macs`: one extra MAC per output element of a layer that adds a bias, so that
  `macs + bias_macs` is the `N*H_out*W_out*C_out*(K_h*K_w*C_in + 1)` form.
- `other_ops`: everything that is not a multiply-accumulate, one per elementary operation:
  batch normalisation in inference 2 per element (scale and shift), layer normalisation 5 per
  element, pooling one per window element read, element-wise merges one per extra input element,
  activations one per element, rescaling 2 per element. These are estimates, reported apart from
  MACs so they never blur the MAC count.

Users and other modules add counters for their own layers with `register_counter`, without this
module importing them (layers may be registered by class or, lazily, by class name).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import keras

__all__ = ["Geometry", "LayerCost", "register_counter", "get_counter", "unregister_counter"]


@dataclass(frozen=True)
class Geometry:
    """How a layer maps input positions to output positions (for the receptive field).

    `kind` is one of:

    - `"identity"`: each output position depends on the same input position (activations,
      normalisation, padding, dropout, 1x1 work).
    - `"window"`: a sliding window with per-axis `kernel`, `stride`, `dilation`; `stride` may be
      a `Fraction` (adaptive and fractional pooling).
    - `"transposed"`: a transposed convolution (or upsampling) with per-axis `kernel`, `stride`,
      `dilation`: the jump is divided by the stride.
    - `"global"`: every output depends on the whole input (global pooling, dense on vectors).
    - `"flatten"`: the spatial axes are folded into features; each element keeps its receptive
      field, and a later layer that mixes features becomes global.
    - `"unknown"`: the geometry is not known; the layer is named in the profile.
    """

    kind: str = "identity"
    kernel: tuple = ()
    stride: tuple = ()
    dilation: tuple = ()


IDENTITY = Geometry("identity")
GLOBAL = Geometry("global")
UNKNOWN = Geometry("unknown")
FLATTEN = Geometry("flatten")


@dataclass
class LayerCost:
    """What a counter returns for one call of one layer."""

    macs: int = 0
    bias_macs: int = 0
    other_ops: int = 0
    geometry: Geometry = field(default=IDENTITY)
    note: str = ""


_BY_CLASS: dict[type, object] = {}
_BY_NAME: dict[str, object] = {}


def register_counter(layer_cls, fn=None):
    """Registers `fn(layer, input_shapes, output_shapes) -> LayerCost` for a layer class.

    Args:
        layer_cls: a layer class (subclasses inherit the counter unless they have their own), or
            a class name string such as `"FractionalMaxPooling2D"` or a qualified
            `"keras_cnn_ext.layers.FractionalMaxPooling2D"`; a name matches the layer's exact
            class only, so a module can register without importing the class.
        fn: the counter. When omitted, returns a decorator.

    Example:

    ```python
    @register_counter(MyBlurPool)
    def _count(layer, input_shapes, output_shapes):
        n, h, w, c = output_shapes[0]
        return LayerCost(other_ops=n * h * w * c * 9, geometry=Geometry("window", (3, 3), (2, 2), (1, 1)))
    ```
    """
    if fn is None:
        return lambda f: register_counter(layer_cls, f) or f
    if not callable(fn):
        raise TypeError(f"`fn` must be callable. Received: {fn!r} of type {type(fn)}")
    if isinstance(layer_cls, str):
        _BY_NAME[layer_cls] = fn
    elif isinstance(layer_cls, type):
        _BY_CLASS[layer_cls] = fn
    else:
        raise TypeError(
            f"`layer_cls` must be a class or a class name string. Received: {layer_cls!r} "
            f"of type {type(layer_cls)}"
        )
    return None


def unregister_counter(layer_cls):
    """Removes a counter registered with `register_counter` (no error when absent)."""
    (_BY_NAME if isinstance(layer_cls, str) else _BY_CLASS).pop(layer_cls, None)


def get_counter(layer):
    """Returns the counter for `layer` (exact class name first, then the class hierarchy)."""
    cls = type(layer)
    for key in (f"{cls.__module__}.{cls.__qualname__}", cls.__qualname__):
        if key in _BY_NAME:
            return _BY_NAME[key]
    # Public re-exports (keras_cnn_ext.layers.X) differ from the defining module.
    if cls.__module__.split(".")[0] in ("keras_cnn_ext",):
        short = f"keras_cnn_ext.layers.{cls.__qualname__}"
        if short in _BY_NAME:
            return _BY_NAME[short]
    for base in cls.__mro__:
        if base in _BY_CLASS:
            return _BY_CLASS[base]
    return None


# ---------------------------------------------------------------------------------------------
# Shape helpers


def numel(shape):
    """Number of elements of a shape, or `None` when a dimension is unknown."""
    if shape is None or any(d is None for d in shape):
        return None
    return math.prod(shape)


def _data_format(layer):
    return getattr(layer, "data_format", None) or keras.config.image_data_format()


def split_channels(shape, data_format):
    """Returns `(spatial_dims, channels)` of a batched shape."""
    if data_format == "channels_first":
        return tuple(shape[2:]), shape[1]
    return tuple(shape[1:-1]), shape[-1]


def _activation_ops(layer, out_elems):
    activation = getattr(layer, "activation", None)
    if activation is None or getattr(activation, "__name__", "") == "linear":
        return 0
    return out_elems


# ---------------------------------------------------------------------------------------------
# Built-in counters


def _identity(layer, input_shapes, output_shapes):
    return LayerCost()


def _elementwise(ops_per_element):
    def count(layer, input_shapes, output_shapes):
        return LayerCost(other_ops=ops_per_element * numel(output_shapes[0]))

    return count


def _conv_cost(layer, macs, out_elems, kind="window"):
    """The cost of any convolution: its MACs, its bias, its fused activation, its window."""
    return LayerCost(
        macs=macs,
        bias_macs=out_elems if layer.use_bias else 0,
        other_ops=_activation_ops(layer, out_elems),
        geometry=Geometry(
            kind, tuple(layer.kernel_size), tuple(layer.strides), tuple(layer.dilation_rate)
        ),
    )


def _conv(layer, input_shapes, output_shapes):
    fmt = _data_format(layer)
    _, c_in = split_channels(input_shapes[0], fmt)
    out_spatial, c_out = split_channels(output_shapes[0], fmt)
    out_elems = output_shapes[0][0] * math.prod(out_spatial) * c_out
    groups = getattr(layer, "groups", 1) or 1
    return _conv_cost(layer, out_elems * math.prod(layer.kernel_size) * (c_in // groups), out_elems)


def _depthwise(layer, input_shapes, output_shapes):
    out_elems = numel(output_shapes[0])  # C_out = C_in * depth_multiplier
    return _conv_cost(layer, out_elems * math.prod(layer.kernel_size), out_elems)


def _separable(layer, input_shapes, output_shapes):
    fmt = _data_format(layer)
    _, c_in = split_channels(input_shapes[0], fmt)
    out_spatial, c_out = split_channels(output_shapes[0], fmt)
    positions = output_shapes[0][0] * math.prod(out_spatial)
    # Depthwise K*K per intermediate channel, then pointwise C_out per intermediate channel.
    macs = positions * c_in * layer.depth_multiplier * (math.prod(layer.kernel_size) + c_out)
    return _conv_cost(layer, macs, positions * c_out)


def _conv_transpose(layer, input_shapes, output_shapes):
    fmt = _data_format(layer)
    in_spatial, c_in = split_channels(input_shapes[0], fmt)
    _, c_out = split_channels(output_shapes[0], fmt)
    # Every input pixel scatters a K*C_out patch from each of its C_in channels.
    macs = input_shapes[0][0] * math.prod(in_spatial) * c_in * math.prod(layer.kernel_size) * c_out
    return _conv_cost(layer, macs, numel(output_shapes[0]), kind="transposed")


def _dense(layer, input_shapes, output_shapes):
    out_elems = numel(output_shapes[0])
    macs = out_elems * input_shapes[0][-1]
    # On a vector every output mixes every feature; on an image Dense is a 1x1 convolution.
    geometry = GLOBAL if len(input_shapes[0]) == 2 else IDENTITY
    return LayerCost(
        macs=macs,
        bias_macs=out_elems if layer.use_bias else 0,
        other_ops=_activation_ops(layer, out_elems),
        geometry=geometry,
    )


def _window_pool(layer, input_shapes, output_shapes):
    pool = tuple(layer.pool_size)
    return LayerCost(
        other_ops=numel(output_shapes[0]) * math.prod(pool),
        geometry=Geometry("window", pool, tuple(layer.strides), (1,) * len(pool)),
    )


def _group_pool(layer, input_shapes, output_shapes):
    return LayerCost(other_ops=numel(input_shapes[0]))  # one read per group channel


def _global_pool(layer, input_shapes, output_shapes):
    return LayerCost(other_ops=numel(input_shapes[0]), geometry=GLOBAL)


def adaptive_geometry(in_spatial, out_spatial):
    """Window geometry of adaptive pooling (PyTorch's bins) from the input and output sizes.

    Bin `i` spans `[floor(i*n/o), ceil((i+1)*n/o))`; the kernel is the widest bin and the stride
    the exact fraction `n/o`.
    """
    kernel, stride = [], []
    for n, o in zip(in_spatial, out_spatial, strict=False):
        widest = max(-(-(i + 1) * n // o) - (i * n // o) for i in range(o))
        kernel.append(widest)
        stride.append(Fraction(n, o))
    return Geometry("window", tuple(kernel), tuple(stride), (1,) * len(kernel))


def _adaptive_pool(layer, input_shapes, output_shapes):
    fmt = _data_format(layer)
    in_spatial, _ = split_channels(input_shapes[0], fmt)
    out_spatial, _ = split_channels(output_shapes[0], fmt)
    if tuple(out_spatial) == (1,) * len(out_spatial):
        return LayerCost(other_ops=numel(input_shapes[0]), geometry=GLOBAL)
    geometry = adaptive_geometry(in_spatial, out_spatial)
    return LayerCost(
        other_ops=numel(output_shapes[0]) * math.prod(geometry.kernel), geometry=geometry
    )


def _fractional_pool(layer, input_shapes, output_shapes):
    fmt = _data_format(layer)
    in_spatial, _ = split_channels(input_shapes[0], fmt)
    out_spatial, _ = split_channels(output_shapes[0], fmt)
    # Regions are floor(alpha) or floor(alpha)+1 wide (TF's fractional_pool_common.cc); overlapping ones share
    # their right edge with the next region, one more pixel.
    extra = 1 if getattr(layer, "overlapping", False) else 0
    kernel = tuple(
        math.floor(Fraction(n, o)) + (1 if n % o else 0) + extra
        for n, o in zip(in_spatial, out_spatial, strict=False)
    )
    stride = tuple(Fraction(n, o) for n, o in zip(in_spatial, out_spatial, strict=False))
    return LayerCost(
        other_ops=numel(output_shapes[0]) * math.prod(kernel),
        geometry=Geometry("window", kernel, stride, (1,) * len(kernel)),
    )


def _merge(layer, input_shapes, output_shapes):
    return LayerCost(other_ops=(len(input_shapes) - 1) * numel(output_shapes[0]))


def _flatten(layer, input_shapes, output_shapes):
    return LayerCost(geometry=FLATTEN if len(output_shapes[0]) == 2 else UNKNOWN)


def _reshape(layer, input_shapes, output_shapes):
    if len(output_shapes[0]) == 2:
        return LayerCost(geometry=FLATTEN)

    def squeezed(shape):
        return [d for d in shape[1:] if d != 1]

    if squeezed(output_shapes[0]) == squeezed(input_shapes[0]):
        return LayerCost()  # only size-1 axes added or removed: positions do not move
    return LayerCost(geometry=UNKNOWN, note="reshape moves positions")


def _upsampling(layer, input_shapes, output_shapes):
    fmt = _data_format(layer)
    in_spatial, _ = split_channels(input_shapes[0], fmt)
    out_spatial, _ = split_channels(output_shapes[0], fmt)
    interpolation = getattr(layer, "interpolation", "nearest")
    # Nearest neighbour reads one input pixel per output; bilinear reads two per axis.
    kernel = 1 if interpolation == "nearest" else 2
    stride = tuple(Fraction(o, n) for n, o in zip(in_spatial, out_spatial, strict=False))
    ops = 0 if interpolation == "nearest" else numel(output_shapes[0]) * 2 ** len(stride)
    return LayerCost(
        other_ops=ops,
        geometry=Geometry("transposed", (kernel,) * len(stride), stride, (1,) * len(stride)),
    )


def _layer_norm(layer, input_shapes, output_shapes):
    return LayerCost(other_ops=5 * numel(output_shapes[0]))


def _weight_shape(layer, attr):
    weight = getattr(layer, attr, None)
    return None if weight is None else tuple(weight.shape)


def _channel_gate(layer, input_shapes, output_shapes):
    """Squeeze-excitation style gates: pooled vector -> C*h -> h*C, times the input.

    One branch per pooling (`"avg"`, `"max"`; CBAM's `"avg_max"` runs the MLP twice).
    """
    branches = len(str(getattr(layer, "pooling", "avg")).split("_"))
    elems = numel(input_shapes[0])
    n = input_shapes[0][0]
    reduce_shape = _weight_shape(layer, "reduce_kernel")
    expand_shape = _weight_shape(layer, "expand_kernel")
    if reduce_shape is None or expand_shape is None:
        raise ValueError("expected `reduce_kernel` and `expand_kernel` weights")
    macs = n * branches * (math.prod(reduce_shape) + math.prod(expand_shape))
    bias = n * branches * (reduce_shape[-1] + expand_shape[-1])
    has_bias = getattr(layer, "reduce_bias", None) is not None
    # Pooling reads every element once per branch; the gate multiplies every element.
    return LayerCost(
        macs=macs,
        bias_macs=bias if has_bias else 0,
        other_ops=branches * elems + elems,
        geometry=GLOBAL,
    )


def _eca(layer, input_shapes, output_shapes):
    elems = numel(input_shapes[0])
    _, c = split_channels(input_shapes[0], _data_format(layer))
    k = _weight_shape(layer, "kernel")[0]
    return LayerCost(macs=input_shapes[0][0] * c * k, other_ops=2 * elems, geometry=GLOBAL)


def _spatial_attention(layer, input_shapes, output_shapes):
    elems = numel(input_shapes[0])
    spatial, _ = split_channels(input_shapes[0], _data_format(layer))
    kernel = _weight_shape(layer, "kernel")  # (kh, kw, 2, 1): over [mean, max] maps
    positions = input_shapes[0][0] * math.prod(spatial)
    has_bias = getattr(layer, "bias", None) is not None
    # A softmax over positions makes every output depend on the whole map.
    geometry = (
        GLOBAL
        if getattr(layer, "mode", "sigmoid") == "softmax"
        else Geometry("window", tuple(kernel[:2]), (1, 1), (1, 1))
    )
    return LayerCost(
        macs=positions * math.prod(kernel),
        bias_macs=positions if has_bias else 0,
        other_ops=3 * elems,
        geometry=geometry,
    )


def _local_response_norm(layer, input_shapes, output_shapes):
    # Per element: a square, a (2r+1)-channel window sum, scale and bias, a power, a divide.
    radius = int(getattr(layer, "depth_radius", 2))
    return LayerCost(other_ops=(2 * radius + 6) * numel(output_shapes[0]))


def _register_builtins():
    L = keras.layers
    for name in ("Conv1D", "Conv2D", "Conv3D"):
        register_counter(getattr(L, name), _conv)
    for name in ("DepthwiseConv1D", "DepthwiseConv2D"):
        register_counter(getattr(L, name), _depthwise)
    for name in ("SeparableConv1D", "SeparableConv2D"):
        register_counter(getattr(L, name), _separable)
    for name in ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"):
        register_counter(getattr(L, name), _conv_transpose)
    register_counter(L.Dense, _dense)
    for rank in ("1D", "2D", "3D"):
        register_counter(getattr(L, "MaxPooling" + rank), _window_pool)
        register_counter(getattr(L, "AveragePooling" + rank), _window_pool)
        register_counter(getattr(L, "GlobalMaxPooling" + rank), _global_pool)
        register_counter(getattr(L, "GlobalAveragePooling" + rank), _global_pool)
        for kind in ("AdaptiveAveragePooling", "AdaptiveMaxPooling"):
            if hasattr(L, kind + rank):
                register_counter(getattr(L, kind + rank), _adaptive_pool)
        register_counter(getattr(L, "ZeroPadding" + rank), _identity)
        register_counter(getattr(L, "Cropping" + rank), _identity)
        register_counter(getattr(L, "UpSampling" + rank), _upsampling)
    for name in ("SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D"):
        register_counter(getattr(L, name), _identity)
    for name in (
        "InputLayer",
        "Dropout",
        "GaussianNoise",
        "GaussianDropout",
        "AlphaDropout",
        "ActivityRegularization",
        "Identity",
        "Masking",
    ):
        if hasattr(L, name):
            register_counter(getattr(L, name), _identity)
    register_counter(L.BatchNormalization, _elementwise(2))
    register_counter(L.Rescaling, _elementwise(2))
    register_counter(L.Normalization, _elementwise(2))
    register_counter(L.LayerNormalization, _layer_norm)
    register_counter(L.GroupNormalization, _layer_norm)
    register_counter(L.UnitNormalization, _elementwise(3))
    for name in ("Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax"):
        register_counter(getattr(L, name), _elementwise(1))
    for name in ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"):
        register_counter(getattr(L, name), _merge)
    register_counter(L.Concatenate, _identity)
    register_counter(L.Flatten, _flatten)
    register_counter(L.Reshape, _reshape)
    register_counter(L.Resizing, _upsampling)
    # Keras ops used directly on symbolic tensors (`x + y`, `keras.ops.multiply`) become
    # operations in the functional graph; their classes live in keras.src.ops.numpy.
    for name in ("Add", "Subtract", "Multiply", "Divide", "Maximum", "Minimum"):
        register_counter(f"keras.src.ops.numpy.{name}", _merge)
    # keras_cnn_ext layers, by name so that analysis never imports the layers package.
    for name in ("AdaptiveAveragePooling2D", "AdaptiveMaxPooling2D"):
        register_counter(f"keras_cnn_ext.layers.{name}", _adaptive_pool)
    register_counter("keras_cnn_ext.layers.FractionalMaxPooling2D", _fractional_pool)
    for name in ("DropBlock2D", "DropPath", "SpatialDropout2D", "Cutout", "RandomErasing"):
        register_counter(f"keras_cnn_ext.layers.{name}", _identity)  # identity at inference
    register_counter("keras_cnn_ext.layers.LocalResponseNormalization", _local_response_norm)
    # A group convolution is one convolution with the expanded bank (F * |G| outputs, all input
    # channels per output): the plain conv count. GroupBatchNormalization inherits BN's.
    register_counter("keras_cnn_ext.layers.GroupConv2D", _conv)
    register_counter("keras_cnn_ext.layers.GroupPooling", _group_pool)
    register_counter("keras_cnn_ext.layers.SqueezeExcitation", _channel_gate)
    register_counter("keras_cnn_ext.layers.ChannelAttention", _channel_gate)
    register_counter("keras_cnn_ext.layers.EfficientChannelAttention", _eca)
    register_counter("keras_cnn_ext.layers.SpatialAttention", _spatial_attention)


_register_builtins()
