"""`quantize_model`: a quantization-aware-training copy of a Functional or Sequential model."""

from __future__ import annotations

import warnings

import keras

from keras_cnn_ext import surgery
from keras_cnn_ext.quantization import registry as reg
from keras_cnn_ext.quantization import transforms
from keras_cnn_ext.quantization.folding import FoldedConvBatchNorm
from keras_cnn_ext.quantization.quantizers import FakeQuant, WeightQuantizer
from keras_cnn_ext.quantization.wrapper import QuantizeWrapper


class QuantizeConfig:
    """Options of `quantize_model`.

    Args:
        skip: layers left in float: a list of layer names (`fnmatch` patterns), layer classes,
            or predicates `layer -> bool`. Default none.
        per_tensor_weights: quantize conv/depthwise weights per tensor instead of per output
            channel (e.g. for integer hardware without per-channel support). Default False.
        ema_decay: the activation ranges' moving-average decay. Default 0.999 (TFMOT's).
        strict: raise instead of warning when a layer has no quantization rule. Default False.
        registry: the layer-class table (default `QUANTIZE_REGISTRY`); pass an extended copy to
            support your own layers.
        fold_batch_norm: fold each Conv/Depthwise + BatchNorm pair into one
            `FoldedConvBatchNorm` whose folded weights are fake-quantized (Krishnamoorthi 2018,
            section 3.2). Default `None`: only with per-tensor weights, where it matters (the
            converter folds BN exactly into per-channel weights, not into per-tensor ones).
    """

    def __init__(
        self,
        skip=(),
        per_tensor_weights=False,
        ema_decay=0.999,
        strict=False,
        registry=None,
        fold_batch_norm=None,
    ):
        if isinstance(skip, (str, type)) or callable(skip):
            skip = (skip,)
        self.skip = tuple(skip)
        self._skip = [surgery.layer_matcher(s, "skip") for s in self.skip]
        self.per_tensor_weights = bool(per_tensor_weights)
        self.ema_decay = float(ema_decay)
        self.strict = bool(strict)
        self.registry = reg.QUANTIZE_REGISTRY if registry is None else dict(registry)
        self.fold_batch_norm = (
            self.per_tensor_weights if fold_batch_norm is None else bool(fold_batch_norm)
        )

    def skipped(self, layer):
        return any(matches(layer) for matches in self._skip)

    def weight_quantizer(self, kind):
        if self.per_tensor_weights and kind in ("per_channel", "depthwise"):
            kind = "per_tensor"
        return WeightQuantizer(**reg.WEIGHT_KINDS[kind])


def _expand(model, config):
    """Flat copy of `model`: nested models inlined, composite layers unrolled, activations split."""

    def call_function(original, copy, *args, **kwargs):
        expander = transforms.EXPANDERS.get(type(copy))
        if expander is not None and not config.skipped(original):
            training = kwargs.get("training")
            return expander(copy, args[0], training=training)
        if transforms.needs_activation_split(copy) and not config.skipped(original):
            return transforms.split_activation(copy, args[0])
        if not config.skipped(original):
            pooled = transforms.quantizable_adaptive_average_pooling(copy, args[0])
            if pooled is not None:
                return pooled
        return copy(*args, **kwargs)

    flat = surgery.transform(model, call_function, inline=True)
    if any(type(layer) in transforms.EXPANDERS for layer in flat.layers):
        # An expanded block may hold another (e.g. an SE layer inside a ResidualBlock).
        return _expand(flat, config)
    return flat


def _fold_batch_norms(model, config):
    """Replaces each channels-last Conv/Depthwise -> BatchNorm pair by a FoldedConvBatchNorm."""
    consumers = _consumers(model)
    pairs = {}
    for layer in model.layers:
        users = consumers.get(id(layer), [])
        if (
            transforms.ConvBatchNorm().drops_output(layer, users)
            and not isinstance(layer, keras.layers.Dense)
            and layer.data_format == "channels_last"
            and not config.skipped(layer)
            and not config.skipped(users[0])
        ):
            pairs[id(layer)] = users[0]
    folded_norms = {id(bn) for bn in pairs.values()}

    def call_function(original, copy, *args, **kwargs):
        if id(original) in folded_norms:
            return args[0]  # already applied inside the folded layer
        if id(original) in pairs:
            bn = surgery.copy_layer(pairs[id(original)])
            fused = FoldedConvBatchNorm(
                copy, bn, config.weight_quantizer("per_tensor"), name=f"{original.name}_folded"
            )
            return fused(args[0], training=kwargs.get("training"))
        return copy(*args, **kwargs)

    return surgery.transform(model, call_function) if pairs else model


def _consumers(model):
    """`{id(layer): [consumer layers]}` over the flat model's graph."""
    consumers = {}
    for node in surgery._nodes(model):
        for tensor in node.input_tensors:
            producer = tensor._keras_history.operation
            consumers.setdefault(id(producer), []).append(node.operation)
    return consumers


def quantize_model(model, config=None, **kwargs):
    """Returns a quantization-aware-training copy of `model`; the original is left untouched.

    TFMOT's default 8-bit scheme on Keras 3: Conv2D/DepthwiseConv2D weights per output channel
    (depthwise: per `in_channels * depth_multiplier` channel), symmetric, narrow range; Dense
    weights per tensor; activations per tensor, asymmetric, with moving-average min/max
    (`FakeQuant`). Conv/Depthwise/Dense + BatchNorm (+ ReLU/ReLU6) and Add + ReLU are one
    unit (no fake quant between them), inputs of a Concatenate share its range, sigmoid,
    softmax and tanh outputs get the fixed range TFLite's int8 kernels use; max pooling,
    reshapes and padding keep their input's range; dropout-like layers (Dropout, DropPath,
    DropBlock2D, Cutout, ...) are the identity at inference. Nested models are inlined and this
    package's `ResidualBlock`, `SeparableConvBlock` and `SqueezeExcitation` are expanded into
    their layers. Train the result with your own `compile`/`fit` (see `callbacks`), then
    convert it with `keras_cnn_ext.export.to_tflite`, which gives a fully int8 file from the
    learned ranges (no representative data needed).

    Args:
        model: a Functional or Sequential `keras.Model` (nested models included).
        config: a `QuantizeConfig`; or pass its arguments as keywords (`skip=`,
            `per_tensor_weights=`, `strict=`, ...).

    Returns:
        A new Functional `keras.Model` with the original's weights, inputs and outputs.

    Raises:
        TypeError: for a subclassed model (no layer graph to rewrite) or a wrong `config`.
        ValueError: with `strict=True`, for a layer with no quantization rule.

    Example:

    >>> inputs = keras.Input((8, 8, 1))
    >>> x = keras.layers.Conv2D(4, 3, use_bias=False)(inputs)
    >>> x = keras.layers.BatchNormalization()(x)
    >>> x = keras.layers.ReLU()(x)
    >>> outputs = keras.layers.Dense(2)(keras.layers.Flatten()(x))
    >>> qat = quantize_model(keras.Model(inputs, outputs))
    >>> sum(isinstance(layer, FakeQuant) for layer in qat.layers)
    3
    """
    if config is None:
        config = QuantizeConfig(**kwargs)
    elif kwargs:
        raise TypeError(f"Pass either `config` or keyword options, not both. Received: {kwargs}")
    if not isinstance(config, QuantizeConfig):
        raise TypeError(f"`config` must be a QuantizeConfig or None. Received: {config!r}")
    surgery.check_graph_model(model)
    flat = _expand(model, config)
    if config.fold_batch_norm:
        flat = _fold_batch_norms(flat, config)
    consumers = _consumers(flat)
    float_layers = []

    def plan(layer):
        """(weight quantizers, quantize output) for one layer of the flat model."""
        if config.skipped(layer) or isinstance(layer, (FakeQuant, QuantizeWrapper)):
            return {}, False
        spec = reg.lookup(layer, config.registry)
        if spec is None:
            float_layers.append(layer)
            return {}, False
        quantizers = {attr: config.weight_quantizer(kind) for attr, kind in spec.weights}
        mine = consumers.get(id(layer), [])
        fixed = reg.FIXED_RANGE_ACTIVATIONS.get(transforms.activation_name(layer))
        output = spec.output and not any(p.drops_output(layer, mine) for p in transforms.PATTERNS)
        return quantizers, (fixed or True) if output else False

    plans = {
        id(layer): plan(layer)
        for layer in flat.layers
        if not isinstance(layer, keras.layers.InputLayer)
    }
    if float_layers:
        names = ", ".join(f"{layer.name!r} ({type(layer).__name__})" for layer in float_layers)
        message = (
            f"No quantization rule for {names}: kept in float32 (the converter will surround "
            "it with QUANTIZE/DEQUANTIZE). Add its class to `QuantizeConfig(registry=...)` or "
            "skip it explicitly to silence this."
        )
        if config.strict:
            raise ValueError(message)
        warnings.warn(message, stacklevel=2)

    def fake_quant(name, fixed_range=None):
        return FakeQuant(ema_decay=config.ema_decay, fixed_range=fixed_range, name=name)

    def call_function(original, copy, *args, **kwargs):
        quantizers, output = plans[id(original)]
        layer = QuantizeWrapper(copy, quantizers, name=copy.name) if quantizers else copy
        outputs = layer(*args, **kwargs)
        if output:
            fixed = output if isinstance(output, tuple) else None
            outputs = fake_quant(f"{original.name}_fq", fixed)(outputs)
        return outputs

    def input_function(tensor):
        return fake_quant(f"{tensor._keras_history.operation.name}_fq")(tensor)

    return surgery.transform(flat, call_function, input_function=input_function, name=model.name)


def quantizers_of(model):
    """The `FakeQuant` layers of a QAT model, in graph order."""
    return [layer for layer in model.layers if isinstance(layer, FakeQuant)]


def batch_norms_of(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
