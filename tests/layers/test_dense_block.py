"""Tests for DenseBlock and TransitionBlock: channel growth, layouts, the layer contract."""

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_cnn_ext.layers import DenseBlock, TransitionBlock
from keras_cnn_ext.testing import CONTRACT_CHECKS, LayerSpec, run_contract_check

SPECS = {
    "dense_block_dropout": LayerSpec(
        DenseBlock,
        {"num_layers": 2, "growth_rate": 4, "dropout_rate": 0.2, "seed": 1},
        input_shape=(2, 5, 5, 6),
        expected_output_shape=(2, 5, 5, 14),
        random=True,
        gradient_input_shape=(1, 3, 3, 6),
    ),
    "transition": LayerSpec(
        TransitionBlock,
        {"compression": 0.5},
        input_shape=(2, 6, 6, 8),
        expected_output_shape=(2, 3, 3, 4),
        training_changes_output=True,
        gradient_input_shape=(1, 4, 4, 8),
    ),
}


@pytest.mark.parametrize("check", CONTRACT_CHECKS)
@pytest.mark.parametrize("spec", sorted(SPECS))
def test_contract(spec, check):
    run_contract_check(check, SPECS[spec])


@settings(max_examples=10, deadline=None)
@given(
    k0=st.integers(1, 12),
    growth=st.integers(1, 6),
    layers=st.integers(1, 4),
    bottleneck=st.booleans(),
)
def test_channels_after_each_layer(k0, growth, layers, bottleneck):
    """Dense layer l outputs k0 + k * l channels (Huang et al.)."""
    block = DenseBlock(layers, growth_rate=growth, bottleneck=bottleneck)
    x = np.random.default_rng(0).normal(size=(1, 3, 3, k0)).astype("float32")
    y = block(x)
    assert y.shape[-1] == k0 + growth * layers
    assert block.compute_output_shape((None, 3, 3, k0)) == (None, 3, 3, k0 + growth * layers)
    # Layer l (1-based) reads k0 + k * (l - 1) channels: its first normalisation has that size.
    for index, norm in enumerate(block.norms0, start=1):
        assert norm.gamma.shape[0] == k0 + growth * (index - 1)
    # The input passes through unchanged as the first channels.
    np.testing.assert_array_equal(y[..., :k0], x)


def test_params_by_hand():
    k0, k, layers = 8, 4, 3
    block = DenseBlock(layers, growth_rate=k)
    block.build((None, 6, 6, k0))
    expected = 0
    for index in range(layers):
        c = k0 + k * index
        expected += 4 * c + c * 4 * k + 4 * (4 * k) + 9 * 4 * k * k  # BN, 1x1, BN, 3x3
    assert block.count_params() == expected
    plain = DenseBlock(layers, growth_rate=k, bottleneck=False)
    plain.build((None, 6, 6, k0))
    assert plain.count_params() == sum(4 * (k0 + k * i) + 9 * (k0 + k * i) * k for i in range(3))


def test_matches_keras_applications_conv_block():
    """Same names and computation as keras.applications.densenet's conv_block."""
    from keras.src.applications.densenet import dense_block

    inputs = keras.Input((6, 6, 8))
    reference = keras.Model(inputs, dense_block(inputs, 2, name="conv2"))
    block = DenseBlock(2, growth_rate=32, name="conv2")
    x = np.random.default_rng(1).normal(size=(2, 6, 6, 8)).astype("float32")
    block(x)
    ours = {layer.name: layer for layer in block._flatten_layers(include_self=False)}
    for layer in reference.layers:
        if layer.weights:
            ours[layer.name].set_weights(layer.get_weights())
    np.testing.assert_allclose(block(x, training=False), reference(x, training=False), atol=1e-5)


def test_dropout_only_in_training():
    block = DenseBlock(2, growth_rate=4, dropout_rate=0.5, seed=0)
    x = np.random.default_rng(2).normal(size=(2, 4, 4, 4)).astype("float32")
    np.testing.assert_array_equal(block(x, training=False), block(x, training=False))
    assert not np.array_equal(block(x, training=True), block(x, training=True))


def test_transition_compression_floor():
    block = TransitionBlock(0.5)
    y = block(np.zeros((1, 5, 5, 7), "float32"))
    assert tuple(y.shape) == (1, 2, 2, 3)  # int(7 * 0.5), floor(5 / 2)


@pytest.mark.parametrize(
    "cls, kwargs, match",
    [
        (DenseBlock, {"num_layers": 0}, "`num_layers`"),
        (DenseBlock, {"num_layers": 2, "growth_rate": 0}, "`growth_rate`"),
        (DenseBlock, {"num_layers": 2, "dropout_rate": 1.5}, "`dropout_rate`"),
        (DenseBlock, {"num_layers": 2, "norm": "batchnorm2d"}, "`norm`"),
        (TransitionBlock, {"compression": 0.0}, "`compression`"),
        (TransitionBlock, {"compression": 1.5}, "`compression`"),
    ],
)
def test_bad_arguments(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_bad_input_shapes():
    with pytest.raises(ValueError, match="rank-4"):
        DenseBlock(2).build((None, 8, 8))
    with pytest.raises(ValueError, match="leaves no channels"):
        TransitionBlock(0.1).build((None, 8, 8, 4))
