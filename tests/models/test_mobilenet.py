import keras
import numpy as np
import pytest
from builder_checks import BUILDER_CHECKS, classification_data, run_builder_check

from keras_cnn_ext.layers import SeparableConvBlock
from keras_cnn_ext.models import MobileNetV1, copy_weights, get_builder


@pytest.mark.parametrize("alpha", [1.0, 0.75, 0.5])
def test_param_count_equals_keras_applications(alpha):
    reference = keras.applications.MobileNet(alpha=alpha, weights=None)
    model = MobileNetV1(alpha=alpha)
    assert model.count_params() == reference.count_params()
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == sum(int(np.prod(w.shape)) for w in reference.trainable_weights)
    assert {1.0: 4_253_864, 0.75: 2_601_976, 0.5: 1_342_536}[alpha] == model.count_params()


def _randomize(model, seed=0):
    # Non-trivial BN statistics too, so the copy of moving means/variances is checked.
    rng = np.random.default_rng(seed)
    for w in model.weights:
        value = rng.normal(0.0, 0.2, size=w.shape)
        if "variance" in w.path or "gamma" in w.path:
            value = rng.uniform(0.5, 1.5, size=w.shape)
        w.assign(value.astype("float32"))


@pytest.mark.parametrize("size,alpha", [(32, 0.5), (37, 0.25)])
def test_weight_copy_gives_keras_applications_outputs(size, alpha):
    kwargs = dict(alpha=alpha, classes=6, classifier_activation=None)
    reference = keras.applications.MobileNet(input_shape=(size, size, 3), weights=None, **kwargs)
    _randomize(reference)
    model = copy_weights(reference, MobileNetV1(input_shape=(size, size, 3), **kwargs))
    x = np.random.default_rng(1).uniform(-1, 1, size=(2, size, size, 3)).astype("float32")
    expected = np.asarray(reference(x, training=False))
    assert np.abs(expected).max() > 1e-2
    np.testing.assert_allclose(np.asarray(model(x, training=False)), expected, atol=1e-5)


def test_structure_and_options():
    model = MobileNetV1(input_shape=(64, 64, 3), alpha=0.25, include_top=False)
    blocks = [layer for layer in model.layers if isinstance(layer, SeparableConvBlock)]
    assert len(blocks) == 13
    assert model.output_shape == (None, 2, 2, 256)
    assert MobileNetV1(include_top=False, pooling="max", alpha=0.25).output_shape == (None, 256)
    plain = MobileNetV1(input_shape=(32, 32, 3), alpha=0.25, norm=None, activation="relu")
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in plain.layers)
    assert plain.get_layer("conv1").use_bias
    two = MobileNetV1(input_shape=(32, 32, 3), alpha=0.25, depth_multiplier=2, include_top=False)
    assert two.get_layer("conv_sep_1").depthwise.kernel.shape == (3, 3, 8, 2)
    assert get_builder("mobilenet") is MobileNetV1


def test_weights_file_loads_into_nested_blocks(tmp_path):
    model = MobileNetV1(input_shape=(32, 32, 3), alpha=0.25, classes=3)
    _randomize(model)
    path = str(tmp_path / "mobilenet.weights.h5")
    model.save_weights(path)
    loaded = MobileNetV1(input_shape=(32, 32, 3), alpha=0.25, classes=3, weights=path)
    x = np.random.default_rng(2).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))


def test_bad_input():
    with pytest.raises(ValueError, match="`conv_dw_12`.*minimum input size is 31x31"):
        MobileNetV1(input_shape=(30, 30, 3))
    MobileNetV1(input_shape=(31, 31, 3), alpha=0.25)
    with pytest.raises(ValueError, match="`alpha`"):
        MobileNetV1(alpha=0)
    with pytest.raises(ValueError, match="`depth_multiplier`"):
        MobileNetV1(depth_multiplier=1.5)
    with pytest.raises(ValueError, match="`classes`"):
        MobileNetV1(classes=0)
    with pytest.raises(ValueError, match="`dropout`"):
        MobileNetV1(dropout=1.0)


X, Y = classification_data((32, 32, 3), 5)


@pytest.mark.parametrize("check", BUILDER_CHECKS)
def test_builder_checks(check):
    run_builder_check(
        check,
        lambda: MobileNetV1(input_shape=(32, 32, 3), alpha=0.25, classes=5),
        X,
        Y,
        "categorical_crossentropy",
    )
