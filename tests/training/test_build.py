"""`build_for_fit`: the first `fit` traces its train step once, and trains exactly the same."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_cnn_ext import layers as ext
from keras_cnn_ext.testing import count_train_traces
from keras_cnn_ext.training import build_for_fit, loss_scale_optimizer


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = ext.DropBlock2D(0.2, 3, seed=seed)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.3, seed=seed)(x)
    outputs = keras.layers.Dense(3)(x)
    return keras.Model(inputs, outputs)


def _data(n=12):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 8, 8, 3)).astype("float32"), rng.integers(0, 3, n)


def _compile(model, optimizer=None):
    model.compile(
        optimizer or keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def _fit(model, x, y, **kwargs):
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False, **kwargs)
    return history.history, [np.asarray(w) for w in model.weights]


def test_keras_traces_the_first_step_twice_and_once_when_built():
    x, y = _data()
    plain = _compile(_model())
    plain_traces = count_train_traces(plain)
    plain_history, plain_weights = _fit(plain, x, y)
    # Keras 3.15 (TF trainer, no strategy): optimizer slots and metric totals are created in the
    # first trace, so tf.function traces again. If Keras stops doing that, this line says so.
    assert len(plain_traces) == 2, plain_traces

    built = build_for_fit(_compile(_model()), x, y)
    assert len(built.optimizer.variables) > 2  # iterations, learning rate and the moments
    built_traces = count_train_traces(built)
    built_history, built_weights = _fit(built, x, y)
    assert len(built_traces) == 1, built_traces
    # Same variables, same initial values, same random streams (Dropout, DropBlock2D).
    assert built_history == plain_history
    for a, b in zip(built_weights, plain_weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_dataset_input_and_loss_scale_optimizer():
    x, y = _data()
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    model = _compile(_model(), loss_scale_optimizer(keras.optimizers.Adam(1e-2)))
    build_for_fit(model, dataset)
    traces = count_train_traces(model)
    history = model.fit(dataset, epochs=1, verbose=0, shuffle=False)
    assert len(traces) == 1
    assert np.isfinite(history.history["loss"][0])


def test_under_mirrored_strategy_it_changes_nothing():
    if len(tf.config.list_logical_devices("CPU")) < 2:
        pytest.skip("needs 2 logical CPU devices (tests/conftest.py splits the CPU)")
    x, y = _data()
    results = []
    for build in (False, True):
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            model = _compile(_model())
        if build:
            build_for_fit(model, x, y)
        results.append(_fit(model, x, y))
    assert results[0][0] == results[1][0]
    for a, b in zip(results[0][1], results[1][1], strict=True):
        np.testing.assert_array_equal(a, b)


def test_bad_arguments_name_the_argument():
    x, y = _data()
    with pytest.raises(TypeError, match="`model` must be a keras.Model"):
        build_for_fit(keras.layers.Dense(2), x, y)
    with pytest.raises(ValueError, match="`model` must be compiled"):
        build_for_fit(_model(), x, y)
    model = _compile(_model())
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    with pytest.raises(ValueError, match="`y` and `sample_weight` must be None"):
        build_for_fit(model, dataset, y)
    with pytest.raises(TypeError, match="`x` must be array-like"):
        build_for_fit(model, object(), y)
    with pytest.raises(ValueError, match="`x` must have a batch axis"):
        build_for_fit(model, np.float32(1.0), y)
