"""Which weights and outputs of each layer class get which quantizer: one table of data.

The shape of TFMOT's `default_8bit_quantize_registry.py`, for Keras 3 layers and this
package's. `weights` maps a weight attribute to a kind of `WeightQuantizer`; `output` says
whether the layer's output is fake-quantized (per tensor, moving-average range). Layers with
`output=False` either keep the input's scale in TFLite (max pooling, reshapes, padding: the
converter requires equal input/output scales there) or are the identity at inference
(dropout-like layers). Composite layers of this package (`ResidualBlock`, `SeparableConvBlock`,
`SqueezeExcitation`) are first expanded into these primitives (see `transforms.EXPANDERS`).
"""

from __future__ import annotations

from typing import NamedTuple

import keras

from keras_cnn_ext import layers as ours
from keras_cnn_ext.quantization.channel_pad import ChannelPad
from keras_cnn_ext.quantization.folding import FoldedConvBatchNorm


class LayerQuantizeSpec(NamedTuple):
    """How one layer class is quantized."""

    weights: tuple = ()  # ((attribute, kind), ...), kind one of WEIGHT_KINDS
    output: bool = True  # fake-quantize the output


# kind -> WeightQuantizer arguments; "per_tensor" replaces "per_channel" when the config asks.
WEIGHT_KINDS = {
    "per_channel": {"per_axis": True},
    "depthwise": {"per_axis": True, "depthwise": True},
    "per_tensor": {"per_axis": False},
}

_CONV = LayerQuantizeSpec(weights=(("kernel", "per_channel"),))
_SAME_SCALE = LayerQuantizeSpec(output=False)
_IDENTITY_AT_INFERENCE = LayerQuantizeSpec(output=False)
_ACTIVATION = LayerQuantizeSpec()

L = keras.layers
QUANTIZE_REGISTRY = {
    L.Conv2D: _CONV,
    L.Conv1D: _CONV,
    L.DepthwiseConv2D: LayerQuantizeSpec(weights=(("kernel", "depthwise"),)),
    L.Dense: LayerQuantizeSpec(weights=(("kernel", "per_tensor"),)),
    L.BatchNormalization: _ACTIVATION,
    FoldedConvBatchNorm: _ACTIVATION,  # its folded weights carry their own quantizer
    L.ReLU: _ACTIVATION,
    L.Activation: _ACTIVATION,
    L.Add: _ACTIVATION,
    L.Subtract: _ACTIVATION,
    L.Multiply: _ACTIVATION,
    L.Concatenate: _ACTIVATION,
    # MEAN rescales in int8; AVERAGE_POOL_2D (also what adaptive average pooling lowers to)
    # wants its input's scale, and a range of its own would be pushed back onto its input.
    L.GlobalAveragePooling2D: _ACTIVATION,
    L.AveragePooling2D: _SAME_SCALE,
    ours.AdaptiveAveragePooling2D: _SAME_SCALE,
    L.MaxPooling2D: _SAME_SCALE,
    L.GlobalMaxPooling2D: _SAME_SCALE,
    ours.AdaptiveMaxPooling2D: _SAME_SCALE,
    ours.FractionalMaxPooling2D: _SAME_SCALE,
    L.Flatten: _SAME_SCALE,
    L.Reshape: _SAME_SCALE,
    L.ZeroPadding2D: _SAME_SCALE,
    ChannelPad: _SAME_SCALE,
    L.Cropping2D: _SAME_SCALE,
    L.UpSampling2D: _SAME_SCALE,
    L.Identity: _SAME_SCALE,
    L.Dropout: _IDENTITY_AT_INFERENCE,
    L.SpatialDropout2D: _IDENTITY_AT_INFERENCE,
    L.GaussianNoise: _IDENTITY_AT_INFERENCE,
    ours.DropPath: _IDENTITY_AT_INFERENCE,
    ours.DropBlock2D: _IDENTITY_AT_INFERENCE,
    ours.Cutout: _IDENTITY_AT_INFERENCE,
    ours.SpatialDropout2D: _IDENTITY_AT_INFERENCE,
    ours.RandomErasing: _IDENTITY_AT_INFERENCE,
}
del L

# Activations the converter fuses into the preceding conv/dense/add (no fake quant between).
FUSED_ACTIVATIONS = ("relu", "relu6")
# Activations whose int8 TFLite kernels have a fixed output range (softmax and sigmoid: scale
# 1/256, zero point -128; tanh: 1/128, 0). A learned range would cost a requantize; no range
# would leave the Keras model unaware of the file's rounding: they get exactly this one.
FIXED_RANGE_ACTIVATIONS = {
    "softmax": (0.0, 255 / 256),
    "sigmoid": (0.0, 255 / 256),
    "tanh": (-1.0, 127 / 128),
}


def lookup(layer, registry=None):
    """The spec of `layer`'s class (the closest registered base class), or None."""
    registry = QUANTIZE_REGISTRY if registry is None else registry
    for cls in type(layer).__mro__:
        if cls in registry:
            return registry[cls]
    return None
