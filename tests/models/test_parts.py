"""Pluggable parts of builders: names resolved by the package's factories."""

import keras
import pytest

from keras_cnn_ext.layers import factories
from keras_cnn_ext.models.parts import POOL_TYPES, make_activation, make_norm, make_pool


def test_pluggable_parts():
    assert make_norm(None, "n") is None
    assert make_activation(None, "a") is None
    assert isinstance(make_norm("batch", "n"), keras.layers.BatchNormalization)
    assert make_norm("batch", "n", data_format="channels_first").axis == 1
    assert isinstance(make_norm("group", "n", groups=2), keras.layers.GroupNormalization)
    assert isinstance(make_pool("avg", 2, 2, name="p"), keras.layers.AveragePooling2D)
    assert isinstance(
        make_pool(keras.layers.MaxPooling2D, 2, 2, name="p"), keras.layers.MaxPooling2D
    )
    with pytest.raises(ValueError, match="`pool_type`"):
        make_pool("median", 2, 2)
    with pytest.raises(ValueError, match="`pool_type`"):
        make_pool("adaptive_avg", 2, 2)  # pools to a size, not by a stride
    with pytest.raises(ValueError, match="`activation`"):
        make_activation("no_such_activation", "a")
    with pytest.raises(ValueError, match="`norm`"):
        make_norm("no_such_norm", "n")


def test_pool_types_are_the_factory_names_that_downsample():
    assert POOL_TYPES == ("max", "avg", "fractional")
    assert set(POOL_TYPES) | set(factories.ADAPTIVE_POOLINGS) == set(factories.POOLINGS)
