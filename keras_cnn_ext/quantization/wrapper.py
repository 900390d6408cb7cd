"""QuantizeWrapper: fake-quantizes a layer's weights in its forward pass, leaving it unchanged."""

from __future__ import annotations

import keras

from keras_cnn_ext.quantization.quantizers import WeightQuantizer


def weight_attribute(layer, name):
    """The attribute that holds weight `name` (`_kernel` behind Keras 3's `kernel` property)."""
    # Keras 3's Conv and Dense expose `kernel` as a read-only property over `_kernel`.
    prop = getattr(type(layer), name, None)
    if isinstance(prop, property) and hasattr(layer, f"_{name}"):
        return f"_{name}"
    return name


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class QuantizeWrapper(keras.layers.Wrapper):
    """Runs `layer` with fake-quantized weights (the layer and its variables are unchanged).

    For each `(attribute, quantizer)` in `weight_quantizers` the float variable is swapped for
    `quantizer(variable)` for the duration of the call, so gradients reach the float weights
    through the straight-through estimator of TF's fake-quant op, and the TFLite converter sees
    the quantized weights (TFMOT's `QuantizeWrapper` design).

    Args:
        layer: the layer to wrap (e.g. `Conv2D`, `DepthwiseConv2D`, `Dense`).
        weight_quantizers: a dict `{attribute name: WeightQuantizer}`, e.g.
            `{"kernel": WeightQuantizer(per_axis=True)}`.

    Example:

    >>> conv = keras.layers.Conv2D(4, 3)
    >>> wrapped = QuantizeWrapper(conv, {"kernel": WeightQuantizer()})
    >>> tuple(wrapped(keras.ops.ones((1, 8, 8, 2))).shape)
    (1, 6, 6, 4)
    """

    def __init__(self, layer, weight_quantizers, **kwargs):
        kwargs.setdefault("name", f"quant_{layer.name}")
        super().__init__(layer, **kwargs)
        quantizers = {}
        for key, quantizer in dict(weight_quantizers).items():
            if isinstance(quantizer, dict):
                quantizer = keras.saving.deserialize_keras_object(quantizer)
            if not isinstance(quantizer, WeightQuantizer):
                raise TypeError(
                    "`weight_quantizers` values must be `WeightQuantizer`s. "
                    f"Received: {quantizer!r} for {key!r}"
                )
            quantizers[key] = quantizer
        self.weight_quantizers = quantizers

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
        for key in self.weight_quantizers:
            if getattr(self.layer, key, None) is None:
                raise ValueError(
                    f"Layer {self.layer.name!r} ({type(self.layer).__name__}) has no weight "
                    f"`{key}` to quantize."
                )
        self.built = True

    def quantized_weights(self):
        """`{attribute: fake-quantized value}` as the wrapped layer sees them in `call`."""
        return {
            key: quantizer(getattr(self.layer, key))
            for key, quantizer in self.weight_quantizers.items()
        }

    def call(self, inputs, *args, **kwargs):
        swapped = {}
        try:
            for key, value in self.quantized_weights().items():
                attr = weight_attribute(self.layer, key)
                swapped[attr] = getattr(self.layer, attr)
                object.__setattr__(self.layer, attr, value)
            return self.layer.call(inputs, *args, **kwargs)
        finally:
            for attr, variable in swapped.items():
                object.__setattr__(self.layer, attr, variable)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config["weight_quantizers"] = {
            key: keras.saving.serialize_keras_object(q) for key, q in self.weight_quantizers.items()
        }
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        layer = keras.saving.deserialize_keras_object(
            config.pop("layer"), custom_objects=custom_objects
        )
        return cls(layer, **config)
