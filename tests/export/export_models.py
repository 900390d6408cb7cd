"""Small models shared by the export tests: a float conv net and a hand-made QAT conv net.

The QAT model places TF's fake-quant ops the way TFMOT's default 8-bit scheme does (per-channel
symmetric narrow-range conv/depthwise weights, per-tensor asymmetric activations after each ReLU,
a BatchNormalization between a conv and its ReLU), so the export tests do not depend on
`keras_cnn_ext.quantization`.
"""

import keras
import numpy as np
import tensorflow as tf


class FakeQuantActivation(keras.layers.Layer):
    """Per-tensor asymmetric activation fake-quant with fixed (non-trainable) min/max."""

    def __init__(self, low, high, **kwargs):
        super().__init__(**kwargs)
        self.low, self.high = low, high

    def build(self, input_shape):
        self.min_value = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(self.low), trainable=False
        )
        self.max_value = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(self.high), trainable=False
        )

    def call(self, x):
        return tf.quantization.fake_quant_with_min_max_vars(x, self.min_value, self.max_value)


def _per_channel(kernel):
    """Symmetric narrow-range per-channel fake quant over the last axis (TFMOT's conv scheme)."""
    bound = tf.reduce_max(tf.abs(kernel), axis=list(range(kernel.shape.rank - 1)))
    return tf.quantization.fake_quant_with_min_max_vars_per_channel(
        kernel, -bound, bound, narrow_range=True
    )


class FakeQuantConv2D(keras.layers.Conv2D):
    def call(self, x):
        y = tf.nn.conv2d(x, _per_channel(self.kernel), self.strides, self.padding.upper())
        return y + self.bias if self.use_bias else y


class FakeQuantDepthwiseConv2D(keras.layers.DepthwiseConv2D):
    def call(self, x):
        h, w, c, m = self.kernel.shape
        flat = _per_channel(tf.reshape(self.kernel, (h, w, c * m)))  # axis c * m, as TFLite's
        y = tf.nn.depthwise_conv2d(
            x, tf.reshape(flat, (h, w, c, m)), (1, *self.strides, 1), self.padding.upper()
        )
        return y + self.bias if self.use_bias else y


class FakeQuantDense(keras.layers.Dense):
    def call(self, x):
        bound = tf.reduce_max(tf.abs(self.kernel))
        kernel = tf.quantization.fake_quant_with_min_max_vars(
            self.kernel, -bound, bound, narrow_range=True
        )
        return tf.matmul(x, kernel) + self.bias


def make_qat_model(classes=5, input_shape=(12, 12, 1)):
    keras.utils.set_random_seed(0)
    inputs = keras.Input(input_shape)
    x = FakeQuantActivation(0.0, 1.0, name="quant_input")(inputs)
    x = FakeQuantConv2D(8, 3, padding="same", use_bias=False, name="conv")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = FakeQuantActivation(0.0, 3.0, name="quant_relu")(x)
    x = FakeQuantDepthwiseConv2D(3, depth_multiplier=2, name="depthwise")(x)
    x = keras.layers.ReLU(name="relu_dw")(x)
    x = FakeQuantActivation(0.0, 4.0, name="quant_relu_dw")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = FakeQuantActivation(0.0, 4.0, name="quant_pool")(x)
    x = FakeQuantDense(classes, name="dense")(x)
    outputs = FakeQuantActivation(-4.0, 4.0, name="quant_logits")(x)
    model = keras.Model(inputs, outputs, name="qat_net")
    bn = model.get_layer("bn")  # non-trivial statistics, so the converter's BN fold is exercised
    rng = np.random.default_rng(0)
    bn.moving_mean.assign(rng.uniform(-0.2, 0.2, 8).astype("float32"))
    bn.moving_variance.assign(rng.uniform(0.5, 1.5, 8).astype("float32"))
    return model


def make_float_model(classes=4, input_shape=(8, 8, 3)):
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Conv2D(6, 3, padding="same", name="conv"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.ReLU(name="relu"),
            keras.layers.DepthwiseConv2D(3, name="depthwise"),
            keras.layers.GlobalAveragePooling2D(name="pool"),
            keras.layers.Dense(classes, activation="softmax", name="head"),
        ],
        name="float_net",
    )


class CumulativeProduct(keras.layers.Layer):
    """A layer whose op (Cumprod) has no TFLite builtin kernel and no tf2onnx conversion."""

    def call(self, x):
        return tf.math.cumprod(x, axis=-1)


def make_unsupported_model():
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(2, 3, name="conv")(inputs)
    return keras.Model(inputs, CumulativeProduct(name="running_product")(x), name="odd_net")
