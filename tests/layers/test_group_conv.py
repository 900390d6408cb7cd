import keras
import numpy as np
import pytest

from keras_cnn_ext.layers import GroupConv2D
from keras_cnn_ext.ops.group_conv import transform_group_map, transform_image
from keras_cnn_ext.testing import CONTRACT_CHECKS, LayerSpec, run_contract_check

SPECS = {
    "lifting": LayerSpec(
        GroupConv2D,
        {"filters": 2, "kernel_size": 3, "group": "p4", "padding": "same"},
        input_shape=(2, 5, 5, 3),
        expected_output_shape=(2, 5, 5, 8),
        expected_trainable_weights=2,
        gradient_input_shape=(1, 3, 3, 3),
    ),
    "group": LayerSpec(
        GroupConv2D,
        {"filters": 2, "kernel_size": 3, "group": "p4m", "lifting": False, "strides": 2},
        input_shape=(2, 5, 5, 16),
        expected_output_shape=(2, 2, 2, 16),
        expected_trainable_weights=2,
        gradient_input_shape=(1, 3, 3, 8),
    ),
}


@pytest.mark.parametrize("check", CONTRACT_CHECKS)
@pytest.mark.parametrize("kind", SPECS)
def test_contract(kind, check):
    spec = SPECS[kind]
    if kind == "group" and check == "gradient":
        spec = LayerSpec(GroupConv2D, {**spec.init_kwargs, "group": "p4"}, (1, 3, 3, 8))
    run_contract_check(check, spec)


@pytest.mark.parametrize(
    "group, lifting, c_in, expected",
    [("p4", True, 3, 9 * 3 * 5), ("p4", False, 3, 4 * 9 * 3 * 5), ("p4m", False, 3, 8 * 9 * 3 * 5)],
)
def test_parameter_counts_follow_the_paper(group, lifting, c_in, expected):
    n = 4 if group == "p4" else 8
    layer = GroupConv2D(5, 3, group=group, lifting=lifting, use_bias=False)
    layer.build((None, 9, 9, c_in * (1 if lifting else n)))
    assert layer.count_params() == expected
    layer = GroupConv2D(5, 3, group=group, lifting=lifting)
    layer.build((None, 9, 9, c_in * (1 if lifting else n)))
    assert layer.count_params() == expected + 5


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_layer_is_equivariant_with_bias_and_activation(data_format):
    x = np.random.default_rng(1).normal(size=(2, 7, 7, 3)).astype("float32")
    if data_format == "channels_first":
        x = x.transpose(0, 3, 1, 2)
    lift = GroupConv2D(
        3,
        3,
        group="p4m",
        padding="same",
        data_format=data_format,
        bias_initializer="random_normal",
        activation="relu",
    )
    conv = GroupConv2D(
        2,
        3,
        group="p4m",
        lifting=False,
        strides=2,
        data_format=data_format,
        bias_initializer="random_normal",
    )
    y = conv(lift(x))
    for g in range(8):
        moved = conv(lift(transform_image(x, g, "p4m", data_format)))
        np.testing.assert_allclose(moved, transform_group_map(y, g, "p4m", data_format), atol=1e-5)


def test_initializer_uses_the_group_fans():
    layer = GroupConv2D(16, 3, group="p4", lifting=False, kernel_initializer="glorot_uniform")
    layer.build((None, 9, 9, 16 * 4))
    limit = np.sqrt(6 / (9 * 64 + 9 * 64))  # fans of the expanded (3, 3, 64, 64) bank
    kernel = np.asarray(layer.kernel)
    assert kernel.shape == (3, 3, 64, 16)
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.9 * limit
    reg = GroupConv2D(2, 3, kernel_regularizer="l2")
    reg.build((None, 5, 5, 1))
    assert len(reg.losses) == 1


def test_spatial_pooling_works_on_group_maps():
    x = np.random.default_rng(2).normal(size=(1, 8, 8, 8)).astype("float32")
    pool = keras.layers.MaxPooling2D(2)
    for g in range(4):
        np.testing.assert_allclose(
            pool(transform_group_map(x, g, "p4")), transform_group_map(pool(x), g, "p4")
        )


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        ({"group": "p6"}, ValueError, "group"),
        ({"group": 4}, ValueError, "group"),
        ({"kernel_size": 4, "padding": "same"}, ValueError, "kernel_size"),
        ({"kernel_size": (3, 5)}, ValueError, "kernel_size"),
        ({"filters": 0}, ValueError, "filters"),
        ({"lifting": "no"}, TypeError, "lifting"),
        ({"padding": "full"}, ValueError, "padding"),
        ({"strides": 0}, ValueError, "strides"),
        ({"activation": "nope"}, ValueError, "activation"),
        ({"data_format": "NHWC"}, ValueError, "data_format"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, error, name):
    with pytest.raises(error, match=f"`{name}`"):
        GroupConv2D(**{"filters": 2, "kernel_size": 3, **kwargs})


def test_group_input_channels_must_be_a_multiple_of_the_group_order():
    with pytest.raises(ValueError, match="multiple of \\|G\\| = 4"):
        GroupConv2D(2, 3, lifting=False)(np.ones((1, 5, 5, 6), "float32"))
    assert GroupConv2D(2, 4)(np.ones((1, 5, 5, 1), "float32")).shape == (1, 2, 2, 8)
