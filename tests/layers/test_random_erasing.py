"""RandomErasing layer: contract, exact probability (vs Keras'), model and tf.data use."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_cnn_ext.layers import RandomErasing
from keras_cnn_ext.testing import CONTRACT_CHECKS, LayerSpec, run_contract_check

SPEC = LayerSpec(
    layer_cls=RandomErasing,
    init_kwargs={"probability": 1.0, "seed": 1},
    input_shape=(4, 8, 8, 3),
    random=True,
    input_range=(0.5, 1.0),
    expected_trainable_weights=0,
    expected_non_trainable_weights=0,
    gradient_input_shape=(1, 4, 4, 2),
)


@pytest.mark.parametrize("check", CONTRACT_CHECKS)
def test_contract(check):
    run_contract_check(check, SPEC)


def _erased_fraction(images, value=0.0):
    return float(np.mean(np.any(np.all(np.asarray(images) == value, axis=-1), axis=(1, 2))))


IMAGES = np.full((1000, 16, 16, 3), 100.0, "float32")


@pytest.mark.parametrize("probability", [0.5, 1.0])
def test_erases_with_the_asked_probability(probability):
    out = RandomErasing(probability=probability, seed=4)(IMAGES, training=True)
    # n = 1000: the binomial std at 0.5 is 0.016; at 1.0 the fraction is exact.
    assert abs(_erased_fraction(out) - probability) < 0.05
    if probability == 1.0:
        assert _erased_fraction(out) == 1.0


def test_keras_random_erasing_factor_one_erases_about_half():
    """The difference the README states: Keras' factor=1.0 is not "always erase".

    Keras draws each image's probability uniformly in [0, factor] and erases when a second
    uniform falls below it: P(erase) = E[U] = 0.5 for factor=1.0.
    """
    keras_layer = keras.layers.RandomErasing(factor=1.0, fill_value=0.0, seed=4)
    fraction = _erased_fraction(keras_layer(IMAGES, training=True))
    assert 0.42 < fraction < 0.58
    ours = RandomErasing(probability=1.0, seed=4)(IMAGES, training=True)
    assert _erased_fraction(ours) == 1.0


def test_in_model_and_tf_data_pipeline():
    layer = RandomErasing(probability=1.0, fill_mode="mean", seed=2)
    inputs = keras.Input((10, 10, 3))
    model = keras.Model(inputs, layer(inputs))
    x = np.random.default_rng(0).uniform(0, 1, (8, 10, 10, 3)).astype("float32")
    np.testing.assert_array_equal(model(x, training=False), x)
    assert np.all(np.any(model(x, training=True).numpy() != x, axis=(1, 2, 3)))

    batched = tf.data.Dataset.from_tensor_slices(x).batch(4).map(lambda t: layer(t, training=True))
    out = np.concatenate(list(batched.as_numpy_iterator()))
    assert out.shape == x.shape and np.all(np.any(out != x, axis=(1, 2, 3)))
    single = tf.data.Dataset.from_tensor_slices(x).map(lambda t: layer(t, training=True))
    out = np.stack(list(single.as_numpy_iterator()))
    assert np.all(np.any(out != x, axis=(1, 2, 3)))


def test_channels_first_and_uint8_input():
    layer = RandomErasing(probability=1.0, fill_value=7.0, data_format="channels_first", seed=3)
    x = np.ones((4, 3, 12, 12), "uint8")
    out = layer(x, training=True).numpy()
    assert out.dtype == np.float32
    erased = out == 7.0
    assert np.all(erased == erased[:, :1]) and np.all(erased.any(axis=(1, 2, 3)))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"probability": 1.5}, ValueError, "`probability`"),
        ({"probability": -0.1}, ValueError, "`probability`"),
        ({"area_range": (0.5, 0.2)}, ValueError, "`area_range`"),
        ({"area_range": (0.0, 0.2)}, ValueError, "`area_range`"),
        ({"area_range": (0.1, 1.5)}, ValueError, "`area_range`"),
        ({"aspect_ratio_range": (0.0, 2.0)}, ValueError, "`aspect_ratio_range`"),
        ({"aspect_ratio_range": (1.0, 2.0, 3.0)}, ValueError, "`aspect_ratio_range`"),
        ({"fill_mode": "noise"}, ValueError, "`fill_mode`"),
        ({"value_range": (1.0, 0.0)}, ValueError, "`value_range`"),
        ({"seed": 1.5}, TypeError, "`seed`"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        RandomErasing(**kwargs)


def test_bad_rank():
    with pytest.raises(ValueError, match="`inputs`"):
        RandomErasing()(np.ones((8, 8), "float32"))


def test_probability_message_states_the_accepted_range():
    # Before: the message said [0, 1) while 1.0 was accepted.
    assert RandomErasing(probability=1.0).probability == 1.0
    assert RandomErasing(probability=0.0).probability == 0.0
    with pytest.raises(ValueError, match=r"`probability` must be a float in \[0, 1\]\. "):
        RandomErasing(probability=1.5)
    with pytest.raises(TypeError, match=r"`probability` must be a float in \[0, 1\]\. "):
        RandomErasing(probability="0.5")
