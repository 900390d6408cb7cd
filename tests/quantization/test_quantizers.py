"""FakeQuant's moving-average ranges (first batch, EMA, frozen, tf.distribute) and WeightQuantizer."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_cnn_ext.quantization import FakeQuant, WeightQuantizer, quantize_model, quantizers_of


def test_range_starts_from_the_first_batch_then_moves_by_ema():
    fq = FakeQuant(ema_decay=0.9)
    fq(tf.constant([[-1.0, 2.0]]), training=True)
    assert (float(fq.range_min), float(fq.range_max)) == (-1.0, 2.0)
    fq(tf.constant([[1.0, 4.0]]), training=True)  # min widened to 0: 0 must stay exact
    assert float(fq.range_min) == pytest.approx(0.9 * -1.0 + 0.1 * 0.0)
    assert float(fq.range_max) == pytest.approx(0.9 * 2.0 + 0.1 * 4.0)
    before = (float(fq.range_min), float(fq.range_max))
    fq(tf.constant([[-9.0, 9.0]]), training=False)
    fq.frozen = True
    out = fq(tf.constant([[-9.0, 9.0]]), training=True)
    assert (float(fq.range_min), float(fq.range_max)) == before
    # Values outside the range clamp to it (after TF's nudge of the range to the 8-bit grid).
    assert float(out[0, 0]) == pytest.approx(before[0], abs=0.01)
    assert float(out[0, 1]) == pytest.approx(before[1], abs=0.02)


def test_gradient_is_the_straight_through_mask_only():
    # The range is a statistic (TFMOT assigns it to a variable and reads it back): no gradient
    # may reach the inputs through the batch's extremes, so an input clipped by the moving
    # range gets exactly 0 and every input inside it exactly 1.
    fq = FakeQuant(ema_decay=0.9)
    fq(tf.constant([[-1.0, 1.0]]), training=True)
    x = tf.constant([[-3.0, -0.5, 0.25, 0.5, 3.0]])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fq(x, training=True)  # range -> (-1.2, 1.2): -3 and 3 are clipped
    np.testing.assert_array_equal(tape.gradient(y, x).numpy(), [[0.0, 1.0, 1.0, 1.0, 0.0]])
    weight = tf.constant([[0.5, -2.0], [1.0, 0.25]])
    with tf.GradientTape() as tape:
        tape.watch(weight)
        q = WeightQuantizer(per_axis=True)(weight)
    np.testing.assert_array_equal(tape.gradient(q, weight).numpy(), np.ones((2, 2)))


def test_fake_quant_rejects_a_bad_decay():
    with pytest.raises(ValueError, match="`ema_decay` must be in"):
        FakeQuant(ema_decay=1.0)


def test_depthwise_weights_use_the_flattened_channel_axis():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 3, 2, 3)).astype("float32")  # in 2, multiplier 3
    kernel[..., 1, 2] *= 10  # channel 1 * 3 + 2 = 5 has a 10x range
    lo, hi = WeightQuantizer(depthwise=True).ranges(kernel)
    assert hi.shape == (6,)
    np.testing.assert_allclose(hi, np.abs(kernel).reshape(9, 6).max(0), rtol=1e-6)
    q = WeightQuantizer(depthwise=True)(kernel).numpy()
    step = (hi.numpy() / 127).reshape(2, 3)
    assert np.all(np.abs(q - kernel) <= step / 2 + 1e-6)
    per_tensor = WeightQuantizer(per_axis=False).ranges(kernel)[1]
    assert per_tensor.shape == () and float(per_tensor) == pytest.approx(np.abs(kernel).max())


def _small_net():
    inputs = keras.Input((6, 6, 2), name="image")
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.Flatten(name="flat")(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="dense")(x))


def _fit_ranges(strategy, weights, x, y):
    with strategy.scope():
        model = _small_net()
        model.set_weights(weights)
        qat = quantize_model(model)
        qat.compile(keras.optimizers.SGD(0.05), "mse")
    qat.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    return {
        q.name: (float(q.range_min.numpy()), float(q.range_max.numpy())) for q in quantizers_of(qat)
    }


def test_mirrored_strategy_learns_the_single_device_ranges():
    devices = tf.config.list_logical_devices("CPU")
    if len(devices) < 2:
        pytest.skip("needs 2 logical CPUs (tests/conftest.py sets them up)")
    rng = np.random.default_rng(0)
    # Replica 1's half of every batch has a far larger range than replica 0's: averaging
    # per-replica extremes instead of reducing them would give different ranges.
    x = rng.normal(size=(64, 6, 6, 2)).astype("float32")
    x[np.arange(64) % 16 >= 8] *= 4
    y = rng.normal(size=(64, 3)).astype("float32")
    weights = _small_net().get_weights()
    single = _fit_ranges(tf.distribute.OneDeviceStrategy("/cpu:0"), weights, x, y)
    mirrored = _fit_ranges(
        tf.distribute.MirroredStrategy([d.name for d in devices[:2]]), weights, x, y
    )
    assert single.keys() == mirrored.keys() and len(single) == 3
    for name, (lo, hi) in single.items():
        assert (lo, hi) != (-6.0, 6.0)
        np.testing.assert_allclose(mirrored[name], (lo, hi), rtol=1e-5, atol=1e-6, err_msg=name)
