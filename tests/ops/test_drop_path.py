"""DropPath op and the drop-path rate schedule."""

import numpy as np
import pytest
import tensorflow as tf

from keras_cnn_ext.ops.drop_path import drop_path, drop_path_rates

SEED = tf.constant([1, 2])


def test_per_sample_mask_and_inverted_scaling():
    x = np.random.default_rng(0).uniform(0.5, 1.0, (64, 3, 3, 2)).astype("float32")
    y = drop_path(x, 0.25, SEED).numpy()
    ratio = (y / x).reshape(64, -1)
    # Each sample is scaled as a whole, by 0 or by 1 / (1 - p).
    np.testing.assert_allclose(ratio, np.broadcast_to(ratio[:, :1], ratio.shape), rtol=1e-6)
    scales = ratio[:, 0]
    kept = scales != 0
    np.testing.assert_allclose(scales[kept], 1 / 0.75, rtol=1e-6)
    assert 0 < kept.sum() < 64


def test_expectation_and_drop_rate():
    x = np.ones((20000, 1), "float32")
    y = drop_path(x, 0.3, SEED).numpy()
    assert abs(np.mean(y == 0) - 0.3) < 0.01  # std 0.0032
    assert abs(y.mean() - 1.0) < 0.02  # E[y] = x


def test_rate_zero_identity_and_rate_one_zero():
    x = np.random.default_rng(1).normal(size=(4, 5)).astype("float32")
    np.testing.assert_array_equal(drop_path(x, 0.0, SEED).numpy(), x)
    np.testing.assert_array_equal(drop_path(x, 1.0, SEED).numpy(), 0.0)


def test_xla_per_sample():
    x = np.ones((256, 4), "float32")
    y = tf.function(lambda t: drop_path(t, 0.5, SEED), jit_compile=True)(x).numpy()
    assert np.all(y == y[:, :1]) and set(np.unique(y)) == {0.0, 2.0}
    assert abs(np.mean(y == 0) - 0.5) < 0.1


def test_drop_path_rates_linear_timm_convention():
    np.testing.assert_allclose(drop_path_rates(0.2, 5), [0.0, 0.05, 0.1, 0.15, 0.2])
    assert drop_path_rates(0.2, 1) == [0.0]
    with pytest.raises(ValueError, match="`max_rate`"):
        drop_path_rates(1.0, 3)
    with pytest.raises(ValueError, match="`num_blocks`"):
        drop_path_rates(0.1, 0)
