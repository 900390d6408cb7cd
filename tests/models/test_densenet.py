"""DenseNet builders: keras.applications parameter counts and weight copy, CIFAR DenseNet-BC."""

import keras
import numpy as np
import pytest
from builder_checks import (
    BUILDER_CHECKS,
    classification_data,
    run_builder_check,
    with_depth_row,
)

from keras_cnn_ext.layers import DenseBlock, TransitionBlock
from keras_cnn_ext.models import get_builder, load_keras_applications_weights
from keras_cnn_ext.models.densenet import (
    DENSENET_DEPTHS,
    DenseNet,
    DenseNet121,
    DenseNet169,
    DenseNet201,
    DenseNetBC,
)


# DenseNet-169 and -201 differ from 121 only in their blocks' unit counts, whose code
# `test_keras_applications_weights_copy` compares with Keras' DenseNet-121: their counts are
# keras.applications' (Keras 3.15 `count_params()`), without building Keras' own again in every
# run.
@pytest.mark.parametrize("ours, count", [(DenseNet169, 14_307_880), (DenseNet201, 20_242_984)])
def test_deeper_parameter_counts_equal_keras_applications(ours, count):
    assert ours(input_shape=(32, 32, 3)).count_params() == count


def test_keras_applications_weights_copy():
    shape = (64, 64, 3)
    model = DenseNet121(input_shape=shape, classifier_activation=None)
    reference = keras.applications.DenseNet121(
        weights=None, input_shape=shape, classifier_activation=None
    )
    assert model.count_params() == reference.count_params() == 8_062_504
    x = np.random.default_rng(0).normal(size=(2, *shape)).astype("float32")
    assert np.abs(model(x, training=False) - reference(x, training=False)).max() > 1e-3
    load_keras_applications_weights(model, reference)
    np.testing.assert_allclose(model(x, training=False), reference(x, training=False), atol=1e-5)


def test_densenet_bc_100():
    model = DenseNetBC(classes=10)
    assert model.input_shape == (None, 32, 32, 3)  # the CIFAR layout's default size
    blocks = [layer for layer in model.layers if isinstance(layer, DenseBlock)]
    assert [b.num_layers for b in blocks] == [16, 16, 16]  # (100 - 4) / 6
    assert all(b.growth_rate == 12 for b in blocks)
    # Channels: stem 2k = 24, +16k = 216 -> 108 -> 300 -> 150 -> 342.
    transitions = [layer for layer in model.layers if isinstance(layer, TransitionBlock)]
    assert [t.output.shape[-1] for t in transitions] == [108, 150]
    assert model.get_layer("bn").output.shape[1:] == (8, 8, 342)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 769_162  # the paper's "0.8M"
    assert model.count_params() == 793_150


def test_cifar_depth_rule_and_options():
    model = DenseNet(40, layout="cifar", bottleneck=False, compression=1.0, input_shape=(32, 32, 3))
    blocks = [layer for layer in model.layers if isinstance(layer, DenseBlock)]
    assert [b.num_layers for b in blocks] == [12, 12, 12]  # DenseNet (k=12, L=40): (40-4)/3
    assert model.get_layer("conv1_conv").filters == 16
    with pytest.raises(ValueError, match=r"6n \+ 4"):
        DenseNetBC(41, input_shape=(32, 32, 3))


def test_registry():
    assert get_builder("densenet-121") is DenseNet121
    assert get_builder("densenet") is DenseNet
    assert get_builder("densenetbc") is DenseNetBC
    assert DenseNet121(input_shape=(32, 32, 3)).name == "densenet121"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"depth": 122}, r"`depth` must be one of \[121, 169, 201, 264\]"),
        ({"layout": "mnist"}, "`layout`"),
        ({"classes": -1}, "`classes`"),
        ({"weights": "imagenet"}, "load_keras_applications_weights"),
        ({"input_shape": (16, 16, 3)}, "stage `pool4`.*minimum input size is 29x29"),
        ({"dropout_rate": 1.0}, "`dropout_rate`"),
    ],
)
def test_bad_arguments(kwargs, match):
    kwargs.setdefault("input_shape", (32, 32, 3))
    with pytest.raises(ValueError, match=match):
        DenseNet(**kwargs)


BUILDS = {
    # CIFAR DenseNet-BC with dropout and a max head: every check, at depth 10 (one bottleneck
    # layer and one transition per block: the code of every depth, and XLA compiles the step in
    # half the time of depth 22's). The ImageNet layout adds only a padded 7x7 stem and a max
    # pooling to the same blocks: the cheap checks suffice there, on one unit per block.
    "densenet_bc10": lambda: DenseNetBC(
        10,
        growth_rate=4,
        dropout_rate=0.1,
        head_pooling="max",
        input_shape=(16, 16, 3),
        classes=3,
        seed=0,
    ),
    "densenet121_k4_one_unit": with_depth_row(
        DENSENET_DEPTHS,
        121,
        (1, 1, 1, 1),
        lambda: DenseNet(121, growth_rate=4, input_shape=(32, 32, 3), classes=3),
    ),
}
CHECKS = [("densenet_bc10", check) for check in BUILDER_CHECKS] + [
    ("densenet121_k4_one_unit", "saving"),
    ("densenet121_k4_one_unit", "mixed_precision"),
]


@pytest.mark.parametrize("build, check", CHECKS)
def test_builder_checks(build, check):
    shape = (32, 32, 3) if build == "densenet121_k4_one_unit" else (16, 16, 3)
    x, y = classification_data(shape, 3)
    run_builder_check(check, BUILDS[build], x, y, "categorical_crossentropy")
