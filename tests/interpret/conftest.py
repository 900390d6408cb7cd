"""Shared fixtures: a small CNN trained on bright squares, and a nested MobileNet.

The square data: 32x32 grey noise; class 1 images hold a bright 8x8 square at a random position,
class 0 images hold none. A model that separates them must look at the square, so its maps
should too.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

SIZE, SQUARE = 32, 8


def square_images(n, seed):
    """Returns images (n, 32, 32, 1), labels (n,), and the square's (top, left) (-1 for none)."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0.0, 0.3, (n, SIZE, SIZE, 1)).astype("float32")
    labels = (np.arange(n) % 2).astype("int64")
    corners = np.full((n, 2), -1)
    for i in np.flatnonzero(labels == 1):
        top, left = rng.integers(0, SIZE - SQUARE + 1, 2)
        images[i, top : top + SQUARE, left : left + SQUARE] = rng.uniform(0.8, 1.0)
        corners[i] = top, left
    return images, labels, corners


def square_mask(corners, size=SIZE, square=SQUARE):
    masks = np.zeros((len(corners), size, size), bool)
    for i, (top, left) in enumerate(corners):
        if top >= 0:
            masks[i, top : top + square, left : left + square] = True
    return masks


def build_square_model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 1)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1"),
            keras.layers.MaxPooling2D(name="pool"),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2"),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv3"),
            keras.layers.GlobalAveragePooling2D(name="gap"),
            keras.layers.Dense(2, name="logits"),
        ],
        name="squares",
    )


@pytest.fixture(scope="session")
def square_data():
    train = square_images(1200, seed=1)
    test = square_images(80, seed=2)
    return train, test


@pytest.fixture(scope="session")
def square_model(square_data):
    (x, y, _), (xt, yt, _) = square_data
    model = build_square_model()
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x, y, batch_size=32, epochs=4, verbose=0)
    accuracy = model.evaluate(xt, yt, verbose=0)[1]
    assert accuracy >= 0.95, f"the square model did not learn its task: accuracy {accuracy:.3f}"
    return model


@pytest.fixture(scope="session")
def square_positives(square_data):
    """The test images that hold a square, with their masks."""
    _, (xt, yt, corners) = square_data
    keep = yt == 1
    return xt[keep], square_mask(corners[keep])


@pytest.fixture(scope="session")
def nested_mobilenet():
    """A keras.applications MobileNet base (alpha 0.25, 64x64, random weights) in a Functional model."""
    keras.utils.set_random_seed(3)
    base = keras.applications.MobileNet(
        input_shape=(64, 64, 3), alpha=0.25, weights=None, include_top=False, name="base"
    )
    inputs = keras.Input((64, 64, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1, name="rescale")(inputs)
    x = base(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(4, name="head")(x)
    model = keras.Model(inputs, outputs, name="transfer")
    # Random weights shrink activations layer after layer (outputs near 1e-16); one training-mode
    # pass with momentum 0 sets every batch norm's statistics to realistic values instead.
    norms = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0
    images = np.random.default_rng(0).uniform(0, 255, (32, 64, 64, 3)).astype("float32")
    model(images, training=True)
    for layer in norms:
        layer.momentum = 0.99
    return model


def weight_gradients(model, images, labels):
    """Gradients of a cross-entropy loss w.r.t. every trainable weight (NumPy)."""
    with tf.GradientTape() as tape:
        logits = model(images, training=False)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    return [g.numpy() for g in tape.gradient(loss, model.trainable_weights)]
