"""The package-wide integer-input rule: integer and bool inputs are cast to the compute dtype.

Each defect below gave a silently wrong result or a raw TensorFlow error on int32 input before
the rule was applied in `keras_cnn_ext.layers.base`; the contract's `integer_input` check covers
every layer, these pin the reported cases by value.
"""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_cnn_ext import layers
from keras_cnn_ext.layers.base import CastsIntegerInputs, cast_integer_inputs

TENS = np.full((64, 3), 10, "int32")


def _public_layer_classes():
    return [
        obj
        for _, obj in inspect.getmembers(layers, inspect.isclass)
        if issubclass(obj, keras.layers.Layer) and obj.__module__.startswith("keras_cnn_ext.")
    ]


def test_every_public_layer_applies_the_rule():
    classes = _public_layer_classes()
    assert len(classes) >= 19
    assert [c.__name__ for c in classes if not issubclass(c, CastsIntegerInputs)] == []


def test_local_response_normalization_keeps_alpha_on_integer_input():
    # Before: the constants were cast to int32, alpha=1e-4 became 0 and the input came back.
    x = np.arange(2 * 3 * 3 * 6).reshape(2, 3, 3, 6).astype("int32")
    y = layers.LocalResponseNormalization()(x)
    expected = tf.nn.local_response_normalization(x.astype("float32"), 2, 2.0, 1e-4, 0.75)
    assert y.dtype == tf.float32
    np.testing.assert_allclose(np.asarray(y), np.asarray(expected), rtol=1e-6)
    assert not np.allclose(np.asarray(y), x)


def test_drop_path_rescales_integer_input():
    # Before: DropPath(0.4) on tens gave [0, 10] (integer arithmetic lost the 1 / 0.6).
    y = np.asarray(layers.DropPath(0.4, seed=1)(TENS, training=True))
    assert y.dtype == np.float32
    np.testing.assert_allclose(np.unique(y), [0.0, 10 / 0.6], rtol=1e-6)


def test_dropblock_rescales_integer_input():
    x = np.full((4, 8, 8, 3), 10, "int32")
    ours = layers.DropBlock2D(0.3, 3, seed=2)(x, training=True)
    floats = layers.DropBlock2D(0.3, 3, seed=2)(x.astype("float32"), training=True)
    assert ours.dtype == tf.float32
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(floats))
    kept = np.asarray(ours)[np.asarray(ours) > 0]
    assert kept.size and np.all(kept > 10)  # scaled by numel / kept


@pytest.mark.parametrize(
    "make",
    [
        lambda: layers.ResidualBlock(4, block_type="basic"),
        lambda: layers.SeparableConvBlock(4),
        lambda: layers.DenseBlock(2, growth_rate=4),
        lambda: layers.TransitionBlock(0.5),
        lambda: layers.GroupedConv2D(4, 3, groups=2),
    ],
    ids=["ResidualBlock", "SeparableConvBlock", "DenseBlock", "TransitionBlock", "GroupedConv2D"],
)
def test_conv_blocks_take_integer_input(make):
    # Before: "Incompatible type conversion requested to type int32 for tf.Variable" for all
    # but TransitionBlock, which already returned float32 (its BatchNormalization casts).
    x = (np.arange(2 * 6 * 6 * 4).reshape(2, 6, 6, 4) % 5).astype("int32")
    layer = make()
    y = layer(x, training=False)
    assert y.dtype == tf.float32
    np.testing.assert_allclose(
        np.asarray(y), np.asarray(layer(x.astype("float32"), training=False)), atol=1e-6
    )


def test_integer_input_under_mixed_precision_gives_the_compute_dtype():
    y = layers.TransitionBlock(0.5, dtype="mixed_float16")(np.ones((1, 4, 4, 4), "uint8"))
    assert y.dtype == tf.float16


def test_bool_input_is_cast():
    y = layers.DropPath(0.5, seed=1)(np.ones((8, 2), bool), training=False)
    assert y.dtype == tf.float32


def test_symbolic_integer_input_builds_a_model_that_saves(tmp_path):
    inputs = keras.Input((6, 6, 4), dtype="uint8")
    model = keras.Model(inputs, layers.SeparableConvBlock(4)(inputs))
    x = np.full((1, 6, 6, 4), 3, "uint8")
    path = tmp_path / "m.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(np.asarray(restored(x)), np.asarray(model(x)), atol=1e-6)


def test_other_dtypes_raise_a_type_error_naming_layer_and_dtype():
    with pytest.raises(TypeError, match=r"`DropPath`.*Received: inputs of dtype string"):
        layers.DropPath(0.5)(tf.constant([["a", "b"]]))
    with pytest.raises(TypeError, match="complex64"):
        cast_integer_inputs(tf.constant([1j], tf.complex64), "float32", "X")


def test_floats_and_non_tensors_pass_through():
    x = tf.constant([1.5], tf.float64)
    assert cast_integer_inputs(x, "float32", "X") is x
    assert cast_integer_inputs(None, "float32", "X") is None
    nested = cast_integer_inputs({"a": tf.constant([1])}, "float16", "X")
    assert nested["a"].dtype == tf.float16
