"""DropPath layer: contract, per-sample masks, expectation, replicas."""

import numpy as np
import pytest
import tensorflow as tf

from keras_cnn_ext.layers import DropPath, drop_path_rates
from keras_cnn_ext.testing import CONTRACT_CHECKS, LayerSpec, run_contract_check

SPEC = LayerSpec(
    layer_cls=DropPath,
    init_kwargs={"rate": 0.5, "seed": 1},
    input_shape=(8, 4, 4, 3),
    random=True,
    expected_trainable_weights=0,
    expected_non_trainable_weights=0,
    gradient_input_shape=(2, 3, 3, 2),
)


@pytest.mark.parametrize("check", CONTRACT_CHECKS)
def test_contract(check):
    run_contract_check(check, SPEC)


def test_per_sample_and_expectation_preserved():
    layer = DropPath(0.2, seed=3)
    x = np.ones((4000, 2, 3), "float32")
    y = layer(x, training=True).numpy()
    per_sample = y.reshape(4000, -1)
    assert np.all(per_sample == per_sample[:, :1])  # whole samples dropped or kept
    assert abs(np.mean(per_sample[:, 0] == 0) - 0.2) < 0.02  # std 0.0063
    assert abs(y.mean() - 1.0) < 0.03  # inverted scaling keeps the expectation
    np.testing.assert_allclose(per_sample[per_sample[:, 0] > 0, 0], 1.25, rtol=1e-6)


def test_identity_at_inference_rate_zero_and_seeded():
    x = np.random.default_rng(0).normal(size=(6, 5)).astype("float32")
    np.testing.assert_array_equal(DropPath(0.5, seed=1)(x, training=False), x)
    np.testing.assert_array_equal(DropPath(0.0, seed=1)(x, training=True), x)
    a = DropPath(0.5, seed=7)(x, training=True).numpy()
    b = DropPath(0.5, seed=7)(x, training=True).numpy()
    np.testing.assert_array_equal(a, b)


def test_bad_arguments():
    for rate in (1.0, -0.5, 2):
        with pytest.raises(ValueError, match="`rate`"):
            DropPath(rate)
    with pytest.raises(TypeError, match="`rate`"):
        DropPath("0.1")
    with pytest.raises(ValueError, match="`seed`"):
        DropPath(0.1, seed=-1)
    with pytest.raises(ValueError, match="`inputs`"):
        DropPath(0.1).build((4,))


def test_replicas_drop_different_samples():
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    strategy = tf.distribute.MirroredStrategy(devices)
    x = np.ones((16, 3), "float32")
    with strategy.scope():
        layer = DropPath(0.5, seed=5)
    inputs = strategy.experimental_distribute_values_from_function(lambda ctx: tf.constant(x))

    @tf.function
    def step(t):
        return strategy.run(lambda v: layer(v, training=True), args=(t,))

    first, second = [r.numpy() for r in strategy.experimental_local_results(step(inputs))]
    assert not np.array_equal(first[:, 0], second[:, 0])


def test_rates_helper_exported_from_layers():
    assert drop_path_rates(0.3, 4) == pytest.approx([0.0, 0.1, 0.2, 0.3])
