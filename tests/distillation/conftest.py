"""Shared, small teacher/student pairs on the real MNIST digits (the teacher trains once).

pytest runs with `--import-mode=importlib`, so this folder goes on `sys.path` for
`distill_helpers`.
"""

import os
import sys

import keras
import pytest

sys.path.insert(0, os.path.dirname(__file__))

from distill_helpers import compiled, conv_net  # noqa: E402

from keras_cnn_ext.datasets import load_mnist_5k  # noqa: E402


@pytest.fixture(scope="session")
def mnist():
    (x_train, y_train), (x_test, y_test) = load_mnist_5k()
    return x_train, y_train, x_test, y_test


@pytest.fixture(scope="session")
def teacher(mnist):
    """A small CNN (26.7k parameters) trained briefly on 1,500 real digits."""
    x_train, y_train, _, _ = mnist
    keras.utils.set_random_seed(0)
    model = compiled(conv_net([8, 16], 32, "t"))
    model.fit(x_train[:1500], y_train[:1500], batch_size=50, epochs=2, verbose=0)
    return model


@pytest.fixture
def batch(mnist):
    x_train, y_train, _, _ = mnist
    return x_train[:64], y_train[:64]
