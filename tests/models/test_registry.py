"""The name -> builder registry, and that every listed name builds with its defaults."""

import gc

import keras
import pytest

import keras_cnn_ext.models  # noqa: F401  (registers the builders)
from keras_cnn_ext.models import registry


def test_registry():
    @registry.register_builder("Test-Net_1")
    def builder():
        return "built"

    try:
        assert registry.get_builder("testnet1") is builder
        assert registry.get_builder("TESTNET_1")() == "built"
        assert "testnet1" in registry.list_builders()
        with pytest.raises(ValueError, match="already registered"):
            registry.register_builder("testnet1")(lambda: None)
        with pytest.raises(ValueError, match="Unknown architecture name: 'nonet'.*lenet5"):
            registry.get_builder("nonet")
    finally:
        del registry._BUILDERS["testnet1"]


def test_builtin_names_registered():
    names = registry.list_builders()
    for name in (
        "lenet5",
        "alexnet",
        "vgg11",
        "vgg16",
        "mobilenetv1",
        "unet",
        "resnet",
        "densenet",
    ):
        assert name in names


# test_builder checks that every listed name's signature binds without arguments; the names
# the issue found unbuildable build here with no argument, at their default input size. (The
# other families build with defaults in their own tests: LeNet5(), AlexNet(variant),
# MobileNetV1(alpha=...), DenseNetBC(classes=10), ResNet20(), SEResNet50(), VGG16().)
DEFAULT_BUILDS = {
    "resnet": ((None, 224, 224, 3), 25_636_712),  # ResNet-50, as keras.applications'
    "densenet": ((None, 224, 224, 3), 8_062_504),  # DenseNet-121
    "unet": ((None, None, None, 3), 1_945_521),
}


@pytest.mark.parametrize("name", sorted(DEFAULT_BUILDS))
def test_listed_family_builds_with_defaults(name):
    model = registry.get_builder(name)()
    assert isinstance(model, keras.Model)
    assert (model.input_shape, model.count_params()) == DEFAULT_BUILDS[name]
    del model
    keras.backend.clear_session()
    gc.collect()
