"""ChannelAttention, SpatialAttention and CBAM: sizes by hand, NumPy oracles, plain Keras, contract."""

import keras
import numpy as np
import pytest

from keras_cnn_ext.layers import CBAM, ChannelAttention, SpatialAttention
from keras_cnn_ext.testing import CONTRACT_CHECKS, LayerSpec, run_contract_check

SPECS = {
    "channel_last": LayerSpec(
        ChannelAttention,
        {"ratio": 0.25},
        input_shape=(2, 4, 4, 16),
        expected_output_shape=(2, 4, 4, 16),
        expected_trainable_weights=4,
        expected_non_trainable_weights=0,
    ),
    "spatial_sigmoid_last": LayerSpec(
        SpatialAttention,
        {"kernel_size": 3},
        input_shape=(2, 5, 5, 4),
        expected_output_shape=(2, 5, 5, 4),
        expected_trainable_weights=2,
    ),
    "spatial_softmax_first": LayerSpec(
        SpatialAttention,
        {"mode": "softmax", "data_format": "channels_first"},
        input_shape=(2, 4, 6, 6),
        expected_output_shape=(2, 4, 6, 6),
        expected_trainable_weights=2,
    ),
    "cbam_last": LayerSpec(
        CBAM,
        {"ratio": 0.25, "kernel_size": 3},
        input_shape=(2, 4, 4, 16),
        expected_output_shape=(2, 4, 4, 16),
        expected_trainable_weights=6,
        expected_non_trainable_weights=0,
    ),
    "cbam_softmax_first": LayerSpec(
        CBAM,
        {"ratio": 0.5, "mode": "softmax", "use_bias": False, "data_format": "channels_first"},
        input_shape=(2, 8, 5, 5),
        expected_output_shape=(2, 8, 5, 5),
        expected_trainable_weights=3,
    ),
}


@pytest.mark.parametrize("check", CONTRACT_CHECKS)
@pytest.mark.parametrize("spec", list(SPECS))
def test_contract(spec, check):
    run_contract_check(check, SPECS[spec])


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def random_weights(layer, seed):
    rng = np.random.default_rng(seed)
    layer.set_weights(
        [rng.standard_normal(tuple(w.shape)).astype("float32") for w in layer.weights]
    )
    return [w.numpy() for w in layer.weights]


def np_channel(x, w1, b1, w2, b2):
    def mlp(d):
        return np.maximum(d @ w1 + b1, 0) @ w2 + b2

    return x * sigmoid(mlp(x.mean(axis=(1, 2))) + mlp(x.max(axis=(1, 2))))[:, None, None, :]


def np_spatial(x, kernel, bias, mode="sigmoid"):
    d = np.stack([x.mean(-1), x.max(-1)], -1)
    kh, kw = kernel.shape[:2]
    padded = np.pad(d, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    h, w = x.shape[1:3]
    z = (
        sum(
            padded[:, i : i + h, j : j + w] @ kernel[i, j, :, 0]
            for i in range(kh)
            for j in range(kw)
        )
        + bias
    )
    if mode == "sigmoid":
        a = sigmoid(z)
    else:
        e = np.exp(z - z.max(axis=(1, 2), keepdims=True))
        a = e / e.sum(axis=(1, 2), keepdims=True)
    return x * a[..., None]


def test_parameter_counts_by_hand():
    # C = 64, ratio 1/16 -> 4 hidden: 64*4 + 4 + 4*64 + 64 = 580; spatial 7*7*2 + 1 = 99.
    layer = CBAM()
    layer.build((None, 8, 8, 64))
    assert layer.channel_attention.count_params() == 580
    assert layer.spatial_attention.count_params() == 99
    assert layer.count_params() == 679
    no_bias = CBAM(use_bias=False)
    no_bias.build((None, 8, 8, 64))
    assert no_bias.count_params() == 64 * 4 * 2 + 98


def test_channel_attention_matches_numpy():
    x = np.random.default_rng(5).standard_normal((2, 3, 4, 32)).astype("float32")
    layer = ChannelAttention()  # 32 / 16 = 2 hidden
    layer.build(x.shape)
    weights = random_weights(layer, 6)
    assert weights[0].shape == (32, 2)
    np.testing.assert_allclose(np.asarray(layer(x)), np_channel(x, *weights), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["sigmoid", "softmax"])
def test_spatial_attention_matches_numpy(mode):
    x = np.random.default_rng(7).standard_normal((2, 9, 8, 3)).astype("float32")
    layer = SpatialAttention(mode=mode)
    layer.build(x.shape)
    kernel, bias = random_weights(layer, 8)
    expected = np_spatial(x, kernel, bias, mode)
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_cbam_is_channel_then_spatial(data_format):
    x = np.random.default_rng(9).standard_normal((2, 6, 6, 16)).astype("float32")
    layer = CBAM(ratio=0.25, kernel_size=5, data_format=data_format)
    inputs = x if data_format == "channels_last" else np.transpose(x, (0, 3, 1, 2))
    layer.build(inputs.shape)
    w1, b1, w2, b2, kernel, bias = random_weights(layer, 10)
    expected = np_spatial(np_channel(x, w1, b1, w2, b2), kernel, bias)
    if data_format == "channels_first":
        expected = np.transpose(expected, (0, 3, 1, 2))
    np.testing.assert_allclose(np.asarray(layer(inputs)), expected, rtol=1e-4, atol=1e-5)


def test_spatial_matches_plain_keras_layers():
    x = np.random.default_rng(11).standard_normal((2, 8, 8, 6)).astype("float32")
    inputs = keras.Input((8, 8, 6))
    avg = keras.layers.Lambda(lambda t: keras.ops.mean(t, axis=-1, keepdims=True))(inputs)
    mx = keras.layers.Lambda(lambda t: keras.ops.max(t, axis=-1, keepdims=True))(inputs)
    s = keras.layers.Concatenate()([avg, mx])
    s = keras.layers.Conv2D(1, 7, padding="same", activation="sigmoid")(s)
    plain = keras.Model(inputs, keras.layers.Multiply()([inputs, s]))
    layer = SpatialAttention()
    layer.build(x.shape)
    conv = plain.layers[4]
    layer.set_weights([conv.kernel.numpy(), conv.bias.numpy()])
    np.testing.assert_allclose(np.asarray(layer(x)), np.asarray(plain(x)), rtol=1e-5, atol=1e-6)


def test_config_round_trip_keeps_parts():
    layer = CBAM(
        ratio=0.5, divisor=4, kernel_size=(3, 5), mode="softmax", gate_activation="hard_sigmoid"
    )
    clone = CBAM.from_config(layer.get_config())
    assert clone.spatial_attention.kernel_size == (3, 5)
    assert clone.spatial_attention.mode == "softmax"
    assert clone.channel_attention.divisor == 4
    assert clone.get_config() == layer.get_config()


@pytest.mark.parametrize(
    "cls, kwargs, name",
    [
        (ChannelAttention, {"ratio": 0}, "`ratio`"),
        (CBAM, {"ratio": -1}, "`ratio`"),
        (SpatialAttention, {"kernel_size": 0}, "`kernel_size`"),
        (SpatialAttention, {"mode": "tanh"}, "`mode`"),
        (CBAM, {"mode": "relu"}, "`mode`"),
        (CBAM, {"data_format": "x"}, "`data_format`"),
    ],
)
def test_bad_arguments(cls, kwargs, name):
    with pytest.raises((ValueError, TypeError), match=name):
        cls(**kwargs)


def test_wrong_rank():
    for cls in (ChannelAttention, SpatialAttention, CBAM):
        with pytest.raises(ValueError):
            cls()(np.zeros((2, 8, 3), "float32"))


def test_spatial_attention_accepts_unknown_channels():
    inputs = keras.Input((6, 6, None))
    outputs = SpatialAttention(3)(inputs)
    model = keras.Model(inputs, outputs)
    for channels in (1, 5):
        x = np.ones((1, 6, 6, channels), "float32")
        assert model(x).shape == x.shape
    with pytest.raises(ValueError, match="channel"):
        ChannelAttention().build((None, 6, 6, None))
