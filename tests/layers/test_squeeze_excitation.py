"""SqueezeExcitation: sizing by hand, outputs against NumPy and plain Keras layers, contract."""

import keras
import numpy as np
import pytest

from keras_cnn_ext.layers import SqueezeExcitation
from keras_cnn_ext.testing import CONTRACT_CHECKS, LayerSpec, run_contract_check

SPECS = {
    "hard_sigmoid_last": LayerSpec(
        SqueezeExcitation,
        {"ratio": 0.5, "divisor": 4, "gate_activation": "hard_sigmoid"},
        input_shape=(2, 5, 5, 8),
        expected_output_shape=(2, 5, 5, 8),
        expected_trainable_weights=4,
        expected_non_trainable_weights=0,
        # Gate logits must reach the hard sigmoid's linear zone (|z| < 3) for gradients to flow.
        input_range=(-2.0, 2.0),
    ),
    "sigmoid_first": LayerSpec(
        SqueezeExcitation,
        {"ratio": 0.25, "data_format": "channels_first"},
        input_shape=(2, 16, 4, 4),
        expected_output_shape=(2, 16, 4, 4),
        expected_trainable_weights=4,
    ),
}


@pytest.mark.parametrize("check", CONTRACT_CHECKS)
@pytest.mark.parametrize("spec", list(SPECS))
def test_contract(spec, check):
    run_contract_check(check, SPECS[spec])


@pytest.mark.parametrize(
    "channels, kwargs, hidden",
    [
        (64, {}, 16),  # 64 * 0.25 = 16
        (32, {"ratio": 1 / 16}, 8),  # 2 -> rounded up to the divisor 8
        (100, {"ratio": 0.25}, 24),  # 25 -> 24 (within 10%)
        (64, {"ratio": 1 / 16, "divisor": 1}, 4),
        (64, {"ratio": 1 / 16, "divisor": 1, "min_channels": 6}, 6),
        (64, {"reduced_channels": 5}, 5),
    ],
)
def test_parameter_count_by_hand(channels, kwargs, hidden):
    layer = SqueezeExcitation(**kwargs)
    layer.build((None, 7, 7, channels))
    # Two fully connected layers with biases: C*R + R + R*C + C.
    assert layer.count_params() == 2 * channels * hidden + hidden + channels
    assert layer.reduce_kernel.shape == (channels, hidden)


def test_without_bias_parameter_count():
    layer = SqueezeExcitation(use_bias=False)
    layer.build((None, 4, 4, 64))
    assert layer.count_params() == 2 * 64 * 16
    assert len(layer.trainable_weights) == 2


@pytest.mark.parametrize("gate", ["sigmoid", "hard_sigmoid"])
def test_matches_numpy_with_set_weights(gate):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 5, 16)).astype("float32")
    layer = SqueezeExcitation(ratio=0.5, gate_activation=gate)
    layer.build(x.shape)
    w1, b1, w2, b2 = (
        rng.standard_normal(tuple(v.shape)).astype("float32")
        for v in (layer.reduce_kernel, layer.reduce_bias, layer.expand_kernel, layer.expand_bias)
    )
    layer.reduce_kernel.assign(w1)
    layer.reduce_bias.assign(b1)
    layer.expand_kernel.assign(w2)
    layer.expand_bias.assign(b2)
    z = np.maximum(x.mean(axis=(1, 2)) @ w1 + b1, 0) @ w2 + b2
    s = 1 / (1 + np.exp(-z)) if gate == "sigmoid" else np.clip(z / 6 + 0.5, 0, 1)
    np.testing.assert_allclose(np.asarray(layer(x)), x * s[:, None, None, :], rtol=1e-5, atol=1e-6)


def test_matches_plain_keras_layers():
    # The same computation as GlobalAveragePooling2D -> Conv2D 1x1 -> ReLU -> Conv2D 1x1 ->
    # sigmoid -> Multiply, with the weights copied over.
    x = np.random.default_rng(2).standard_normal((2, 6, 6, 24)).astype("float32")
    inputs = keras.Input((6, 6, 24))
    s = keras.layers.GlobalAveragePooling2D(keepdims=True)(inputs)
    s = keras.layers.Conv2D(8, 1, activation="relu")(s)
    s = keras.layers.Conv2D(24, 1, activation="sigmoid")(s)
    plain = keras.Model(inputs, keras.layers.Multiply()([inputs, s]))
    layer = SqueezeExcitation(ratio=1 / 3)
    layer.build(x.shape)
    conv1, conv2 = plain.layers[2], plain.layers[3]
    layer.set_weights(
        [
            conv1.kernel.numpy()[0, 0],
            conv1.bias.numpy(),
            conv2.kernel.numpy()[0, 0],
            conv2.bias.numpy(),
        ]
    )
    np.testing.assert_allclose(np.asarray(layer(x)), np.asarray(plain(x)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("ratio", [0, 0.0, -0.25])
def test_ratio_leaving_no_channels(ratio):
    with pytest.raises(ValueError, match="`ratio`"):
        SqueezeExcitation(ratio=ratio)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"ratio": "a"}, "`ratio`"),
        ({"reduced_channels": 0}, "`reduced_channels`"),
        ({"divisor": 0}, "`divisor`"),
        ({"min_channels": -1}, "`min_channels`"),
        ({"data_format": "nhwc"}, "`data_format`"),
    ],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises((ValueError, TypeError), match=name):
        SqueezeExcitation(**kwargs)


def test_bad_gate_activation():
    with pytest.raises(ValueError):
        SqueezeExcitation(gate_activation="no_such_gate")


def test_wrong_rank_and_unknown_channels():
    with pytest.raises(ValueError):
        SqueezeExcitation()(np.zeros((2, 8, 3), "float32"))
    with pytest.raises(ValueError, match="channel"):
        SqueezeExcitation().build((None, 4, 4, None))
