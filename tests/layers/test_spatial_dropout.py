"""SpatialDropout2D: contract, whole channel maps, scaling, and replicas against Keras' layer."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_cnn_ext.layers import SpatialDropout2D
from keras_cnn_ext.testing import CONTRACT_CHECKS, LayerSpec, run_contract_check

SPEC = LayerSpec(
    layer_cls=SpatialDropout2D,
    init_kwargs={"rate": 0.5, "seed": 1},
    input_shape=(4, 4, 4, 6),
    random=True,
    expected_trainable_weights=0,
    expected_non_trainable_weights=0,
    gradient_input_shape=(1, 3, 3, 2),
)


@pytest.mark.parametrize("check", CONTRACT_CHECKS)
def test_contract(check):
    run_contract_check(check, SPEC)


def test_is_our_layer_with_keras_arguments():
    assert SpatialDropout2D is not keras.layers.SpatialDropout2D
    config = SpatialDropout2D(0.3, data_format="channels_first", seed=2).get_config()
    assert {k: config[k] for k in ("rate", "data_format", "seed")} == {
        "rate": 0.3,
        "data_format": "channels_first",
        "seed": 2,
    }


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_drops_whole_channel_maps_with_inverted_scaling(data_format):
    shape = (200, 3, 3, 10) if data_format == "channels_last" else (200, 10, 3, 3)
    y = SpatialDropout2D(0.25, data_format=data_format, seed=3)(
        np.ones(shape, "float32"), training=True
    ).numpy()
    maps = (y if data_format == "channels_first" else y.transpose(0, 3, 1, 2)).reshape(2000, 9)
    assert np.all(maps == maps[:, :1])  # a map is dropped or kept whole
    np.testing.assert_allclose(np.unique(maps), [0.0, 1 / 0.75], rtol=1e-6)
    assert abs(np.mean(maps[:, 0] == 0) - 0.25) < 0.03  # std 0.0097
    assert abs(y.mean() - 1.0) < 0.05


def test_identity_at_inference_and_rate_zero_and_seeded():
    x = np.random.default_rng(0).normal(size=(2, 3, 3, 4)).astype("float32")
    np.testing.assert_array_equal(SpatialDropout2D(0.5, seed=1)(x, training=False), x)
    np.testing.assert_array_equal(SpatialDropout2D(0.0, seed=1)(x, training=True), x)
    a = SpatialDropout2D(0.5, seed=7)(x, training=True).numpy()
    np.testing.assert_array_equal(a, SpatialDropout2D(0.5, seed=7)(x, training=True).numpy())


def test_bad_arguments():
    for rate in (1.0, -0.1):
        with pytest.raises(ValueError, match="`rate`"):
            SpatialDropout2D(rate)
    with pytest.raises(TypeError, match="`rate`"):
        SpatialDropout2D("0.5")
    with pytest.raises(ValueError, match="`data_format`"):
        SpatialDropout2D(0.5, data_format="NHWC")
    with pytest.raises(ValueError, match="`seed`"):
        SpatialDropout2D(0.5, seed=-1)
    with pytest.raises(ValueError):
        SpatialDropout2D(0.5)(np.ones((2, 4, 4), "float32"))


def _replica_masks(layer):
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    strategy = tf.distribute.MirroredStrategy(devices)
    x = np.ones((8, 4, 4, 16), "float32")
    with strategy.scope():
        layer = layer()
    inputs = strategy.experimental_distribute_values_from_function(lambda ctx: tf.constant(x))

    @tf.function
    def step(t):
        return strategy.run(lambda v: layer(v, training=True), args=(t,))

    return [r.numpy() for r in strategy.experimental_local_results(step(inputs))]


def test_keras_layer_draws_the_same_mask_on_every_replica():
    """Keras 3.15's SpatialDropout2D drops the same channels on both replicas.

    Its SeedGenerator state is mirrored, so both replicas draw the same mask. If a Keras
    release fixes this, this test fails and the docstring of our layer must change.
    """
    first, second = _replica_masks(lambda: keras.layers.SpatialDropout2D(0.5, seed=1))
    assert np.any(first == 0)  # it did drop channels...
    np.testing.assert_array_equal(first, second)  # ...the same ones on both replicas


def test_ours_draws_a_different_mask_on_each_replica():
    first, second = _replica_masks(lambda: SpatialDropout2D(0.5, seed=1))
    assert np.any(first == 0) and np.any(second == 0)
    assert not np.array_equal(first, second)
