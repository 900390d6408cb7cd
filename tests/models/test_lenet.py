import keras
import numpy as np
import pytest
from builder_checks import BUILDER_CHECKS, classification_data, run_builder_check

from keras_cnn_ext.models import LeNet5, get_builder


def _hand_count(height, width, channels=1, classes=10, padding="valid"):
    """C1, C3, F5, F6 and the output layer's weights + biases, computed from the shapes."""
    c1 = 5 * 5 * channels * 6 + 6
    h, w = (height, width) if padding == "same" else (height - 4, width - 4)
    h, w = h // 2, w // 2
    c3 = 5 * 5 * 6 * 16 + 16
    h, w = (h - 4) // 2, (w - 4) // 2
    f5 = h * w * 16 * 120 + 120
    return c1 + c3 + f5 + (120 * 84 + 84) + (84 * classes + classes)


def test_param_count_is_61706():
    assert _hand_count(32, 32) == 61_706
    assert LeNet5().count_params() == 61_706
    assert LeNet5(variant="modern").count_params() == 61_706


@pytest.mark.parametrize(
    "shape,padding", [((32, 32, 1), "valid"), ((28, 28, 1), "same"), ((28, 28, 1), "valid")]
)
def test_param_count_other_inputs(shape, padding):
    model = LeNet5(input_shape=shape, padding=padding, classes=7)
    assert model.count_params() == _hand_count(*shape, classes=7, padding=padding)
    assert model.output_shape == (None, 7)


def test_variants_use_their_activation_and_pooling():
    classic, modern = LeNet5("classic"), LeNet5("modern")
    assert isinstance(classic.get_layer("block1_pool"), keras.layers.AveragePooling2D)
    assert isinstance(modern.get_layer("block1_pool"), keras.layers.MaxPooling2D)
    assert classic.get_layer("block1_conv1_tanh").activation is keras.activations.tanh
    assert modern.get_layer("block1_conv1_relu").activation is keras.activations.relu


def test_overrides_and_norm():
    model = LeNet5(activation="relu", pool_type="max", norm="batch")
    assert isinstance(model.get_layer("block1_conv1_bn"), keras.layers.BatchNormalization)
    assert isinstance(model.get_layer("block2_pool"), keras.layers.MaxPooling2D)
    # 4 BN parameters per channel: 6 + 16 channels.
    assert model.count_params() == 61_706 + 4 * (6 + 16)


def test_adaptive_head():
    model = LeNet5(head_pooling="adaptive_max", input_shape=(40, 40, 1))
    assert model.count_params() == 61_706
    # keras.applications' rule: the usual size by default with the classifier; any size when
    # asked for, since the adaptive pooling makes the classifier fit.
    assert LeNet5(head_pooling="adaptive_avg").input_shape == (None, 32, 32, 1)
    model = LeNet5(head_pooling="adaptive_avg", input_shape=(None, None, 1))
    assert model.input_shape == (None, None, None, 1)


def test_features_without_top():
    assert LeNet5(include_top=False, input_shape=(32, 32, 1)).output_shape == (None, 5, 5, 16)
    assert LeNet5(include_top=False, pooling="avg").output_shape == (None, 16)
    # Without the top the input may have unknown spatial size.
    assert LeNet5(include_top=False).input_shape == (None, None, None, 1)


def test_registry():
    assert get_builder("LeNet5") is LeNet5
    assert get_builder("lenet-5") is LeNet5


def test_bad_input():
    with pytest.raises(ValueError, match="`variant`"):
        LeNet5("fancy")
    with pytest.raises(ValueError, match="`classes`"):
        LeNet5(classes=0)
    # "same": 10 -> conv 10 -> pool 5 -> conv 1 -> pool 0.
    with pytest.raises(ValueError, match="height is 1 when it reaches stage `block2_pool`"):
        LeNet5(input_shape=(10, 10, 1), padding="same")
    # "valid": the smallest input is 16 (16 -> 12 -> 6 -> 2 -> 1); the width 14 fails first
    # at the second convolution (14 -> 10 -> 5 -> 1 -> 0 at the pooling).
    with pytest.raises(ValueError, match="width .* `block2_pool`.*minimum input size is 16x16"):
        LeNet5(input_shape=(28, 14, 1))
    LeNet5(input_shape=(16, 16, 1), classes=2)
    with pytest.raises(ValueError, match="`width_multiplier`"):
        LeNet5(width_multiplier=0)


def test_weights_file_round_trip(tmp_path):
    model = LeNet5()
    path = str(tmp_path / "lenet.weights.h5")
    model.save_weights(path)
    loaded = LeNet5(weights=path)
    x, _ = classification_data((32, 32, 1), 10)
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))
    with pytest.raises(ValueError, match="`weights`"):
        LeNet5(weights=str(tmp_path / "missing.weights.h5"))
    with pytest.raises(ValueError, match="Could not load `weights`"):
        LeNet5(classes=3, weights=path)


X, Y = classification_data((32, 32, 1), 10)


@pytest.mark.parametrize("check", BUILDER_CHECKS)
def test_builder_checks(check):
    run_builder_check(check, LeNet5, X, Y, "categorical_crossentropy")
