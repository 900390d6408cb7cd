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
