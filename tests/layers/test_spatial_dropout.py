"""Keras' SpatialDropout2D, re-exported: what it does under MirroredStrategy (documented fact)."""

import keras
import numpy as np
import tensorflow as tf

from keras_cnn_ext.layers import SpatialDropout2D


def test_is_keras_layer():
    assert SpatialDropout2D is keras.layers.SpatialDropout2D


def test_same_mask_on_every_replica_under_mirrored_strategy():
    """Keras 3.15's SpatialDropout2D drops the same channels on both replicas.

    Its SeedGenerator state is mirrored, so both replicas draw the same mask. If a Keras
    release fixes this, this test fails and the note in layers/spatial_dropout.py must go.
    """
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    strategy = tf.distribute.MirroredStrategy(devices)
    x = np.ones((8, 4, 4, 16), "float32")
    with strategy.scope():
        layer = SpatialDropout2D(0.5, seed=1)
    inputs = strategy.experimental_distribute_values_from_function(lambda ctx: tf.constant(x))

    @tf.function
    def step(t):
        return strategy.run(lambda v: layer(v, training=True), args=(t,))

    first, second = [r.numpy() for r in strategy.experimental_local_results(step(inputs))]
    assert np.any(first == 0)  # it did drop channels...
    np.testing.assert_array_equal(first, second)  # ...the same ones on both replicas
