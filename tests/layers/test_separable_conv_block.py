"""Tests for SeparableConvBlock: the parameter formula, the ratio, the layer contract."""

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_cnn_ext.layers import SeparableConvBlock
from keras_cnn_ext.testing import CONTRACT_CHECKS, LayerSpec, run_contract_check

SPEC = LayerSpec(
    SeparableConvBlock,
    # A smooth activation: with ReLU6 a pre-activation of exactly 0 (a position whose depthwise
    # outputs are all clipped to 0) puts the numeric gradient check on the kink.
    {"filters": 6, "strides": 2, "activation": "silu"},
    input_shape=(2, 6, 6, 4),
    expected_output_shape=(2, 3, 3, 6),
    training_changes_output=True,
    gradient_input_shape=(1, 4, 4, 4),
)


@pytest.mark.parametrize("check", CONTRACT_CHECKS)
def test_contract(check):
    run_contract_check(check, SPEC)


@settings(max_examples=15, deadline=None)
@given(k=st.sampled_from([1, 3, 5]), c_in=st.integers(1, 16), c_out=st.integers(1, 16))
def test_params_equal_separable_formula(k, c_in, c_out):
    block = SeparableConvBlock(c_out, kernel_size=k)
    block.build((None, 8, 8, c_in))
    conv_weights = k * k * c_in + c_in * c_out  # Howard et al. 2017: K*K*C_in + C_in*C_out
    bn = 4 * c_in + 4 * c_out  # gamma, beta, moving mean and variance of each BN
    assert block.count_params() == conv_weights + bn
    assert sum(int(np.prod(w.shape)) for w in block.trainable_weights) == conv_weights + bn // 2
    # Versus a standard K x K convolution without bias: the ratio is 1/C_out + 1/K^2.
    standard = keras.layers.Conv2D(c_out, k, use_bias=False)
    standard.build((None, 8, 8, c_in))
    ratio = conv_weights / standard.count_params()
    assert ratio == pytest.approx(1 / c_out + 1 / k**2)


def test_matches_functional_layers():
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 4)).astype("float32")
    block = SeparableConvBlock(8, strides=2, name="sep")
    y = block(x, training=False)
    layers = {layer.name: layer for layer in block._flatten_layers(include_self=False)}
    inputs = keras.Input((8, 8, 4))
    h = layers["sep_dw_relu"](layers["sep_dw_bn"](layers["sep_dw"](inputs)))
    h = layers["sep_pw_relu"](layers["sep_pw_bn"](layers["sep_pw"](h)))
    np.testing.assert_allclose(keras.Model(inputs, h)(x, training=False), y, atol=1e-6)
    assert float(np.max(y)) <= 6.0  # relu6 by default, as MobileNet


def test_depth_multiplier_and_no_norm():
    block = SeparableConvBlock(5, depth_multiplier=2, norm=None, use_bias=True, activation=None)
    block.build((None, 8, 8, 3))
    assert block.count_params() == (9 * 3 * 2 + 6) + (6 * 5 + 5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"filters": 0}, "`filters`"),
        ({"filters": 4, "padding": "causal"}, "`padding`"),
        ({"filters": 4, "strides": 2, "dilation_rate": 2}, "`strides`"),
        ({"filters": 4, "activation": "relu7"}, "`activation`"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SeparableConvBlock(**kwargs)
