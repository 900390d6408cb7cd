"""Attention ops against NumPy oracles written from the papers' equations."""

import math

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_cnn_ext.ops import attention as ops
from keras_cnn_ext.utils import make_divisible

RNG = np.random.default_rng(0)


def np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def np_hard_sigmoid(x):
    return np.clip(x / 6.0 + 0.5, 0.0, 1.0)


def to_channels_first(x):
    return np.transpose(x, (0, 3, 1, 2))


def np_mlp(d, w1, b1, w2, b2):
    return np.maximum(d @ w1 + b1, 0.0) @ w2 + b2


def np_se(x, w1, b1, w2, b2, gate=np_sigmoid):
    """Hu et al. eq. 2-4 on a channels_last array."""
    z = x.mean(axis=(1, 2))
    s = gate(np_mlp(z, w1, b1, w2, b2))
    return x * s[:, None, None, :]


def np_channel_attention(x, w1, b1, w2, b2):
    """Woo et al. eq. 2: the MLP applied to each descriptor separately (bias added twice)."""
    logits = np_mlp(x.mean(axis=(1, 2)), w1, b1, w2, b2) + np_mlp(
        x.max(axis=(1, 2)), w1, b1, w2, b2
    )
    return x * np_sigmoid(logits)[:, None, None, :]


def np_eca(x, w):
    """1D cross-correlation of the pooled channels with zero padding (k - 1) / 2 each side."""
    k = w.shape[0]
    pad = (k - 1) // 2
    p = np.pad(x.mean(axis=(1, 2)), ((0, 0), (pad, pad)))
    c = x.shape[-1]
    y = np.stack([(p[:, i : i + k] * w).sum(axis=1) for i in range(c)], axis=1)
    return x * np_sigmoid(y)[:, None, None, :]


def np_conv_same(m, kernel, bias):
    """'same' cross-correlation of an (N, H, W, Cin) array with (kh, kw, Cin, 1)."""
    kh, kw = kernel.shape[:2]
    top, left = (kh - 1) // 2, (kw - 1) // 2
    padded = np.pad(m, ((0, 0), (top, kh - 1 - top), (left, kw - 1 - left), (0, 0)))
    n, h, w, _ = m.shape
    out = np.zeros((n, h, w))
    for i in range(kh):
        for j in range(kw):
            out += padded[:, i : i + h, j : j + w, :] @ kernel[i, j, :, 0]
    return out + bias


def np_spatial(x, kernel, bias, mode):
    desc = np.stack([x.mean(axis=-1), x.max(axis=-1)], axis=-1)
    logits = np_conv_same(desc, kernel, bias)
    if mode == "sigmoid":
        weights = np_sigmoid(logits)
    else:
        flat = logits.reshape(len(logits), -1)
        e = np.exp(flat - flat.max(axis=1, keepdims=True))
        weights = (e / e.sum(axis=1, keepdims=True)).reshape(logits.shape)
    return x * weights[..., None]


def se_weights(c, r):
    return [RNG.standard_normal(s) for s in ((c, r), (r,), (r, c), (c,))]


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("gate_name", ["sigmoid", "hard_sigmoid"])
def test_squeeze_excitation_matches_numpy(data_format, gate_name):
    x = RNG.standard_normal((2, 5, 6, 8))
    weights = se_weights(8, 4)
    gates = {"sigmoid": (tf.sigmoid, np_sigmoid), "hard_sigmoid": (tf.nn.relu6, np_hard_sigmoid)}
    tf_gate, np_gate = gates[gate_name]
    if gate_name == "hard_sigmoid":
        tf_gate = lambda t: tf.nn.relu6(t + 3.0) / 6.0  # noqa: E731
    expected = np_se(x, *weights, gate=np_gate)
    inputs = x if data_format == "channels_last" else to_channels_first(x)
    got = ops.squeeze_excitation(inputs, *weights, gate=tf_gate, data_format=data_format).numpy()
    if data_format == "channels_first":
        expected = to_channels_first(expected)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_channel_attention_matches_numpy(data_format):
    x = RNG.standard_normal((2, 4, 5, 6))
    weights = se_weights(6, 3)
    expected = np_channel_attention(x, *weights)
    inputs = x if data_format == "channels_last" else to_channels_first(x)
    got = ops.channel_attention(inputs, *weights, data_format=data_format).numpy()
    if data_format == "channels_first":
        expected = to_channels_first(expected)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_channel_attention_without_bias():
    x = RNG.standard_normal((2, 4, 4, 6))
    w1, _, w2, _ = se_weights(6, 2)
    expected = np_channel_attention(x, w1, np.zeros(2), w2, np.zeros(6))
    got = ops.channel_attention(x, w1, None, w2, None).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_eca_matches_numpy(data_format, k):
    x = RNG.standard_normal((2, 3, 4, 10))
    w = RNG.standard_normal(k)
    expected = np_eca(x, w)
    inputs = x if data_format == "channels_last" else to_channels_first(x)
    got = ops.efficient_channel_attention(
        inputs, w.reshape(k, 1, 1), data_format=data_format
    ).numpy()
    if data_format == "channels_first":
        expected = to_channels_first(expected)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("mode", ["sigmoid", "softmax"])
@pytest.mark.parametrize("kernel_shape", [(7, 7), (3, 2)])
def test_spatial_attention_matches_numpy(data_format, mode, kernel_shape):
    x = RNG.standard_normal((2, 6, 5, 4))
    kernel = RNG.standard_normal((*kernel_shape, 2, 1))
    bias = RNG.standard_normal(1)
    expected = np_spatial(x, kernel, bias, mode)
    inputs = x if data_format == "channels_last" else to_channels_first(x)
    got = ops.spatial_attention(inputs, kernel, bias, mode=mode, data_format=data_format).numpy()
    if data_format == "channels_first":
        expected = to_channels_first(expected)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_softmax_weights_sum_to_one_per_image():
    x = np.ones((3, 4, 5, 2))
    kernel = RNG.standard_normal((3, 3, 2, 1))
    # On a map of ones, output = weights (every channel): each image's weights sum to 1.
    y = ops.spatial_attention(x, kernel, None, mode="softmax").numpy()
    np.testing.assert_allclose(y[..., 0].sum(axis=(1, 2)), np.ones(3), rtol=1e-12)


def test_unknown_batch_and_spatial_sizes_under_xla():
    kernel = tf.constant(RNG.standard_normal((7, 7, 2, 1)), tf.float32)
    w = tf.constant(RNG.standard_normal((3, 1, 1)), tf.float32)

    @tf.function(
        jit_compile=True, input_signature=[tf.TensorSpec((None, None, None, 8), tf.float32)]
    )
    def f(t):
        t = ops.efficient_channel_attention(t, w)
        return ops.spatial_attention(t, kernel, None, mode="softmax")

    x = RNG.standard_normal((2, 5, 7, 8)).astype("float32")
    w_np = w.numpy().reshape(3).astype("float64")
    expected = np_spatial(
        np_eca(x.astype("float64"), w_np), kernel.numpy().astype("float64"), 0.0, "softmax"
    )
    np.testing.assert_allclose(f(x).numpy(), expected, rtol=1e-4, atol=1e-6)


def test_bad_mode_and_pooling():
    x = tf.zeros((1, 4, 4, 2))
    with pytest.raises(ValueError, match="`mode`"):
        ops.spatial_attention(x, tf.zeros((3, 3, 2, 1)), mode="tanh")
    with pytest.raises(ValueError, match="`pooling`"):
        ops.squeeze_excitation(
            x, *[tf.zeros(s) for s in ((2, 1), (1,), (1, 2), (2,))], pooling="max"
        )


# --- sizing rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "channels, expected",
    # By hand: t = int(|log2 C + 1| / 2), odd or +1, at least 3.
    [(1, 3), (8, 3), (16, 3), (32, 3), (64, 3), (128, 5), (256, 5), (512, 5), (1024, 5), (2048, 7)],
)
def test_eca_kernel_size_by_hand(channels, expected):
    assert ops.eca_kernel_size(channels) == expected


def test_eca_kernel_size_other_gamma_b():
    # C = 256, gamma = 1, b = 0: t = 8 -> 9.  C = 64, gamma = 1, b = 1: t = 7 -> 7.
    assert ops.eca_kernel_size(256, gamma=1, b=0) == 9
    assert ops.eca_kernel_size(64, gamma=1, b=1) == 7


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 4096), st.sampled_from([1.0, 1.5, 2.0, 3.0]), st.integers(0, 3))
def test_eca_kernel_size_properties(channels, gamma, b):
    k = ops.eca_kernel_size(channels, gamma, b)
    t = int(abs(math.log2(channels) + b) / gamma)
    assert k % 2 == 1 and k >= 3 and k in (t, t + 1, 3)


@pytest.mark.parametrize(
    "channels, ratio, divisor, expected",
    [(64, 0.25, 8, 16), (32, 0.25, 8, 8), (24, 0.25, 8, 8), (96, 1 / 16, 8, 8), (100, 0.25, 8, 24)],
)
def test_reduced_channels_by_hand(channels, ratio, divisor, expected):
    # 100 * 0.25 = 25 -> nearest multiple of 8 is 24 (within 10%).
    assert ops.reduced_channels(channels, ratio, divisor) == expected


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 2048), st.floats(0.01, 1.0), st.sampled_from([1, 4, 8, 16]))
def test_reduced_channels_properties(channels, ratio, divisor):
    r = ops.reduced_channels(channels, ratio, divisor)
    assert r == make_divisible(channels * ratio, divisor)
    assert r % divisor == 0 and r >= divisor and r >= 0.9 * channels * ratio


def test_eca_kernel_size_rejects_bad_channels():
    with pytest.raises(ValueError, match="`channels`"):
        ops.eca_kernel_size(0)
