import gc

import keras
import numpy as np
import pytest
from builder_checks import BUILDER_CHECKS, classification_data, run_builder_check

from keras_cnn_ext.models import VGG, VGG11, VGG13, VGG16, VGG19, copy_weights, get_builder

# torchvision's published totals (1000 classes, 224x224); keras.applications gives the same for
# VGG16 (138,357,544) and VGG19 (143,667,240).
PUBLISHED = {11: 132_863_336, 13: 133_047_848, 16: 138_357_544, 19: 143_667_240}
PUBLISHED_BN = {11: 132_868_840, 13: 133_053_736, 16: 138_365_992, 19: 143_678_248}
FC = (7 * 7 * 512 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 1000 + 1000)


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.parametrize("builder,depth", [(VGG16, 16), (VGG19, 19)])
def test_full_param_count_equals_keras_applications(builder, depth):
    model = builder()
    assert model.count_params() == PUBLISHED[depth]
    assert model.input_shape == (None, 224, 224, 3)
    del model
    gc.collect()


@pytest.mark.parametrize("builder,depth", [(VGG11, 11), (VGG13, 13), (VGG16, 16), (VGG19, 19)])
def test_feature_param_counts(builder, depth):
    # The convolutions alone: the published totals minus the classifier's 123,642,856.
    assert builder(include_top=False).count_params() == PUBLISHED[depth] - FC
    bn = builder(include_top=False, batch_norm=True)
    assert _trainable(bn) == PUBLISHED_BN[depth] - FC
    assert bn.name == f"vgg{depth}_bn"


@pytest.fixture(scope="module")
def vgg16_pair():
    keras.utils.set_random_seed(1)
    reference = keras.applications.VGG16(
        weights=None, input_shape=(32, 32, 3), classes=10, classifier_activation=None
    )
    ours = VGG16(input_shape=(32, 32, 3), classes=10, classifier_activation=None)
    assert ours.count_params() == reference.count_params()
    copy_weights(reference, ours)
    return reference, ours


def test_weight_copy_gives_keras_applications_outputs(vgg16_pair):
    reference, ours = vgg16_pair
    # Pixel-range inputs (as after caffe preprocessing): with zero biases the logits scale
    # with the input, and unit-range inputs would leave logits near 1e-4.
    x = np.random.default_rng(0).uniform(-128, 128, size=(2, 32, 32, 3)).astype("float32")
    expected = np.asarray(reference(x))
    assert np.abs(expected).max() > 1e-2, np.abs(expected).max()
    np.testing.assert_allclose(np.asarray(ours(x)), expected, atol=1e-5)
    # The same layer names as keras.applications, so its weight files load by name too.
    assert [layer.name for layer in ours.layers if layer.weights] == [
        layer.name for layer in reference.layers if layer.weights
    ]


def test_options():
    model = VGG(11, include_top=False, input_shape=(32, 32, 3), pool_type="avg", pooling="max")
    assert isinstance(model.get_layer("block1_pool"), keras.layers.AveragePooling2D)
    assert model.output_shape == (None, 512)
    narrow = VGG(11, include_top=False, input_shape=(32, 32, 3), width_multiplier=0.25)
    assert narrow.output_shape == (None, 1, 1, 128)
    model = VGG(11, input_shape=(32, 32, 3), classes=4, fc_units=(8,), dropout=0.0)
    assert model.get_layer("fc1").units == 8
    assert get_builder("VGG-16") is VGG16


def test_adaptive_head_accepts_any_size():
    default = VGG(11, head_pooling="adaptive_avg", classes=3, fc_units=(8,))
    assert default.input_shape == (None, 224, 224, 3)  # keras.applications' default size
    model = VGG(
        11, head_pooling="adaptive_avg", input_shape=(None, None, 3), classes=3, fc_units=(8,)
    )
    assert model.input_shape == (None, None, None, 3)
    assert model.get_layer("fc1").kernel.shape == (7 * 7 * 512, 8)
    for size in (32, 48):
        x = np.zeros((1, size, size, 3), "float32")
        assert model(x).shape == (1, 3)


def test_bad_input():
    with pytest.raises(ValueError, match=r"`depth` must be one of \(11, 13, 16, 19\)"):
        VGG(12)
    with pytest.raises(ValueError, match="`block5_pool`.*minimum input size is 32x32"):
        VGG16(include_top=False, input_shape=(31, 64, 3))
    with pytest.raises(ValueError, match="`classes`"):
        VGG16(classes=0)
    with pytest.raises(ValueError, match="`pooling`"):
        VGG16(include_top=False, pooling="sum")
    with pytest.raises(ValueError, match="`weights`"):
        VGG16(weights="vgg16.h5")


X, Y = classification_data((32, 32, 3), 5)


def _small_vgg():
    return VGG11(
        input_shape=(32, 32, 3),
        classes=5,
        batch_norm=True,
        width_multiplier=0.125,
        fc_units=(16, 16),
    )


@pytest.mark.parametrize("check", BUILDER_CHECKS)
def test_builder_checks(check):
    run_builder_check(check, _small_vgg, X, Y, "categorical_crossentropy")
