"""Gradient accumulation: k micro-batches == one k-times larger batch (no BN); what BN does."""

import keras
import numpy as np
import pytest

from keras_cnn_ext.training import make_optimizer, with_gradient_accumulation

K, MICRO = 4, 4
RNG = np.random.default_rng(0)
X = RNG.normal(size=(2 * K * MICRO, 6)).astype("float32")
Y = RNG.normal(size=(2 * K * MICRO, 2)).astype("float32")


def _model(bn=False):
    keras.utils.set_random_seed(0)
    layers = [keras.Input((6,)), keras.layers.Dense(8, activation="tanh")]
    if bn:
        layers.append(keras.layers.BatchNormalization(momentum=0.9))
    layers.append(keras.layers.Dense(2))
    return keras.Sequential(layers)


def _train(optimizer, batch_size, bn=False):
    model = _model(bn)
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(X, Y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
    return model


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_k_micro_batches_equal_one_large_batch(momentum):
    accumulated = _train(
        with_gradient_accumulation(keras.optimizers.SGD(0.1, momentum=momentum), K), MICRO
    )
    large = _train(keras.optimizers.SGD(0.1, momentum=momentum), K * MICRO)
    assert int(accumulated.optimizer.iterations) == int(large.optimizer.iterations) == 2
    for a, b in zip(accumulated.get_weights(), large.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)


def test_recipe_helper_gives_the_same_accumulation():
    recipe = _train(make_optimizer("sgd", 0.1, gradient_accumulation_steps=K), MICRO)
    large = _train(keras.optimizers.SGD(0.1), K * MICRO)
    for a, b in zip(recipe.get_weights(), large.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)


def test_with_batch_normalization_micro_batches_differ():
    """BN normalises each micro-batch with its own statistics and updates its moving averages
    at every micro-step (K times per weight update), so the result is not the large batch's."""
    accumulated = _train(with_gradient_accumulation(keras.optimizers.SGD(0.1), K), MICRO, bn=True)
    large = _train(keras.optimizers.SGD(0.1), K * MICRO, bn=True)
    kernel_diff = np.abs(accumulated.layers[0].kernel.numpy() - large.layers[0].kernel.numpy())
    assert kernel_diff.max() > 1e-4

    # The moving mean follows one EMA step per micro-batch: with the weights frozen (lr 0)
    # the hidden activations h are fixed, and the hand computation is exact.
    frozen = _train(with_gradient_accumulation(keras.optimizers.SGD(0.0), K), MICRO, bn=True)
    h = np.asarray(frozen.layers[0](X))
    expected = np.zeros(8)
    for start in range(0, len(X), MICRO):
        expected = 0.9 * expected + 0.1 * h[start : start + MICRO].mean(0)
    np.testing.assert_allclose(frozen.layers[1].moving_mean.numpy(), expected, atol=1e-6)
    once_per_update = np.zeros(8)
    for start in range(0, len(X), K * MICRO):
        once_per_update = 0.9 * once_per_update + 0.1 * h[start : start + K * MICRO].mean(0)
    assert np.abs(expected - once_per_update).max() > 1e-3


@pytest.mark.parametrize("steps, error", [(0, ValueError), (-2, ValueError), (2.0, TypeError)])
def test_bad_accumulation_steps(steps, error):
    with pytest.raises(error, match="`gradient_accumulation_steps`"):
        with_gradient_accumulation(keras.optimizers.SGD(), steps)


def test_built_optimizer_is_refused_and_one_means_none():
    assert with_gradient_accumulation(keras.optimizers.SGD(), 1).gradient_accumulation_steps is None
    optimizer = keras.optimizers.SGD()
    optimizer.build([keras.Variable(np.zeros(2))])
    with pytest.raises(ValueError, match="already built"):
        with_gradient_accumulation(optimizer, 2)
