import keras
import numpy as np
import pytest
from builder_checks import BUILDER_CHECKS, run_builder_check

from keras_cnn_ext.losses import SoftIoULoss
from keras_cnn_ext.models import UNet, get_builder


def _hand_count(channels, classes, base, depth):
    """3x3 convs without bias + BN (4 per channel), 2x2 transposed convs, 1x1 head."""

    def double(c_in, f):
        return 9 * c_in * f + 4 * f + 9 * f * f + 4 * f

    filters = [base * 2**i for i in range(depth + 1)]
    total, c_in = 0, channels
    for f in filters:
        total, c_in = total + double(c_in, f), f
    for level in reversed(range(depth)):
        f = filters[level]
        total += 4 * filters[level + 1] * f + f + double(2 * f, f)
    return total + filters[0] * classes + classes


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_param_count(depth):
    model = UNet((16, 16, 3), classes=2, base_filters=4, depth=depth)
    assert model.count_params() == _hand_count(3, 2, 4, depth)


@pytest.mark.parametrize("shape", [(16, 16, 1), (20, 20, 1), (13, 17, 1), (1, 5, 1)])
def test_output_has_input_size(shape):
    model = UNet(shape, classes=3, base_filters=2, depth=3)
    assert model.output_shape == (None, *shape[:2], 3)
    x = np.random.default_rng(0).normal(size=(1, *shape)).astype("float32")
    out = np.asarray(model(x))
    assert out.shape == (1, *shape[:2], 3)
    np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-5)  # softmax for 3 classes


def test_padding_does_not_change_the_valid_region():
    # A padded 13x13 input gives a cropped output; with no padding needed, nothing is cropped.
    assert any(layer.name == "crop_to_input" for layer in UNet((13, 13, 1), depth=2).layers)
    assert not any(layer.name == "pad_to_multiple" for layer in UNet((16, 16, 1), depth=2).layers)


def test_unknown_size_and_head():
    model = UNet(base_filters=2, depth=2)
    assert model.output_shape == (None, None, None, 1)
    out = np.asarray(model(np.zeros((1, 8, 12, 3), "float32")))
    assert out.shape == (1, 8, 12, 1) and np.all((out > 0) & (out < 1))  # sigmoid
    features = UNet((8, 8, 3), base_filters=2, depth=2, include_top=False)
    assert features.output_shape == (None, 8, 8, 2)
    assert (
        UNet((8, 8, 3), base_filters=2, depth=1, classifier_activation=None)
        .get_layer("predictions")
        .activation
        is keras.activations.linear
    )
    assert get_builder("U-Net") is UNet


@pytest.mark.parametrize(
    "loss", [SoftIoULoss(axis=(1, 2, 3)), keras.losses.Dice(axis=(1, 2, 3))], ids=["iou", "dice"]
)
def test_trains_one_step_with_segmentation_losses(loss):
    keras.utils.set_random_seed(0)
    model = UNet((12, 12, 1), classes=1, base_filters=2, depth=2)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 12, 12, 1)).astype("float32")
    y = (x > 0).astype("float32")
    # XLA is covered by the builder checks; the plain path keeps this test fast.
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss, jit_compile=False)
    before = float(loss(y, model(x, training=False)))
    for _ in range(3):
        model.train_on_batch(x, y)
    after = float(loss(y, model(x, training=False)))
    assert np.isfinite(after) and after < before


def test_bad_input():
    with pytest.raises(ValueError, match="`depth` must be at most 6"):
        UNet(depth=7)
    with pytest.raises(ValueError, match="`depth` must be a positive integer"):
        UNet(depth=0)
    with pytest.raises(ValueError, match="`base_filters`"):
        UNet(base_filters=0)
    with pytest.raises(ValueError, match="`classes`"):
        UNet(classes=0)
    with pytest.raises(ValueError, match="`weights`"):
        UNet(weights="unet.h5")


X = np.random.default_rng(0).normal(size=(2, 20, 20, 3)).astype("float32")
Y = keras.utils.to_categorical((X[..., :1] > 0).astype("int32"), 2)


@pytest.mark.parametrize("check", BUILDER_CHECKS)
def test_builder_checks(check):
    run_builder_check(
        check,
        lambda: UNet((20, 20, 3), classes=2, base_filters=4, depth=2),
        X,
        Y,
        SoftIoULoss(axis=(1, 2, 3)),
    )
