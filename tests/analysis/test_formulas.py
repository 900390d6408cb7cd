"""The closed-form formulas against what Keras layers actually produce and hold."""

import math

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_cnn_ext.analysis import formulas as F

SETTINGS = settings(max_examples=15, deadline=None, derandomize=True)


def _run(layer, shape):
    return tuple(layer(np.zeros(shape, "float32")).shape)


@SETTINGS
@given(
    n=st.integers(1, 20),
    k=st.integers(1, 5),
    s=st.integers(1, 4),
    d=st.integers(1, 3),
    padding=st.sampled_from(["valid", "same"]),
)
def test_conv_output_size_matches_keras_conv(n, k, s, d, padding):
    if d > 1 and s > 1:
        s = 1  # Keras rejects strides > 1 together with dilation > 1
    k_eff = 1 + (k - 1) * d
    expected = F.conv_output_size(n, k, s, padding, d)
    if padding == "valid" and k_eff > n:
        assert expected == 0
        return
    layer = keras.layers.Conv1D(1, k, strides=s, padding=padding, dilation_rate=d)
    assert _run(layer, (1, n, 1))[1] == expected


@SETTINGS
@given(n=st.integers(1, 16), k=st.integers(1, 4), s=st.integers(1, 4), d=st.integers(1, 3))
def test_causal_and_full_padding(n, k, s, d):
    if d > 1 and s > 1:
        s = 1
    k_eff = 1 + (k - 1) * d
    causal = keras.layers.Conv1D(1, k, strides=s, padding="causal", dilation_rate=d)
    assert _run(causal, (1, n, 1))[1] == F.conv_output_size(n, k, s, "causal", d)
    # "full" padding is zero padding of k_eff - 1 on both sides, then a valid convolution.
    x = keras.layers.ZeroPadding1D(k_eff - 1)(np.zeros((1, n, 1), "float32"))
    full = keras.layers.Conv1D(1, k, strides=s, dilation_rate=d)
    assert tuple(full(x).shape)[1] == F.conv_output_size(n, k, s, "full", d)


@SETTINGS
@given(
    n=st.integers(1, 16),
    k=st.integers(1, 4),
    s=st.integers(1, 4),
    padding=st.sampled_from(["valid", "same"]),
)
def test_pooling_output_size_matches_keras(n, k, s, padding):
    if padding == "valid" and k > n:
        return
    layer = keras.layers.MaxPooling1D(k, strides=s, padding=padding)
    assert _run(layer, (1, n, 1))[1] == F.conv_output_size(n, k, s, padding)


@SETTINGS
@given(
    n=st.integers(1, 10),
    k=st.integers(1, 5),
    s=st.integers(1, 4),
    padding=st.sampled_from(["valid", "same"]),
    output_padding=st.one_of(st.none(), st.integers(0, 3)),
)
def test_conv_transpose_output_size_matches_keras(n, k, s, padding, output_padding):
    d = 1  # TF's CPU kernel for dilated transposed convolutions fails on small inputs
    if output_padding is not None and output_padding >= s:
        output_padding = s - 1  # Keras requires output_padding < stride
    layer = keras.layers.Conv2DTranspose(
        1, k, strides=s, padding=padding, output_padding=output_padding, dilation_rate=d
    )
    expected = F.conv_transpose_output_size(n, k, s, padding, output_padding, d)
    assert tuple(layer.compute_output_shape((1, n, n, 1)))[1:3] == (expected, expected)
    if expected > 0:  # TF's kernel rejects the empty outputs Keras' arithmetic allows
        assert _run(layer, (1, n, n, 1))[1:3] == (expected, expected)


def test_unknown_size_and_bad_arguments():
    assert F.conv_output_size(None, 3) is None
    assert F.conv_transpose_output_size(None, 3, 2) is None
    with pytest.raises(ValueError, match="`padding`"):
        F.conv_output_size(10, 3, padding="wrap")
    with pytest.raises(ValueError, match="`stride`"):
        F.conv_output_size(10, 3, stride=0)
    with pytest.raises(TypeError, match="`kernel_size`"):
        F.conv_output_size(10, 2.5)
    with pytest.raises(ValueError, match="`groups`"):
        F.conv_params(3, 6, 8, groups=4)


@SETTINGS
@given(
    k=st.integers(1, 5),
    c_in=st.sampled_from([2, 4, 6]),
    c_out=st.sampled_from([2, 4, 8]),
    groups=st.sampled_from([1, 2]),
    use_bias=st.booleans(),
)
def test_conv_params_match_keras(k, c_in, c_out, groups, use_bias):
    layer = keras.layers.Conv2D(c_out, k, groups=groups, use_bias=use_bias)
    layer.build((None, 8, 8, c_in))
    assert F.conv_params(k, c_in, c_out, groups, use_bias) == layer.count_params()
    transposed = keras.layers.Conv2DTranspose(c_out, k, use_bias=use_bias)
    transposed.build((None, 8, 8, c_in))
    assert F.conv_transpose_params(k, c_in, c_out, use_bias) == transposed.count_params()


@SETTINGS
@given(
    k=st.integers(1, 5),
    c_in=st.integers(1, 6),
    c_out=st.integers(1, 6),
    m=st.integers(1, 3),
    use_bias=st.booleans(),
)
def test_depthwise_and_separable_params_match_keras(k, c_in, c_out, m, use_bias):
    depthwise = keras.layers.DepthwiseConv2D(k, depth_multiplier=m, use_bias=use_bias)
    depthwise.build((None, 8, 8, c_in))
    assert F.depthwise_conv_params(k, c_in, m, use_bias) == depthwise.count_params()
    separable = keras.layers.SeparableConv2D(c_out, k, depth_multiplier=m, use_bias=use_bias)
    separable.build((None, 8, 8, c_in))
    assert F.separable_conv_params(k, c_in, c_out, m, use_bias) == separable.count_params()


@pytest.mark.parametrize("k,c_in,c_out", [(3, 32, 64), (5, 16, 16), (3, 1, 1), (7, 3, 128)])
def test_separable_ratio(k, c_in, c_out):
    standard = keras.layers.Conv2D(c_out, k, use_bias=False)
    standard.build((None, 16, 16, c_in))
    separable = keras.layers.SeparableConv2D(c_out, k, use_bias=False)
    separable.build((None, 16, 16, c_in))
    measured = separable.count_params() / standard.count_params()
    assert F.separable_param_ratio(k, c_out) == pytest.approx(1 / c_out + 1 / k**2)
    assert F.separable_param_ratio(k, c_out) == pytest.approx(measured)
    assert F.separable_param_ratio(k, c_out, in_channels=c_in) == pytest.approx(measured)
    with_bias = F.separable_param_ratio(k, c_out, in_channels=c_in, use_bias=True)
    expected = F.separable_conv_params(k, c_in, c_out) / F.conv_params(k, c_in, c_out)
    assert with_bias == pytest.approx(expected)


def test_conv_macs_seed_form():
    # Seed: N*H_out*W_out*C_out*(K_h*K_w*C_in + 1) counts the bias as one more MAC.
    macs = F.conv_macs((112, 112), 7, 3, 64, batch_size=2)
    assert macs == 2 * 112 * 112 * 64 * 7 * 7 * 3
    assert macs + 2 * 112 * 112 * 64 == 2 * 112 * 112 * 64 * (7 * 7 * 3 + 1)
    assert F.conv_macs((4, 4), 3, 8, 8, groups=4) == 16 * 8 * 9 * 2


def test_receptive_field_step():
    assert F.receptive_field_step(1, 1, 3) == (3, 1)
    assert F.receptive_field_step(1, 1, 3, dilation=2) == (5, 1)
    assert F.receptive_field_step(5, 2, 3, stride=2) == (9, 4)
    assert F.effective_kernel_size(3, 4) == 9
    assert math.isclose(F.separable_param_ratio(3, 64), 1 / 64 + 1 / 9)
