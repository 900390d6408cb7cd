import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_cnn_ext.ops.grouped_conv import grouped_conv2d


@pytest.mark.parametrize(
    "groups,strides,padding,dilation",
    [(2, 1, "same", 1), (4, 2, "valid", 1), (3, 1, "valid", 2), (1, 1, "same", 1)],
)
def test_matches_keras_grouped_conv(groups, strides, padding, dilation):
    rng = np.random.default_rng(0)
    c_in, c_out = 12, 6 * groups
    x = rng.normal(size=(2, 9, 9, c_in)).astype("float32")
    kernel = rng.normal(size=(3, 3, c_in // groups, c_out)).astype("float32")
    expected = keras.ops.conv(x, kernel, strides=strides, padding=padding, dilation_rate=dilation)
    out = grouped_conv2d(x, kernel, groups, strides, padding, dilation)
    np.testing.assert_allclose(np.asarray(out), np.asarray(expected), atol=1e-4)


def test_equals_per_group_numpy_split():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 5, 5, 4)).astype("float32")
    kernel = rng.normal(size=(3, 3, 2, 6)).astype("float32")
    out = np.asarray(grouped_conv2d(x, kernel, 2))
    first = tf.nn.conv2d(x[..., :2], kernel[..., :3], 1, "VALID")
    second = tf.nn.conv2d(x[..., 2:], kernel[..., 3:], 1, "VALID")
    np.testing.assert_allclose(out, np.concatenate([first, second], axis=-1), atol=1e-5)


def test_xla():
    x = tf.ones((1, 6, 6, 4))
    kernel = tf.ones((3, 3, 2, 4))
    out = tf.function(lambda a, k: grouped_conv2d(a, k, 2), jit_compile=True)(x, kernel)
    np.testing.assert_allclose(np.asarray(out), 18.0)
