import keras
import numpy as np
import pytest

from keras_cnn_ext import models
from keras_cnn_ext.analysis import profile
from keras_cnn_ext.layers import GroupConv2D
from keras_cnn_ext.ops.group_conv import transform_image


@pytest.fixture(scope="module")
def digits():
    return np.random.default_rng(0).uniform(0, 1, size=(3, 28, 28, 1)).astype("float32")


@pytest.mark.parametrize("builder, n", [(models.P4CNN, 4), (models.P4MCNN, 8)])
def test_logits_are_invariant_to_the_group(builder, n, digits):
    model = builder(filters=4, classifier_activation=None)
    # Train-mode statistics once so BN is not the identity in inference.
    model(digits, training=True)
    logits = np.asarray(model(digits))
    assert logits.shape == (3, 10)
    group = "p4" if n == 4 else "p4m"
    for g in range(1, n):
        np.testing.assert_allclose(model(transform_image(digits, g, group)), logits, atol=1e-5)
    plain = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(4, 3),
            keras.layers.GlobalMaxPooling2D(),
            keras.layers.Dense(10),
        ]
    )
    assert not np.allclose(plain(np.rot90(digits, 1, (1, 2))), plain(digits), atol=1e-3)


def test_registered_and_parameter_count_follows_the_paper():
    assert models.get_builder("P4-CNN") is models.P4CNN
    assert models.get_builder("p4mcnn") is models.P4MCNN
    model = models.P4CNN(dropout=0.0)
    c = 10
    weights = 9 * c + 5 * 4 * 9 * c * c + 4 * 16 * c * 10 + 10  # lift, 5 group layers, head+bias
    bn = 6 * 4 * c  # gamma, beta, mean, variance per field
    assert model.count_params() == weights + bn


def test_profile_counts_group_layers():
    inputs = keras.Input((9, 9, 3))
    y = GroupConv2D(5, 3, group="p4", padding="same")(inputs)
    y = GroupConv2D(2, 3, group="p4", lifting=False)(y)
    result = profile(keras.Model(inputs, y))
    assert not result.unknown_layers
    # One conv with the expanded bank: 9*9 positions x 20 outputs x 3*3*3, then 7*7 x 8 x 9*20.
    assert result.macs == 81 * 20 * 27 + 49 * 8 * 9 * 20
    assert result.params == 9 * 3 * 5 + 5 + 4 * 9 * 5 * 2 + 2
    assert result.records[-1].receptive_field == "5"
    model = models.P4CNN(filters=4)
    assert not profile(model).unknown_layers


def test_bad_arguments():
    with pytest.raises(ValueError, match="`group`"):
        models.GroupCNN("p8")
    with pytest.raises(ValueError, match="`filters`"):
        models.P4CNN(filters=0)
    with pytest.raises(ValueError):
        models.P4CNN(input_shape=(8, 8, 1))


@pytest.mark.parametrize("group, n, version", [("p4", 4, "v1"), ("p4m", 8, "v2")])
def test_cifar_resnet_group_option_is_invariant_on_odd_sizes(group, n, version):
    model = models.ResNet20(
        group=group,
        version=version,
        input_shape=(33, 33, 3),
        classes=10,
        classifier_activation=None,
    )
    x = np.random.default_rng(0).uniform(size=(2, 33, 33, 3)).astype("float32")
    model(x, training=True)
    logits = np.asarray(model(x))
    for g in range(1, n):
        np.testing.assert_allclose(model(transform_image(x, g, group)), logits, atol=1e-5)
    plain = models.ResNet20(classes=10).count_params()
    assert abs(model.count_params() - plain) / plain < 0.15  # widths / sqrt(|G|)
    assert model.get_layer("conv2_block1").get_config()["group"] == group


def test_residual_block_group_argument():
    from keras_cnn_ext.layers import ResidualBlock

    block = ResidualBlock(3, block_type="basic", strides=2, shortcut="zero_pad", group="p4")
    y = block(np.ones((1, 5, 5, 8), "float32"))
    assert y.shape == (1, 3, 3, 12)
    restored = ResidualBlock.from_config(block.get_config())
    assert restored.group == "p4"
    with pytest.raises(ValueError, match="`group`"):
        ResidualBlock(4, group="p4", attention="se")
    with pytest.raises(ValueError, match="`group`"):
        models.ResNet18(group="p4")
    with pytest.raises(ValueError, match="`group`"):
        models.ResNet20(group="c4")
