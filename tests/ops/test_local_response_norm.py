import numpy as np
import pytest
import tensorflow as tf

from keras_cnn_ext.ops.local_response_norm import local_response_normalization


@pytest.mark.parametrize(
    "radius,bias,alpha,beta", [(2, 2.0, 1e-4, 0.75), (1, 1.0, 0.5, 0.5), (0, 1.0, 1.0, 1.0)]
)
def test_matches_tf_lrn(radius, bias, alpha, beta):
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 6)).astype("float32") * 5
    expected = tf.nn.local_response_normalization(x, radius, bias, alpha, beta)
    out = local_response_normalization(x, radius, bias, alpha, beta)
    np.testing.assert_allclose(np.asarray(out), np.asarray(expected), rtol=1e-5, atol=1e-6)


def test_hand_value_and_channels_first():
    # One pixel, channels [1, 2, 3], radius 1, bias 1, alpha 1, beta 1: windows sum to 5, 14, 13.
    x = np.array([1.0, 2.0, 3.0]).reshape(1, 1, 1, 3)
    out = np.asarray(local_response_normalization(x, 1, 1.0, 1.0, 1.0)).ravel()
    np.testing.assert_allclose(out, [1 / 6, 2 / 15, 3 / 14])
    first = local_response_normalization(x.reshape(1, 3, 1, 1), 1, 1.0, 1.0, 1.0, "channels_first")
    np.testing.assert_allclose(np.asarray(first).ravel(), out)


def test_float16_large_values_do_not_overflow():
    x = np.full((1, 1, 1, 5), 300.0, np.float16)  # 300**2 overflows float16
    out = np.asarray(local_response_normalization(x))
    expected = 300.0 / (2.0 + 1e-4 * 3 * 300.0**2) ** 0.75  # edge channel: 3 in its window
    assert out.dtype == np.float16 and np.all(np.isfinite(out))
    np.testing.assert_allclose(float(out[0, 0, 0, 0]), expected, rtol=1e-2)


def test_xla_and_unknown_channels():
    fn = tf.function(
        lambda t: local_response_normalization(t),
        input_signature=[tf.TensorSpec((None, None, None, None), tf.float32)],
        jit_compile=True,
    )
    x = np.random.default_rng(1).normal(size=(1, 2, 2, 4)).astype("float32")
    expected = tf.nn.local_response_normalization(x, 2, 2.0, 1e-4, 0.75)
    np.testing.assert_allclose(np.asarray(fn(x)), np.asarray(expected), rtol=1e-6)
