"""Run keras_cnn_ext's layer contract on your own layer.

    pytest examples/test_my_layer_with_the_contract.py

The contract checks eager and tf.function calls, XLA, get_config/from_config, a .keras round trip,
mixed_float16/mixed_bfloat16, numeric gradients, training vs inference, two MirroredStrategy replicas,
and TFLite (builtin ops only) and ONNX exports against the Keras outputs.
"""

import keras
import pytest

from keras_cnn_ext.testing import (
    CONTRACT_CHECKS,
    LayerSpec,
    configure_logical_cpus,
    run_contract_check,
)

configure_logical_cpus(2)  # before TensorFlow initialises: the distribute check needs 2 replicas


@keras.saving.register_keras_serializable(package="my_project")
class ScaledSwish(keras.layers.Layer):
    """x * sigmoid(beta * x) with a learned per-channel beta."""

    def build(self, input_shape):
        self.beta = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="beta")

    def call(self, inputs):
        # The contract's integer-input check: cast integer images to the compute dtype first.
        inputs = keras.ops.cast(inputs, self.compute_dtype)
        return inputs * keras.ops.sigmoid(self.beta * inputs)

    def compute_output_shape(self, input_shape):
        return input_shape


SPEC = LayerSpec(ScaledSwish, {}, input_shape=(2, 6, 6, 3), expected_trainable_weights=1)


@pytest.mark.parametrize("check", CONTRACT_CHECKS)
def test_scaled_swish_contract(check):
    run_contract_check(check, SPEC)
