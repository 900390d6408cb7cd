"""Classifier heads: shapes, values, and the pooling names the factory resolves."""

import keras
import numpy as np
import pytest

from keras_cnn_ext.layers import factories
from keras_cnn_ext.models.heads import (
    FLATTEN_HEAD_POOLINGS,
    HEAD_POOLINGS,
    classifier_head,
    head_pooling_layer,
)


@pytest.mark.parametrize(
    "kwargs,shape",
    [
        (dict(include_top=False), (None, 4, 4, 6)),
        (dict(include_top=False, pooling="avg"), (None, 6)),
        (dict(include_top=False, pooling="max"), (None, 6)),
        (dict(include_top=True, classes=5), (None, 5)),
        (dict(include_top=True, classes=5, flatten=True, hidden_units=(7,)), (None, 5)),
        (dict(include_top=True, classes=5, flatten=True, head_pooling="adaptive_max"), (None, 5)),
    ],
)
def test_classifier_head_shapes(kwargs, shape):
    x = keras.Input((4, 4, 6))
    kwargs.setdefault("head_size", (2, 2))
    assert classifier_head(x, **kwargs).shape == shape


def test_classifier_head_values():
    x = keras.Input((2, 2, 3))
    model = keras.Model(x, classifier_head(x, include_top=False, pooling="max"))
    data = np.arange(24, dtype="float32").reshape(2, 2, 2, 3)
    np.testing.assert_array_equal(np.asarray(model(data)), data.max(axis=(1, 2)))
    out = classifier_head(x, include_top=True, classes=4, classifier_activation=None)
    assert out.dtype == "float32"


def test_head_pooling_names_come_from_the_factory():
    assert HEAD_POOLINGS is factories.POOLINGS
    assert FLATTEN_HEAD_POOLINGS == (None, *factories.ADAPTIVE_POOLINGS)
    x = keras.Input((4, 4, 6))
    for name in HEAD_POOLINGS:
        pooled, top = head_pooling_layer(x, name, include_top=True)
        assert top in ("avg", "max") and pooled.shape[-1] == 6
    with pytest.raises(ValueError, match="`head_pooling` must be one of"):
        head_pooling_layer(x, "median", include_top=True)
