import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_cnn_ext import losses
from keras_cnn_ext.losses import SoftIoULoss, soft_iou_loss

Y_TRUE = np.array([[[[1.0], [1.0]], [[0.0], [0.0]]], [[[1.0], [1.0]], [[0.0], [0.0]]]])
Y_PRED = np.array([[[[0.0], [1.0]], [[0.0], [1.0]]], [[[0.4], [0.0]], [[0.0], [0.9]]]])


def test_hand_values_per_image():
    # Image 1: I = 1, U = 2 + 2 - 1 = 3 -> 1 - 1/3. Image 2: I = 0.4, U = 2 + 1.3 - 0.4 = 2.9.
    expected = np.array([1 - 1 / 3, 1 - 0.4 / 2.9])
    out = soft_iou_loss(Y_TRUE, Y_PRED, axis=(1, 2, 3), smooth=0.0)
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-6)
    loss = SoftIoULoss(axis=(1, 2, 3), smooth=0.0, reduction=None)
    np.testing.assert_allclose(np.asarray(loss(Y_TRUE, Y_PRED)), expected, rtol=1e-6)
    mean = SoftIoULoss(axis=(1, 2, 3), smooth=0.0)(Y_TRUE, Y_PRED)
    np.testing.assert_allclose(float(mean), expected.mean(), rtol=1e-6)
    weighted = SoftIoULoss(axis=(1, 2, 3), smooth=0.0, reduction="sum")(
        Y_TRUE, Y_PRED, sample_weight=np.array([2.0, 0.0])
    )
    np.testing.assert_allclose(float(weighted), 2 * expected[0], rtol=1e-6)


def test_hand_value_whole_batch_and_smoothing():
    # axis=None as keras.losses.Dice: I = 1.4, U = 4 + 3.3 - 1.4 = 5.9.
    np.testing.assert_allclose(
        float(SoftIoULoss(smooth=0.0)(Y_TRUE, Y_PRED)), 1 - 1.4 / 5.9, rtol=1e-6
    )
    np.testing.assert_allclose(
        float(soft_iou_loss(Y_TRUE, Y_PRED, smooth=1.0)), 1 - 2.4 / 6.9, rtol=1e-6
    )
    empty = np.zeros((1, 2, 2, 1))
    assert float(SoftIoULoss()(empty, empty)) == 0.0  # smoothing: no 0/0
    assert float(SoftIoULoss()(Y_TRUE, Y_TRUE)) == pytest.approx(0.0, abs=1e-6)


def test_iou_and_dice_relation():
    # For binary masks, Dice = 2 IoU / (1 + IoU): the losses are tied, a check on both.
    rng = np.random.default_rng(0)
    t = (rng.uniform(size=(1, 6, 6, 1)) > 0.5).astype("float32")
    p = (rng.uniform(size=(1, 6, 6, 1)) > 0.5).astype("float32")
    iou = 1 - float(soft_iou_loss(t, p, smooth=0.0))
    dice = 1 - float(losses.Dice()(t, p))
    assert dice == pytest.approx(2 * iou / (1 + iou), rel=1e-5)
    assert losses.Dice is keras.losses.Dice


def test_config_and_serialization():
    loss = SoftIoULoss(axis=[1, 2, 3], smooth=0.5, reduction="sum", name="iou")
    config = loss.get_config()
    assert config == {"name": "iou", "reduction": "sum", "axis": (1, 2, 3), "smooth": 0.5}
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, SoftIoULoss) and restored.get_config() == config
    with pytest.raises(ValueError, match="`smooth`"):
        SoftIoULoss(smooth=-1)


def test_gradient_and_xla():
    y_true = tf.constant(Y_TRUE, tf.float32)
    y_pred = tf.Variable(Y_PRED, dtype=tf.float32)
    loss = SoftIoULoss(axis=(1, 2, 3))

    @tf.function(jit_compile=True)
    def step():
        with tf.GradientTape() as tape:
            value = loss(y_true, y_pred)
        return value, tape.gradient(value, y_pred)

    value, grad = step()
    assert np.isfinite(float(value)) and np.all(np.isfinite(grad.numpy()))
    # Raising a prediction where the truth is 1 lowers the loss.
    assert grad.numpy()[0, 0, 0, 0] < 0 and grad.numpy()[0, 1, 1, 0] > 0


def test_mixed_precision_dtype():
    out = SoftIoULoss(dtype="mixed_float16")(Y_TRUE, Y_PRED.astype("float16"))
    assert np.isfinite(float(out))
