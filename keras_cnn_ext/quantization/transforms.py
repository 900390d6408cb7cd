"""Graph transforms for quantization: composite layers expanded, and fake-quant placement patterns.

Two small families, as TFMOT's `default_8bit_transforms.py`:

- **Expanders** turn a composite layer of this package into the primitive layers it calls
  (copies with its weights), so every conv, normalisation, activation and addition inside gets
  its own quantizer: `ResidualBlock` (including its option-A zero-padded shortcut),
  `SeparableConvBlock`, `SqueezeExcitation` (global mean, two dense layers, the gate, the
  multiply). An `AdaptiveAveragePooling2D` whose bins one pooling op makes becomes that
  Keras pooling layer (TFLite MEAN / AVERAGE_POOL_2D, which quantize). A conv/dense with a
  fused activation other than ReLU/ReLU6 is split into the linear layer and an `Activation`,
  so its output range is learned before the non-linearity.
- **Patterns** drop the fake quant on a layer's output where TFLite fuses it with its consumer:
  Conv/Depthwise/Dense + BatchNorm (the converter folds BN), any of those or Add + ReLU/ReLU6
  (fused activation), and the inputs of a Concatenate (one shared range, the concatenation's:
  TFLite's int8 CONCATENATION wants equal input and output scales).
"""

from __future__ import annotations

import keras

from keras_cnn_ext import layers as ours
from keras_cnn_ext.ops.adaptive_pool.bins import single_window
from keras_cnn_ext.quantization.channel_pad import ChannelPad
from keras_cnn_ext.quantization.folding import FoldedConvBatchNorm
from keras_cnn_ext.quantization.registry import FUSED_ACTIVATIONS


def _call(layer, x, training):
    if layer is None:
        return x
    if isinstance(layer, keras.layers.BatchNormalization):
        return layer(x, training=training)
    return layer(x)


def expand_residual_block(block, x, training=None):
    """The layers of a `ResidualBlock` called one by one on `x` (its call, unrolled)."""
    name = block.name
    inputs = x
    if block.preact_norm is not None:
        x = block.preact_act(_call(block.preact_norm, x, training))
    if block.shortcut_conv is not None:
        shortcut = _call(block.shortcut_norm, block.shortcut_conv(x), training)
    else:
        shortcut = inputs
        if block.strides > 1:
            shortcut = keras.layers.MaxPooling2D(
                1, block.strides, data_format=block.data_format, name=f"{name}_0_subsample"
            )(shortcut)
        extra = block.out_channels - inputs.shape[block._channel_axis]
        if block.shortcut == "zero_pad" and extra:
            shortcut = ChannelPad(
                extra // 2, extra - extra // 2, block.data_format, name=f"{name}_0_pad"
            )(shortcut)
    for pad, conv, norm, act in zip(block.pads, block.convs, block.norms, block.acts, strict=True):
        x = _call(pad, x, training)
        x = _call(norm, conv(x), training)
        x = _call(act, x, training)
    x = _call(block.attention_layer, x, training)
    x = _call(block.drop_path, x, training)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return _call(block.out_act, x, training)


def expand_separable_conv_block(block, x, training=None):
    """The layers of a `SeparableConvBlock` called one by one on `x`."""
    x = block.depthwise_act(_call(block.depthwise_norm, block.depthwise(x), training))
    return block.pointwise_act(_call(block.pointwise_norm, block.pointwise(x), training))


def _dropout(block, x, name):
    if block.dropout_rate == 0:
        return x
    # Same rate and inference identity; the training masks come from Keras' Dropout.
    return keras.layers.Dropout(block.dropout_rate, seed=block.seed, name=name)(x)


def expand_dense_block(block, x, training=None):
    """The layers of a `DenseBlock` (BN-ReLU-[conv 1x1-BN-ReLU]-conv 3x3, concatenated)."""
    features = x
    for i in range(block.num_layers):
        prefix = f"{block.name}_{i + 1}"
        y = block.acts0[i](_call(block.norms0[i], features, training))
        if block.convs1[i] is not None:
            y = _dropout(block, block.convs1[i](y), f"{prefix}_drop1")
            y = block.acts1[i](_call(block.norms1[i], y, training))
        y = _dropout(block, block.convs2[i](y), f"{prefix}_drop2")
        features = keras.layers.Concatenate(axis=block._channel_axis, name=f"{prefix}_concat")(
            [features, y]
        )
    return features


def expand_transition_block(block, x, training=None):
    """The layers of a `TransitionBlock` (BN-ReLU-conv 1x1-average pooling)."""
    return block.pool(block.conv(block.act(_call(block.norm_layer, x, training))))


def _dense(units, kernel, bias, name):
    layer = keras.layers.Dense(units, use_bias=bias is not None, name=name)
    layer.build((None, kernel.shape[0]))
    layer.set_weights([kernel.numpy()] + ([] if bias is None else [bias.numpy()]))
    return layer


def expand_squeeze_excitation(se, x, training=None):
    """`SqueezeExcitation` as GlobalAveragePooling2D -> Dense -> act -> Dense -> gate -> Multiply."""
    name = se.name
    channels = se.expand_kernel.shape[1]
    hidden = se.reduce_kernel.shape[1]
    s = keras.layers.GlobalAveragePooling2D(data_format=se.data_format, name=f"{name}_squeeze")(x)
    s = _dense(hidden, se.reduce_kernel, se.reduce_bias, f"{name}_reduce")(s)
    s = keras.layers.Activation(se.activation, name=f"{name}_act")(s)
    s = _dense(channels, se.expand_kernel, se.expand_bias, f"{name}_expand")(s)
    s = keras.layers.Activation(se.gate_activation, name=f"{name}_gate")(s)
    shape = (channels, 1, 1) if se.data_format == "channels_first" else (1, 1, channels)
    s = keras.layers.Reshape(shape, name=f"{name}_reshape")(s)
    return keras.layers.Multiply(name=f"{name}_scale")([x, s])


def quantizable_adaptive_average_pooling(layer, x):
    """A builtin-pooling equivalent of an `AdaptiveAveragePooling2D` on `x`, or None.

    The float layer's `(1, 1)` average is a batched matmul on CPU (fast, but the TFLite
    converter leaves it float, and with it everything after). In the QAT copy it becomes a
    `GlobalAveragePooling2D(keepdims=True)` (TFLite `MEAN`, int8) and any case whose bins are
    the windows of one strided pooling (e.g. 4x4 -> 2x2, 7x7 -> 3x3) an `AveragePooling2D`
    (`AVERAGE_POOL_2D`, int8): the same averages. None for bins no single pooling op makes,
    or for spatial sizes unknown until run time.
    """
    if type(layer) is not ours.AdaptiveAveragePooling2D:
        return None
    axes = (1, 2) if layer.data_format == "channels_last" else (2, 3)
    sizes = [x.shape[a] for a in axes]
    if None in sizes:
        return None
    output_size = tuple(
        n if m is None else m for n, m in zip(sizes, layer.output_size, strict=True)
    )
    if output_size == (1, 1):
        return keras.layers.GlobalAveragePooling2D(
            data_format=layer.data_format, keepdims=True, name=layer.name
        )(x)
    window = single_window(sizes, output_size)
    if window is None:
        return None
    ksize, strides, padding = window
    return keras.layers.AveragePooling2D(
        ksize, strides, padding.lower(), data_format=layer.data_format, name=layer.name
    )(x)


def activation_name(layer):
    """The activation of a `ReLU`/`Activation` layer or a layer's fused activation, or None."""
    if isinstance(layer, keras.layers.ReLU):
        if layer.max_value == 6.0 and not layer.negative_slope and not layer.threshold:
            return "relu6"
        plain = layer.max_value is None and not layer.negative_slope and not layer.threshold
        return "relu" if plain else "leaky_relu"
    fn = getattr(layer, "activation", None)
    if fn is None or not callable(fn):
        return None
    return getattr(fn, "__name__", None)


def split_activation(layer, x):
    """Calls a conv/dense copy without its fused activation, then the activation as a layer."""
    activation = layer.activation
    layer.activation = keras.activations.get("linear")
    y = layer(x)
    return keras.layers.Activation(activation, name=f"{layer.name}_{activation.__name__}")(y)


# Exact classes: subclasses such as CBAM's ChannelAttention compute something else.
EXPANDERS = {
    ours.ResidualBlock: expand_residual_block,
    ours.SeparableConvBlock: expand_separable_conv_block,
    ours.DenseBlock: expand_dense_block,
    ours.TransitionBlock: expand_transition_block,
    ours.SqueezeExcitation: expand_squeeze_excitation,
}

_LINEAR_WITH_ACTIVATION = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)


def needs_activation_split(layer):
    """Conv/dense layers whose fused activation is not one TFLite fuses (softmax, sigmoid...)."""
    if not isinstance(layer, _LINEAR_WITH_ACTIVATION):
        return False
    name = activation_name(layer)
    return name not in (None, "linear", *FUSED_ACTIVATIONS)


class Pattern:
    """A fake-quant placement rule: `drops_output(layer, consumers)` -> skip `layer`'s output."""

    def drops_output(self, layer, consumers):
        raise NotImplementedError


class ConvBatchNorm(Pattern):
    """Conv/Depthwise/Dense -> BatchNorm: one unit; the converter folds BN into the weights."""

    producers = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)

    def drops_output(self, layer, consumers):
        return (
            isinstance(layer, self.producers)
            and activation_name(layer) in (None, "linear")
            and len(consumers) == 1
            and isinstance(consumers[0], keras.layers.BatchNormalization)
        )


class FusedActivation(Pattern):
    """Conv/Depthwise/Dense/BatchNorm/Add -> ReLU or ReLU6: TFLite fuses the activation."""

    producers = (
        keras.layers.Conv2D,
        keras.layers.DepthwiseConv2D,
        keras.layers.Dense,
        keras.layers.BatchNormalization,
        keras.layers.Add,
        FoldedConvBatchNorm,
    )

    def drops_output(self, layer, consumers):
        return (
            isinstance(layer, self.producers)
            and activation_name(layer) in (None, "linear")
            and len(consumers) == 1
            and isinstance(consumers[0], (keras.layers.ReLU, keras.layers.Activation))
            and activation_name(consumers[0]) in FUSED_ACTIVATIONS
        )


class SharedConcatRange(Pattern):
    """Inputs of a Concatenate share its output range (TFLite wants equal scales there)."""

    def drops_output(self, layer, consumers):
        return bool(consumers) and all(isinstance(c, keras.layers.Concatenate) for c in consumers)


PATTERNS = (ConvBatchNorm(), FusedActivation(), SharedConcatRange())
