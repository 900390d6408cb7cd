"""Tests for ResidualBlock: layouts, shortcuts, parameter counts, the layer contract."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_cnn_ext.layers import DropPath, ResidualBlock, SqueezeExcitation
from keras_cnn_ext.testing import CONTRACT_CHECKS, LayerSpec, run_contract_check

SPECS = {
    # keras.applications' v1 bottleneck with a projection, SE attention and stochastic depth.
    "bottleneck_v1_se_droppath": LayerSpec(
        ResidualBlock,
        {"filters": 4, "strides": 2, "attention": "se", "drop_path_rate": 0.5, "seed": 3},
        input_shape=(2, 6, 6, 8),
        expected_output_shape=(2, 3, 3, 16),
        random=True,
        gradient_input_shape=(1, 3, 3, 8),
    ),
    # Pre-activation basic block with option-A (zero-padded) shortcut and dilation.
    "basic_v2_zero_pad": LayerSpec(
        ResidualBlock,
        {
            "filters": 12,
            "block_type": "basic",
            "version": "v2",
            "shortcut": "zero_pad",
            "dilation_rate": 2,
        },
        input_shape=(2, 6, 6, 8),
        expected_output_shape=(2, 6, 6, 12),
        training_changes_output=True,
        gradient_input_shape=(1, 3, 3, 8),
    ),
}


@pytest.mark.parametrize("check", CONTRACT_CHECKS)
@pytest.mark.parametrize("spec", sorted(SPECS))
def test_contract(spec, check):
    run_contract_check(check, SPECS[spec])


def _conv_params(k, c_in, c_out, bias):
    return k * k * c_in * c_out + (c_out if bias else 0)


def _bn_params(c):
    return 4 * c


def test_bottleneck_v1_params_by_hand():
    # keras.applications layout: every conv has a bias, projection conv + BN on the shortcut.
    block = ResidualBlock(16, strides=2, use_bias=True)
    block.build((None, 8, 8, 32))
    expected = (
        _conv_params(1, 32, 64, True)
        + _bn_params(64)  # shortcut
        + _conv_params(1, 32, 16, True)
        + _bn_params(16)
        + _conv_params(3, 16, 16, True)
        + _bn_params(16)
        + _conv_params(1, 16, 64, True)
        + _bn_params(64)
    )
    assert block.count_params() == expected


def test_bottleneck_v2_params_by_hand():
    # keras.applications v2: convs followed by BN have no bias, no BN on the projection.
    block = ResidualBlock(16, version="v2", use_bias=True, shortcut="projection")
    block.build((None, 8, 8, 32))
    expected = (
        _bn_params(32)  # pre-activation
        + _conv_params(1, 32, 64, True)
        + _conv_params(1, 32, 16, False)
        + _bn_params(16)
        + _conv_params(3, 16, 16, False)
        + _bn_params(16)
        + _conv_params(1, 16, 64, True)
    )
    assert block.count_params() == expected


def test_basic_v1_matches_functional_keras():
    """The block computes what the same layers wired functionally compute."""
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 4)).astype("float32")
    block = ResidualBlock(8, block_type="basic", strides=2, name="b")
    y = block(x, training=False)
    layers = {layer.name: layer for layer in block._flatten_layers(include_self=False)}
    inputs = keras.Input((8, 8, 4))
    s = layers["b_0_bn"](layers["b_0_conv"](inputs))
    h = layers["b_1_relu"](layers["b_1_bn"](layers["b_1_conv"](layers["b_1_pad"](inputs))))
    h = layers["b_2_bn"](layers["b_2_conv"](h))
    reference = keras.Model(inputs, keras.layers.ReLU()(s + h))
    np.testing.assert_allclose(reference(x, training=False), y, atol=1e-6)


def test_stride_placement_v1_v15():
    v1 = ResidualBlock(4, strides=2, name="a")
    v15 = ResidualBlock(4, strides=2, version="v1.5", name="b")
    v1.build((None, 8, 8, 16))
    v15.build((None, 8, 8, 16))
    assert v1.convs[0].strides == (2, 2) and v1.convs[1].strides == (1, 1)
    assert v15.convs[0].strides == (1, 1) and v15.convs[1].strides == (2, 2)
    assert v1.count_params() == v15.count_params()


def test_zero_pad_shortcut_values():
    """Option A: the shortcut is the subsampled input with zero channels padded on both sides."""
    block = ResidualBlock(8, block_type="basic", strides=2, shortcut="zero_pad")
    x = np.random.default_rng(1).normal(size=(1, 4, 4, 4)).astype("float32")
    block(x)
    for conv in block.convs:  # a zero branch leaves only the shortcut (through the final ReLU)
        conv.kernel.assign(tf.zeros_like(conv.kernel))
    for norm in block.norms:
        norm.beta.assign(tf.zeros_like(norm.beta))
    y = block(x, training=False).numpy()
    expected = np.maximum(np.pad(x[:, ::2, ::2], ((0, 0), (0, 0), (0, 0), (2, 2))), 0)
    np.testing.assert_allclose(y, expected, atol=1e-6)
    assert block.shortcut_conv is None


def test_identity_shortcut_subsamples():
    block = ResidualBlock(8, block_type="basic", version="v2", strides=2, shortcut="identity")
    x = np.random.default_rng(2).normal(size=(1, 5, 5, 8)).astype("float32")
    y = block(x)
    assert tuple(y.shape) == (1, 3, 3, 8)
    assert block.shortcut_conv is None


def test_attention_and_drop_path_sublayers():
    block = ResidualBlock(4, attention="se", drop_path_rate=0.1, name="blk")
    block.build((None, 8, 8, 16))
    assert isinstance(block.attention_layer, SqueezeExcitation)
    assert isinstance(block.drop_path, DropPath)
    assert ResidualBlock(4).drop_path is None


def test_drop_path_drops_whole_branch():
    # rate close to 1: most samples keep only their shortcut.
    block = ResidualBlock(4, block_type="basic", drop_path_rate=0.99, seed=0)
    x = np.abs(np.random.default_rng(3).normal(size=(8, 4, 4, 4))).astype("float32")
    y = block(x, training=True).numpy()
    kept_only_shortcut = [np.allclose(y[i], x[i]) for i in range(8)]  # relu(x) == x for x >= 0
    assert sum(kept_only_shortcut) >= 6


def test_channels_first_matches_channels_last():
    x = np.random.default_rng(4).normal(size=(2, 6, 6, 8)).astype("float32")
    last = ResidualBlock(4, strides=2, version="v1.5")
    first = ResidualBlock(4, strides=2, version="v1.5", data_format="channels_first")
    y_last = last(x)
    # TF's CPU kernels take NHWC only; XLA compiles NCHW convolutions.
    run_first = tf.function(lambda t: first(t, training=False), jit_compile=True)
    run_first(np.transpose(x, (0, 3, 1, 2)))
    first.set_weights(last.get_weights())
    y_first = run_first(np.transpose(x, (0, 3, 1, 2)))
    np.testing.assert_allclose(np.transpose(y_first, (0, 2, 3, 1)), y_last, atol=1e-5)


@settings(max_examples=15, deadline=None)
@given(
    size=st.integers(1, 9),
    strides=st.integers(1, 3),
    block_type=st.sampled_from(["basic", "bottleneck"]),
    version=st.sampled_from(["v1", "v1.5", "v2"]),
)
def test_output_shape_property(size, strides, block_type, version):
    block = ResidualBlock(2, block_type=block_type, version=version, strides=strides)
    y = block(np.zeros((1, size, size + 1, 3), "float32"))
    assert tuple(y.shape) == block.compute_output_shape((1, size, size + 1, 3))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"filters": 0}, "`filters`"),
        ({"filters": 4, "block_type": "wide"}, "`block_type`"),
        ({"filters": 4, "version": "v3"}, "`version`"),
        ({"filters": 4, "shortcut": "B"}, "`shortcut`"),
        ({"filters": 4, "kernel_size": 4}, "`kernel_size`"),
        ({"filters": 4, "drop_path_rate": 1.0}, "`drop_path_rate`"),
        ({"filters": 4, "norm": "instance"}, "`norm`"),
        ({"filters": 4, "activation": "nope"}, "`activation`"),
        ({"filters": 4, "attention": "xyz"}, "`attention`"),
        ({"filters": 4, "block_type": "basic", "strides": 2, "dilation_rate": 2}, "`strides`"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ResidualBlock(**kwargs)


def test_bad_input_shapes():
    with pytest.raises(ValueError, match="rank-4"):
        ResidualBlock(4).build((None, 8, 8))
    with pytest.raises(ValueError, match="identity"):
        ResidualBlock(4, shortcut="identity").build((None, 8, 8, 8))
    with pytest.raises(ValueError, match="zero_pad"):
        ResidualBlock(1, shortcut="zero_pad").build((None, 8, 8, 8))
