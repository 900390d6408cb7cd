"""Cutout layer: contract, model and tf.data use, arguments."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_cnn_ext.layers import Cutout
from keras_cnn_ext.testing import CONTRACT_CHECKS, LayerSpec, run_contract_check

SPEC = LayerSpec(
    layer_cls=Cutout,
    init_kwargs={"num_holes": 2, "size": 3, "seed": 1},
    input_shape=(4, 8, 8, 3),
    random=True,
    input_range=(0.5, 1.0),  # nonzero pixels, so every hole changes the output
    expected_trainable_weights=0,
    expected_non_trainable_weights=0,
    gradient_input_shape=(1, 4, 4, 2),
)


@pytest.mark.parametrize("check", CONTRACT_CHECKS)
def test_contract(check):
    run_contract_check(check, SPEC)


def _erased_per_image(images, value):
    return np.all(np.asarray(images) == value, axis=-1).sum(axis=(1, 2))


def test_in_model_training_and_inference():
    inputs = keras.Input((12, 12, 3))
    model = keras.Model(inputs, Cutout(size=(4, 5), fill_value=-1.0, seed=2)(inputs))
    x = np.ones((16, 12, 12, 3), "float32")
    np.testing.assert_array_equal(model(x, training=False), x)
    areas = _erased_per_image(model(x, training=True), -1.0)
    assert np.all(areas > 0) and np.all(areas <= 20) and np.any(areas == 20)


def test_in_tf_data_pipeline_batched_and_single_images():
    layer = Cutout(size=4, seed=3)
    images = np.ones((16, 10, 10, 3), "float32")
    batched = tf.data.Dataset.from_tensor_slices(images).batch(8)
    out = np.concatenate(list(batched.map(lambda x: layer(x, training=True)).as_numpy_iterator()))
    assert out.shape == images.shape and np.all(_erased_per_image(out, 0.0) > 0)
    single = tf.data.Dataset.from_tensor_slices(images).map(lambda x: layer(x, training=True))
    out = np.stack(list(single.as_numpy_iterator()))
    areas = _erased_per_image(out, 0.0)
    assert np.all(areas > 0) and len(set(areas.tolist())) > 1  # each image its own hole


def test_seeded_reproducible():
    x = np.ones((4, 8, 8, 1), "float32")
    a = Cutout(size=3, seed=9)(x, training=True).numpy()
    b = Cutout(size=3, seed=9)(x, training=True).numpy()
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "shape", "error", "match"),
    [
        ({"size": 0}, None, ValueError, "`size`"),
        ({"size": (3, 3, 3)}, None, ValueError, "`size`"),
        ({"num_holes": 0}, None, ValueError, "`num_holes`"),
        ({"fill_value": "zero"}, None, TypeError, "`fill_value`"),
        ({"size": 9}, (2, 8, 8, 3), ValueError, "`size`"),
        ({"size": 4, "data_format": "channels_first"}, (2, 3, 8, 3), ValueError, "`size`"),
        ({"size": 3}, (2, 8, 8, 3, 1), ValueError, "`inputs`"),
    ],
)
def test_bad_arguments(kwargs, shape, error, match):
    with pytest.raises(error, match=match):
        Cutout(**kwargs).build(shape)
