"""recalibrate_batch_norm: equal-weight batch statistics under the final weights."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_cnn_ext.training import batch_norm_layers, recalibrate_batch_norm


def _conv_bn_net(seed=0):
    keras.utils.set_random_seed(seed)
    inner = keras.Sequential(
        [
            keras.Input((8, 8, 4)),
            keras.layers.Conv2D(6, 3, padding="same"),
            keras.layers.BatchNormalization(momentum=0.99, name="inner_bn"),
        ],
        name="inner",
    )
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization(momentum=0.99, name="outer_bn")(x)
    x = keras.layers.ReLU()(x)
    outputs = inner(x)
    return keras.Model(inputs, outputs)


def test_statistics_are_the_equal_weight_average_of_the_batches():
    rng = np.random.default_rng(0)
    # Four batches with very different statistics: an exponential average would favour the last.
    batches = [
        rng.normal(loc, scale, (16, 5)).astype("float32")
        for loc, scale in [(0, 1), (5, 2), (-3, 0.5), (10, 3)]
    ]
    model = keras.Sequential([keras.Input((5,)), keras.layers.BatchNormalization(momentum=0.9)])
    layer = model.layers[0]
    assert recalibrate_batch_norm(model, np.concatenate(batches), batch_size=16) == 1
    np.testing.assert_allclose(
        layer.moving_mean.numpy(), np.mean([b.mean(0) for b in batches], 0), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        layer.moving_variance.numpy(), np.mean([b.var(0) for b in batches], 0), rtol=1e-5
    )
    assert layer.momentum == 0.9  # restored


def test_inference_equals_training_mode_on_the_calibration_batch_nested_models_included():
    model = _conv_bn_net()
    x = np.random.default_rng(1).normal(2.0, 3.0, (32, 8, 8, 3)).astype("float32")
    assert [layer.name for layer in batch_norm_layers(model)] == ["outer_bn", "inner_bn"]
    stale = model(x, training=False).numpy()
    training = model(x, training=True).numpy()
    assert np.max(np.abs(stale - training)) > 0.5  # the fresh statistics describe other data
    assert recalibrate_batch_norm(model, x, batch_size=32) == 2
    np.testing.assert_allclose(model(x, training=False).numpy(), training, atol=2e-4)


def test_dataset_input_steps_and_frozen_layers():
    model = _conv_bn_net()
    frozen = model.get_layer("inner").get_layer("inner_bn")
    frozen.trainable = False
    before = frozen.moving_mean.numpy().copy()
    x = np.random.default_rng(2).normal(1.0, 1.0, (24, 8, 8, 3)).astype("float32")
    y = np.zeros((24,), "int32")
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    assert recalibrate_batch_norm(model, data, steps=1) == 1
    np.testing.assert_array_equal(frozen.moving_mean.numpy(), before)
    outer = model.get_layer("outer_bn")
    first = model.layers[1](x[:8]).numpy()  # the conv's output on the first batch only
    np.testing.assert_allclose(outer.moving_mean.numpy(), first.mean((0, 1, 2)), atol=1e-5)


def test_bad_input_names_the_argument_and_keeps_the_statistics():
    model = _conv_bn_net()
    layer = model.get_layer("outer_bn")
    layer.moving_mean.assign(np.full((4,), 7.0, "float32"))
    with pytest.raises(TypeError, match="`model`"):
        recalibrate_batch_norm("model.keras", np.zeros((2, 8, 8, 3)))
    with pytest.raises(ValueError, match="`batch_size`"):
        recalibrate_batch_norm(model, np.zeros((2, 8, 8, 3)), batch_size=0)
    with pytest.raises(TypeError, match="`steps`"):
        recalibrate_batch_norm(model, np.zeros((2, 8, 8, 3)), steps=1.5)
    with pytest.raises(TypeError, match="`x`"):
        recalibrate_batch_norm(model, (np.zeros((2, 8, 8, 3)), np.zeros(2)))
    with pytest.raises(ValueError, match="`x`"):
        recalibrate_batch_norm(model, np.zeros((0, 8, 8, 3), "float32"))
    with pytest.raises(ValueError, match="no batch"):
        recalibrate_batch_norm(model, tf.data.Dataset.from_tensor_slices(np.zeros((0, 8, 8, 3))))
    with pytest.raises(ValueError):  # wrong input shape: Keras' own error, statistics restored
        recalibrate_batch_norm(model, np.zeros((2, 5, 5, 7), "float32"))
    np.testing.assert_array_equal(layer.moving_mean.numpy(), np.full((4,), 7.0))
    assert layer.momentum == 0.99
    renorm = keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization(renorm=True)])
    with pytest.raises(ValueError, match="renorm"):
        recalibrate_batch_norm(renorm, np.zeros((4, 3), "float32"))
