"""Conv + BatchNorm folded into the weight quantizer, for per-tensor weights (Krishnamoorthi 2018).

With per-channel symmetric weights the TFLite converter folds BN exactly, since BN's
per-channel multiplier commutes with a per-channel scale. With one scale per tensor it cannot:
the folded weights no longer fit the learned scale and the convolution stays float (measured:
a float CONV_2D between an extra QUANTIZE/DEQUANTIZE pair). `FoldedConvBatchNorm` therefore
quantizes the *folded* weights during training (Krishnamoorthi 2018, "Quantizing deep
convolutional networks for efficient inference", section 3.2, figures 8-9):

- training: `y0 = conv(x, w) + b` gives the batch statistics `mu_B`, `sigma_B` (and updates the
  moving ones through the BN layer); the output is
  `conv(x, Q(w * gamma / sigma)) * sigma / sigma_B + beta - gamma * (mu_B - b) / sigma_B`,
  which equals BN with batch statistics except for the weights' quantization, while `Q` already
  sees the weights the file will hold;
- inference: `conv(x, Q(w * gamma / sigma)) + beta - gamma * (mu - b) / sigma` with the moving
  statistics: one conv with per-tensor int8 weights and a bias in the file.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_cnn_ext.quantization.quantizers import WeightQuantizer
from keras_cnn_ext.quantization.wrapper import weight_attribute


def call_with_kernel(layer, inputs, kernel):
    """`layer.call(inputs)` with its kernel swapped for `kernel` during the call."""
    attr = weight_attribute(layer, "kernel")
    original = getattr(layer, attr)
    object.__setattr__(layer, attr, kernel)
    try:
        return layer.call(inputs)
    finally:
        object.__setattr__(layer, attr, original)


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class FoldedConvBatchNorm(keras.layers.Layer):
    """A Conv2D/DepthwiseConv2D and the BatchNormalization after it, with folded, fake-quantized weights.

    See the module docstring for the computation. Built by `quantize_model` for Conv/Depthwise +
    BN pairs when weights are per tensor (`QuantizeConfig(per_tensor_weights=True)`); the
    conv and the BN keep their own weights (`conv` and `batch_norm` sublayers), so the fold can
    be undone. Channels-last only.

    Args:
        conv: the `Conv2D` or `DepthwiseConv2D` layer (no activation), or its serialized form.
        batch_norm: the `BatchNormalization` layer over its output channels.
        weight_quantizer: the `WeightQuantizer` of the folded kernel. Default per tensor,
            symmetric, narrow range.
    """

    def __init__(self, conv, batch_norm, weight_quantizer=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(conv, dict):
            conv = keras.saving.deserialize_keras_object(conv)
        if isinstance(batch_norm, dict):
            batch_norm = keras.saving.deserialize_keras_object(batch_norm)
        if isinstance(weight_quantizer, dict):
            weight_quantizer = keras.saving.deserialize_keras_object(weight_quantizer)
        if not isinstance(conv, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            raise TypeError(f"`conv` must be a Conv2D or DepthwiseConv2D. Received: {conv!r}")
        if not isinstance(batch_norm, keras.layers.BatchNormalization):
            raise TypeError(f"`batch_norm` must be a BatchNormalization. Received: {batch_norm!r}")
        self.conv = conv
        self.batch_norm = batch_norm
        self.weight_quantizer = weight_quantizer or WeightQuantizer(per_axis=False)
        self.depthwise = isinstance(conv, keras.layers.DepthwiseConv2D)

    def build(self, input_shape):
        if not self.conv.built:
            self.conv.build(input_shape)
        if not self.batch_norm.built:
            self.batch_norm.build(self.conv.compute_output_shape(input_shape))

    def _scale_kernel(self, factor):
        kernel = tf.convert_to_tensor(self.conv.kernel)
        if self.depthwise:
            kh, kw, cin, mult = kernel.shape
            return kernel * tf.reshape(factor, (cin, mult))
        return kernel * factor

    def folded_kernel(self, variance=None):
        """The kernel with BN's moving statistics folded in (what the file quantizes)."""
        variance = self._variance() if variance is None else variance
        return self._scale_kernel(self._gamma() * tf.math.rsqrt(variance))

    def _gamma(self):
        bn = self.batch_norm
        return tf.ones_like(bn.moving_mean) if bn.gamma is None else tf.convert_to_tensor(bn.gamma)

    def _beta(self):
        bn = self.batch_norm
        return tf.zeros_like(bn.moving_mean) if bn.beta is None else tf.convert_to_tensor(bn.beta)

    def _variance(self):
        return tf.convert_to_tensor(self.batch_norm.moving_variance) + self.batch_norm.epsilon

    def _bias(self):
        conv = self.conv
        return tf.convert_to_tensor(conv.bias) if conv.use_bias else 0.0

    def call(self, inputs, training=None):
        bn, bias = self.batch_norm, self._bias()
        gamma, beta = self._gamma(), self._beta()
        # Read once, before the BN update below: the fold and the correction use one sigma.
        moving_variance = tf.identity(self._variance())
        moving_mean = tf.identity(tf.convert_to_tensor(bn.moving_mean))
        quantized = self.weight_quantizer(self.folded_kernel(moving_variance))
        y = call_with_kernel(self.conv, inputs, quantized) - bias
        if training and bn.trainable:
            y0 = self.conv(inputs)
            mean, variance = tf.nn.moments(y0, axes=[0, 1, 2])
            with tf.control_dependencies([y]):
                bn(y0, training=True)  # updates the moving statistics the Keras way
            batch_inv = tf.math.rsqrt(variance + bn.epsilon)
            correction = batch_inv * tf.sqrt(moving_variance)
            return y * correction + beta - gamma * (mean - bias) * batch_inv
        return y + beta - gamma * (moving_mean - bias) * tf.math.rsqrt(moving_variance)

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "conv": keras.saving.serialize_keras_object(self.conv),
                "batch_norm": keras.saving.serialize_keras_object(self.batch_norm),
                "weight_quantizer": keras.saving.serialize_keras_object(self.weight_quantizer),
            }
        )
        return config
