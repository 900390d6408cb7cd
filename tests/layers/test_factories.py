"""Tests for create_norm, create_activation and create_pooling."""

import keras
import numpy as np
import pytest

import keras_cnn_ext.layers as ext_layers
from keras_cnn_ext.layers import create_activation, create_norm, create_pooling


@pytest.mark.parametrize(
    "name, cls",
    [
        ("batch", keras.layers.BatchNormalization),
        ("sync_batch", keras.layers.BatchNormalization),
        ("layer", keras.layers.LayerNormalization),
        ("group", keras.layers.GroupNormalization),
        (None, keras.layers.Identity),
        (keras.layers.BatchNormalization, keras.layers.BatchNormalization),
        ("BatchNormalization", keras.layers.BatchNormalization),
    ],
)
def test_create_norm(name, cls):
    layer = create_norm(name, axis=-1, epsilon=1e-5, groups=2, name="n")
    assert type(layer) is cls and layer.name == "n"
    if name in ("batch", "sync_batch"):
        assert layer.epsilon == 1e-5 and layer.synchronized == (name == "sync_batch")
    y = layer(np.ones((2, 4, 4, 4), "float32"))
    assert tuple(y.shape) == (2, 4, 4, 4)


def test_create_norm_channels_first_axis():
    layer = create_norm("layer", axis=1)
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 4)).astype("float32")
    y = np.asarray(layer(x))
    np.testing.assert_allclose(y.mean(axis=1), 0, atol=1e-5)


@pytest.mark.parametrize("name", ["relu", "relu6", "hard_swish", "gelu", "silu", "mish"])
def test_create_activation_names(name):
    layer = create_activation(name, name="a")
    x = np.linspace(-3, 3, 7, dtype="float32")
    np.testing.assert_allclose(layer(x), keras.activations.get(name)(x), atol=1e-6)


def test_create_activation_other_forms():
    assert isinstance(create_activation(None), keras.layers.Identity)
    assert isinstance(create_activation(keras.layers.PReLU), keras.layers.PReLU)
    layer = create_activation(lambda t: 2 * t)
    np.testing.assert_allclose(layer(np.ones(3, "float32")), 2.0)
    with pytest.raises(ValueError, match="layer instance"):
        create_activation(keras.layers.ReLU())


@pytest.mark.parametrize(
    "name, kwargs, shape",
    [
        ("max", {}, (2, 3)),
        ("avg", {}, (2, 3)),
        ("max", {"pool_size": 3, "strides": 2, "padding": "same"}, (2, 4, 4, 3)),
        ("avg", {"pool_size": 2}, (2, 4, 4, 3)),
        ("avg", {"keepdims": True}, (2, 1, 1, 3)),
    ],
)
def test_create_pooling_keras(name, kwargs, shape):
    y = create_pooling(name, **kwargs)(np.ones((2, 8, 8, 3), "float32"))
    assert tuple(y.shape) == shape


@pytest.mark.parametrize(
    "name, kwargs, shape, cls",
    [
        ("adaptive_avg", {"output_size": 3}, (2, 3, 3, 3), "AdaptiveAveragePooling2D"),
        ("adaptive_max", {}, (2, 1, 1, 3), "AdaptiveMaxPooling2D"),
        ("fractional", {"pooling_ratio": 2.0}, (2, 4, 4, 3), "FractionalMaxPooling2D"),
    ],
)
def test_create_pooling_package_layers(name, kwargs, shape, cls):
    if not hasattr(ext_layers, cls):
        pytest.skip(f"{cls} is not in this checkout yet")
    layer = create_pooling(name, **kwargs)
    assert type(layer) is getattr(ext_layers, cls)
    assert tuple(layer(np.ones((2, 8, 8, 3), "float32")).shape) == shape


@pytest.mark.parametrize(
    "factory, value, match",
    [
        (create_norm, "instance", "`norm` must be one of"),
        (create_activation, "relu7", "`activation` must be a Keras activation name"),
        (create_pooling, "median", "`pooling` must be one of"),
    ],
)
def test_unknown_names(factory, value, match):
    with pytest.raises(ValueError, match=match):
        factory(value)
