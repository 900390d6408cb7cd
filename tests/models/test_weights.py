"""Weights of builders: the `weights` file and copies between models of one architecture."""

import keras
import numpy as np
import pytest

from keras_cnn_ext.models.weights import check_weights, copy_weights, load_weights


def _small(kind, classes=3):
    x = keras.Input((6, 6, 2))
    y = keras.layers.Conv2D(4, 3, use_bias=False)(x)
    y = keras.layers.BatchNormalization()(y)
    if kind == "conv_head":
        y = keras.layers.GlobalAveragePooling2D(keepdims=True)(y)
        y = keras.layers.Conv2D(classes, 1)(y)
        y = keras.layers.Reshape((classes,))(y)
    else:
        y = keras.layers.GlobalAveragePooling2D()(y)
        y = keras.layers.Dense(classes)(y)
    return keras.Model(x, y)


def test_copy_weights_parity_and_reshape():
    rng = np.random.default_rng(0)
    source, target = _small("conv_head"), _small("dense_head")
    for w in source.weights:
        w.assign(rng.uniform(0.5, 1.5, size=w.shape).astype("float32"))
    copy_weights(source, target)
    x = rng.normal(size=(2, 6, 6, 2)).astype("float32")
    np.testing.assert_allclose(np.asarray(target(x)), np.asarray(source(x)), atol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        copy_weights(source, target, reshape=False)
    with pytest.raises(ValueError, match="has 7 variables"):
        copy_weights(source, keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))


def test_weights_file_round_trip_and_mismatch(tmp_path):
    model = _small("dense_head")
    path = str(tmp_path / "small.weights.h5")
    model.save_weights(path)
    assert check_weights(path) == path
    other = _small("dense_head")
    load_weights(other, path)
    for a, b in zip(model.weights, other.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="Could not load `weights` into model"):
        load_weights(_small("dense_head", classes=5), path)
    assert load_weights(other, None) is other
