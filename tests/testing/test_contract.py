"""The contract itself: it passes Keras' own well-behaved layers and catches broken ones."""

import keras
import numpy as np
import pytest

from keras_cnn_ext.testing import CONTRACT_CHECKS, LayerSpec, run_contract_check

CONV = LayerSpec(
    keras.layers.Conv2D,
    {"filters": 3, "kernel_size": 3, "padding": "same"},
    input_shape=(2, 6, 6, 2),
    expected_output_shape=(2, 6, 6, 3),
    expected_trainable_weights=2,
    expected_non_trainable_weights=0,
)

BATCH_NORM = LayerSpec(
    keras.layers.BatchNormalization,
    {"momentum": 0.5},
    input_shape=(4, 3, 3, 2),
    training_changes_output=True,
    expected_trainable_weights=2,
    expected_non_trainable_weights=2,
)


@pytest.mark.parametrize("check", [c for c in CONTRACT_CHECKS if c != "integer_input"])
def test_conv2d_passes(check):
    run_contract_check(check, CONV)


def test_keras_conv2d_fails_the_integer_input_rule():
    # Keras 3.15's Conv2D raises inside TensorFlow on int32 input ("Incompatible type
    # conversion requested to type int32 for tf.Variable"); this package's layers cast.
    with pytest.raises(ValueError, match="Incompatible type conversion"):
        run_contract_check("integer_input", CONV)


@keras.saving.register_keras_serializable(package="keras_cnn_ext_tests")
class IntegerScale(keras.layers.Layer):
    """Scales by 2.5 in the input's dtype: on int32 input it silently scales by 2."""

    def call(self, inputs):
        return inputs * keras.ops.cast(2.5, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


def test_integer_input_check_catches_integer_arithmetic():
    with pytest.raises(AssertionError, match="int32 input gave output dtype int32"):
        run_contract_check("integer_input", LayerSpec(IntegerScale, {}, (1, 2, 2, 1)))


@pytest.mark.parametrize("check", ["eager", "training", "distribute", "gradient"])
def test_batch_normalization_passes(check):
    run_contract_check(check, BATCH_NORM)


@keras.saving.register_keras_serializable(package="keras_cnn_ext_tests")
class ForgetfulScale(keras.layers.Layer):
    """Scales its input but forgets `factor` in get_config: the config check must catch it."""

    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, inputs, training=None):
        return inputs * self.factor

    def get_config(self):
        # Keras 3 records simple constructor arguments by itself; drop one to break the layer.
        config = super().get_config()
        config.pop("factor", None)
        return config

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="keras_cnn_ext_tests")
class WrongShape(ForgetfulScale):
    """Declares an output shape it does not produce."""

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (input_shape[-1] + 1,)


@keras.saving.register_keras_serializable(package="keras_cnn_ext_tests")
class BadGradient(WrongShape):
    """Stops the gradient although the output depends on the input."""

    def call(self, inputs, training=None):
        return keras.ops.stop_gradient(inputs * self.factor) + 0.0 * inputs

    def compute_output_shape(self, input_shape):
        return input_shape


def test_config_check_catches_missing_argument():
    with pytest.raises(AssertionError, match="lacks constructor arguments"):
        run_contract_check("config", LayerSpec(ForgetfulScale, {"factor": 3.0}, (1, 2, 2, 1)))


def test_eager_check_catches_wrong_output_shape():
    with pytest.raises(AssertionError, match="compute_output_shape"):
        run_contract_check("eager", LayerSpec(WrongShape, {"factor": 3.0}, (1, 2, 2, 1)))


def test_gradient_check_catches_wrong_gradient():
    with pytest.raises(AssertionError, match="input gradient"):
        run_contract_check("gradient", LayerSpec(BadGradient, {"factor": 3.0}, (1, 2, 2, 1)))


def test_distribute_check_catches_keras_dropout_same_mask_on_every_replica():
    # Measured on Keras 3.15: keras.random with a mirrored SeedGenerator draws the same mask
    # on every replica of a MirroredStrategy.
    spec = LayerSpec(keras.layers.Dropout, {"rate": 0.5, "seed": 1}, (4, 4, 4, 2), random=True)
    with pytest.raises(AssertionError, match="same random mask"):
        run_contract_check("distribute", spec)


def test_unknown_check_name_is_rejected():
    with pytest.raises(ValueError, match="`check` must be one of"):
        run_contract_check("speed", CONV)


def test_spec_inputs_are_reproducible():
    np.testing.assert_array_equal(CONV.make_input(), CONV.make_input())


@keras.saving.register_keras_serializable(package="keras_cnn_ext_tests")
class HostRound(keras.layers.Layer):
    """Rounds on the host (`tf.numpy_function`): fine eagerly, no XLA kernel."""

    def call(self, inputs):
        import tensorflow as tf

        out = tf.numpy_function(np.round, [inputs], inputs.dtype, stateful=False)
        return tf.ensure_shape(out, inputs.shape)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="keras_cnn_ext_tests")
class DetachedScale(keras.layers.Layer):
    """A trainable scale that no gradient reaches (it is applied under stop_gradient)."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(), initializer="ones")

    def call(self, inputs):
        return inputs * keras.ops.stop_gradient(self.scale)

    def compute_output_shape(self, input_shape):
        return input_shape


def test_xla_check_catches_ops_without_kernels_and_missing_gradients():
    with pytest.raises(Exception, match="(?i)PyFunc|unsupported|compil"):
        run_contract_check("xla", LayerSpec(HostRound, {}, (1, 2, 2, 1)))
    with pytest.raises(AssertionError, match="XLA gradient is None"):
        run_contract_check("xla", LayerSpec(DetachedScale, {}, (1, 2, 2, 1)))
