"""The contract's export halves: traced conversion for Functional models, Keras' path otherwise."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_cnn_ext import layers
from keras_cnn_ext.testing import assert_tflite_parity, run_tflite, tflite_builtin_bytes


def _model():
    inputs = keras.Input((6, 6, 4))
    x = layers.ResidualBlock(4, strides=2, attention="se")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(x)))


def test_functional_model_converts_without_a_saved_model(monkeypatch):
    model = _model()
    x = np.random.default_rng(0).uniform(-1, 1, (3, 6, 6, 4)).astype("float32")

    def refuse(*args, **kwargs):
        raise AssertionError("from_keras_model was called")

    with monkeypatch.context() as patcher:
        patcher.setattr(tf.lite.TFLiteConverter, "from_keras_model", refuse)
        traced = tflite_builtin_bytes(model)
    # The same outputs as the converter's own Keras path, at any batch size.
    keras_path = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    np.testing.assert_array_equal(run_tflite(traced, x), run_tflite(keras_path, x))
    np.testing.assert_array_equal(run_tflite(traced, x[:1]), run_tflite(keras_path, x[:1]))
    assert assert_tflite_parity(model, x) <= 1e-5


def test_subclassed_model_goes_through_keras_path():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, inputs):
            return self.dense(inputs)

    model = Net()
    x = np.ones((2, 3), "float32")
    model(x)
    np.testing.assert_allclose(run_tflite(tflite_builtin_bytes(model), x), model(x), atol=1e-6)


def test_ops_without_a_builtin_kernel_are_refused():
    inputs = keras.Input((4, 3))
    outputs = keras.layers.Lambda(lambda t: tf.math.cumprod(t, axis=1))(inputs)
    with pytest.raises(Exception, match="Cumprod"):
        tflite_builtin_bytes(keras.Model(inputs, outputs))
