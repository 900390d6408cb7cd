import inspect

import keras
import numpy as np
import pytest

from keras_cnn_ext.layers.grouped_conv2d import GroupedConv2D
from keras_cnn_ext.testing import CONTRACT_CHECKS, LayerSpec, run_contract_check

SPEC = LayerSpec(
    layer_cls=GroupedConv2D,
    init_kwargs={"filters": 4, "kernel_size": 3, "groups": 2, "padding": "same"},
    input_shape=(2, 6, 6, 4),
    expected_output_shape=(2, 6, 6, 4),
    expected_trainable_weights=2,
    gradient_input_shape=(1, 4, 4, 4),
)


@pytest.mark.parametrize("check", CONTRACT_CHECKS)
def test_contract(check):
    run_contract_check(check, SPEC)


def test_same_outputs_and_weights_as_keras_conv2d():
    x = np.random.default_rng(0).normal(size=(2, 7, 7, 6)).astype("float32")
    ours = GroupedConv2D(9, 3, strides=2, groups=3)
    reference = keras.layers.Conv2D(9, 3, strides=2, groups=3)
    ours.build(x.shape)
    reference.build(x.shape)
    for a, b in zip(ours.weights, reference.weights, strict=True):
        a.assign(b)
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(reference(x)), atol=1e-5)
    assert ours.get_config()["groups"] == 3


def test_bad_groups():
    with pytest.raises(ValueError):
        GroupedConv2D(5, 3, groups=2)


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        ({"filters": "3"}, TypeError, "filters"),  # Keras: "'<=' not supported between ..."
        ({"filters": 3.5}, TypeError, "filters"),
        ({"filters": True}, TypeError, "filters"),  # Keras accepts it as 1 filter
        ({"filters": 0}, ValueError, "filters"),
        ({"groups": "2"}, TypeError, "groups"),  # Keras: "'<=' not supported between ..."
        ({"groups": 1.5}, TypeError, "groups"),
        ({"use_bias": "yes"}, TypeError, "use_bias"),  # Keras accepts any truthy value
        ({"activation": "nope"}, ValueError, "activation"),
        ({"kernel_initializer": "nope"}, ValueError, "kernel_initializer"),
        ({"kernel_size": "3"}, ValueError, "kernel_size"),
        ({"strides": 0}, ValueError, "strides"),
        ({"padding": "full"}, ValueError, "padding"),
        ({"data_format": "NHWC"}, ValueError, "data_format"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, error, name):
    arguments = {"filters": 4, "kernel_size": 3, **kwargs}
    with pytest.raises(error, match=f"`{name}`"):
        GroupedConv2D(**arguments)


def test_positional_arguments_and_signature_follow_conv2d():
    layer = GroupedConv2D(4, 3, 1, "same", None, 1, 2)
    assert (layer.filters, layer.padding, layer.groups) == (4, "same", 2)
    assert list(inspect.signature(GroupedConv2D.__init__).parameters)[:3] == [
        "self",
        "filters",
        "kernel_size",
    ]
    with pytest.raises(ValueError, match="Unrecognized keyword arguments"):
        GroupedConv2D(4, 3, bad_argument=1)
    with pytest.raises(TypeError, match="Conv2D's arguments"):
        GroupedConv2D(4, 3, 1, "same", None, 1, 2, *range(12))
