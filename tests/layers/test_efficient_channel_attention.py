"""EfficientChannelAttention: kernel rule by hand, outputs against NumPy and Conv1D, contract."""

import keras
import numpy as np
import pytest

from keras_cnn_ext.layers import EfficientChannelAttention
from keras_cnn_ext.testing import CONTRACT_CHECKS, LayerSpec, run_contract_check

SPECS = {
    "adaptive_first": LayerSpec(
        EfficientChannelAttention,
        {"data_format": "channels_first"},
        input_shape=(2, 16, 4, 4),
        expected_output_shape=(2, 16, 4, 4),
        expected_trainable_weights=1,
        expected_non_trainable_weights=0,
    ),
    "k5_last": LayerSpec(
        EfficientChannelAttention,
        {"kernel_size": 5},
        input_shape=(2, 4, 4, 12),
        expected_output_shape=(2, 4, 4, 12),
        expected_trainable_weights=1,
    ),
}


@pytest.mark.parametrize("check", CONTRACT_CHECKS)
@pytest.mark.parametrize("spec", list(SPECS))
def test_contract(spec, check):
    run_contract_check(check, SPECS[spec])


@pytest.mark.parametrize(
    "channels, k",
    # t = int(|log2 C + 1| / 2): 16 -> 2 -> 3, 64 -> 3, 128 -> 4 -> 5, 256 -> 4 -> 5, 512 -> 5,
    # 1024 -> 5, 2048 -> 6 -> 7; 4 -> 1 -> raised to the minimum 3.
    [(4, 3), (16, 3), (64, 3), (128, 5), (256, 5), (512, 5), (1024, 5), (2048, 7)],
)
def test_adaptive_kernel_size_by_hand(channels, k):
    layer = EfficientChannelAttention()
    layer.build((None, 2, 2, channels))
    assert layer.kernel.shape == (k, 1, 1)
    assert layer.count_params() == k


def test_explicit_kernel_size_and_gamma_b():
    layer = EfficientChannelAttention(kernel_size=9)
    layer.build((None, 2, 2, 64))
    assert layer.count_params() == 9
    layer = EfficientChannelAttention(gamma=1, b=0)  # 256: t = 8 -> 9
    layer.build((None, 2, 2, 256))
    assert layer.count_params() == 9


def test_matches_numpy_with_set_weights():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 5, 64)).astype("float32")
    layer = EfficientChannelAttention()
    layer.build(x.shape)
    w = np.array([0.5, -1.0, 2.0], "float32")
    layer.set_weights([w.reshape(3, 1, 1)])
    p = np.pad(x.mean(axis=(1, 2)), ((0, 0), (1, 1)))
    z = w[0] * p[:, :-2] + w[1] * p[:, 1:-1] + w[2] * p[:, 2:]
    expected = x / (1 + np.exp(-z))[:, None, None, :]
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-5, atol=1e-6)


def test_matches_plain_keras_conv1d():
    x = np.random.default_rng(4).standard_normal((2, 4, 4, 32)).astype("float32")
    inputs = keras.Input((4, 4, 32))
    s = keras.layers.GlobalAveragePooling2D()(inputs)
    s = keras.layers.Reshape((32, 1))(s)
    s = keras.layers.Conv1D(1, 5, padding="same", use_bias=False, activation="sigmoid")(s)
    s = keras.layers.Reshape((1, 1, 32))(s)
    plain = keras.Model(inputs, keras.layers.Multiply()([inputs, s]))
    layer = EfficientChannelAttention(kernel_size=5)
    layer.build(x.shape)
    layer.set_weights([plain.layers[3].kernel.numpy()])
    np.testing.assert_allclose(np.asarray(layer(x)), np.asarray(plain(x)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"kernel_size": 4}, "`kernel_size`"),
        ({"kernel_size": 0}, "`kernel_size`"),
        ({"kernel_size": 2.5}, "`kernel_size`"),
        ({"gamma": 0}, "`gamma`"),
        ({"b": "1"}, "`b`"),
        ({"data_format": "NCHW"}, "`data_format`"),
    ],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises((ValueError, TypeError), match=name):
        EfficientChannelAttention(**kwargs)


def test_wrong_rank():
    with pytest.raises(ValueError):
        EfficientChannelAttention()(np.zeros((2, 8, 3), "float32"))
