"""The augmentation presets: Keras' layers composed with ours."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_cnn_ext.layers import AUGMENTATION_PRESETS, Cutout, RandomErasing, augmentation_preset

X = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")


@pytest.mark.parametrize("name", sorted(AUGMENTATION_PRESETS))
def test_preset_runs_changes_in_training_identity_at_inference(name):
    augment = augmentation_preset(name, seed=1)
    assert isinstance(augment, keras.Sequential)
    train = augment(X, training=True).numpy()
    assert train.shape == X.shape and np.all(np.isfinite(train))
    assert np.all(np.any(train != X, axis=(1, 2, 3)))  # every image augmented
    np.testing.assert_allclose(augment(X, training=False).numpy(), X, atol=1e-4)


def test_strong_preset_composes_keras_layers_with_ours():
    layers = augmentation_preset("strong", seed=0).layers
    types = {type(layer) for layer in layers}
    for keras_cls in (
        keras.layers.RandomRotation,
        keras.layers.RandomTranslation,
        keras.layers.RandomZoom,
        keras.layers.RandomShear,
        keras.layers.RandomBrightness,
        keras.layers.RandomContrast,
        keras.layers.RandomSaturation,
        keras.layers.RandomHue,
    ):
        assert keras_cls in types
    assert Cutout in types and RandomErasing in types
    seeds = [layer.seed for layer in layers]
    assert seeds == list(range(len(layers)))


def test_preset_in_tf_data_and_channels_first():
    augment = augmentation_preset("cutout", cutout_size=8, seed=2)
    ds = tf.data.Dataset.from_tensor_slices(X).batch(2).map(lambda t: augment(t, training=True))
    out = np.concatenate(list(ds.as_numpy_iterator()))
    assert out.shape == X.shape
    cf = augmentation_preset("light", data_format="channels_first", seed=3)
    assert cf(X.transpose(0, 3, 1, 2), training=True).shape == (4, 3, 32, 32)


def test_unknown_preset():
    with pytest.raises(ValueError, match="`name`"):
        augmentation_preset("heavy")
