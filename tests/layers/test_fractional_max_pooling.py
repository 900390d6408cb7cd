"""FractionalMaxPooling2D: contract, shapes, train/inference behaviour, use inside models."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_cnn_ext.layers.fractional_max_pooling import FractionalMaxPooling2D
from keras_cnn_ext.ops.fractional_max_pool import fractional_max_pool2d
from keras_cnn_ext.testing import CONTRACT_CHECKS, LayerSpec, run_contract_check

SPEC = LayerSpec(
    layer_cls=FractionalMaxPooling2D,
    init_kwargs={"pooling_ratio": (1.414, 1.3), "overlapping": True, "seed": 3},
    # Pseudo-random regions take only as many distinct layouts as the denominator of
    # size / output size (21 -> 14 has 3): 23 -> 16 and 19 -> 14 make a repeat draw unlikely.
    input_shape=(2, 23, 19, 3),
    expected_output_shape=(2, 16, 14, 3),
    random=True,
    expected_trainable_weights=0,
    gradient_input_shape=(1, 6, 5, 2),
)


@pytest.mark.parametrize("check", CONTRACT_CHECKS)
def test_contract(check):
    run_contract_check(check, SPEC)


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(2, 40),
    w=st.integers(2, 40),
    rh=st.floats(1.01, 3.0),
    rw=st.floats(1.01, 3.0),
    channels_first=st.booleans(),
)
def test_output_shape_matches_op(h, w, rh, rw, channels_first):
    if np.floor(np.float32(h) / np.float32(rh)) < 1 or np.floor(np.float32(w) / np.float32(rw)) < 1:
        return
    data_format = "channels_first" if channels_first else "channels_last"
    shape = (1, 2, h, w) if channels_first else (1, h, w, 2)
    layer = FractionalMaxPooling2D((rh, rw), data_format=data_format)
    x = np.zeros(shape, "float32")
    expected = tuple(fractional_max_pool2d(x, (rh, rw), data_format=data_format)[0].shape)
    assert layer.compute_output_shape(shape) == expected
    assert tuple(layer(x).shape) == expected
    none_shape = (None, 2, None, None) if channels_first else (None, None, None, 2)
    assert layer.compute_output_shape(none_shape) == none_shape


def test_training_draws_new_regions_and_inference_is_fixed():
    layer = FractionalMaxPooling2D(1.414, seed=5)
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 2)).astype("float32")
    a, b = layer(x, training=True), layer(x, training=True)
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(layer(x), layer(x, training=False))
    # Inference regions depend on the seed and input size only: a fresh layer agrees.
    np.testing.assert_array_equal(FractionalMaxPooling2D(1.414, seed=5)(x), layer(x))


def test_inference_same_with_static_or_dynamic_size():
    layer = FractionalMaxPooling2D((1.7, 1.3), overlapping=True, seed=2)
    x = np.random.default_rng(1).normal(size=(1, 13, 11, 3)).astype("float32")
    dynamic = tf.function(
        lambda t: layer(t, training=False),
        input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)],
    )
    np.testing.assert_array_equal(dynamic(x), layer(x, training=False))


def test_static_inference_graph_has_no_random_ops():
    layer = FractionalMaxPooling2D(1.5, seed=0)
    fn = tf.function(lambda t: layer(t, training=False))
    graph = fn.get_concrete_function(tf.TensorSpec((None, 12, 12, 1))).graph
    ops = {op.type for op in graph.get_operations()}
    assert not any("Random" in op or "Xla" in op for op in ops), ops
    assert "GatherV2" in ops


def test_bad_arguments():
    with pytest.raises(ValueError, match="pooling_ratio"):
        FractionalMaxPooling2D(1.0)
    with pytest.raises(ValueError, match="pooling_ratio"):
        FractionalMaxPooling2D((2.0, 0.5))
    with pytest.raises(TypeError, match="pooling_ratio"):
        FractionalMaxPooling2D("big")
    with pytest.raises(ValueError, match="seed"):
        FractionalMaxPooling2D(1.5, seed=-1)
    with pytest.raises(ValueError, match="data_format"):
        FractionalMaxPooling2D(1.5, data_format="NHWC")
    with pytest.raises(TypeError, match="overlapping"):
        FractionalMaxPooling2D(1.5, overlapping="yes")
    with pytest.raises(ValueError, match="pooling_ratio"):
        FractionalMaxPooling2D(3.0)(np.zeros((1, 2, 8, 1), "float32"))
    with pytest.raises(ValueError):
        FractionalMaxPooling2D(1.5)(np.zeros((1, 8, 8), "float32"))


def test_in_sequential_functional_and_subclassed_models():
    x = np.random.default_rng(2).normal(size=(4, 12, 12, 3)).astype("float32")
    y = np.zeros((4, 2), "float32")
    sequential = keras.Sequential(
        [
            keras.Input((12, 12, 3)),
            keras.layers.Conv2D(4, 3, padding="same"),
            FractionalMaxPooling2D(1.414, overlapping=True, seed=1),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2),
        ]
    )
    inputs = keras.Input((12, 12, 3))
    hidden = FractionalMaxPooling2D((1.5, 1.25), seed=2)(keras.layers.Conv2D(4, 3)(inputs))
    functional = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(hidden)))

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.pool = FractionalMaxPooling2D(1.7, pseudo_random=False, seed=3)
            self.head = keras.layers.Dense(2)

        def call(self, t, training=None):
            return self.head(keras.ops.mean(self.pool(t, training=training), axis=(1, 2)))

    for model in (sequential, functional, Subclassed()):
        model.compile("sgd", "mse", jit_compile=False)
        history = model.fit(x, y, epochs=1, batch_size=2, verbose=0)
        assert np.isfinite(history.history["loss"][0])
        np.testing.assert_array_equal(model.predict(x, verbose=0), model.predict(x, verbose=0))


def test_inside_keras_applications_model():
    base = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(32, 32, 3))
    # Replace the stem's 3x3/2 max pooling by fractional pooling with a sqrt(2) ratio.
    stem = base.get_layer("pool1_pool")
    inputs = base.input
    pooled = FractionalMaxPooling2D(1.414, overlapping=True, seed=0)(
        base.get_layer("pool1_pad").output
    )
    truncated = keras.Model(inputs, base.get_layer("pool1_pad").output)
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            truncated,
            FractionalMaxPooling2D(1.414, overlapping=True, seed=0),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3),
        ]
    )
    assert pooled.shape[1:3] == (12, 12) and stem.output.shape[1:3] == (8, 8)
    x = np.random.default_rng(3).normal(size=(2, 32, 32, 3)).astype("float32")
    model.compile("sgd", "mse", jit_compile=False)
    model.fit(x, np.zeros((2, 3), "float32"), epochs=1, verbose=0)
    np.testing.assert_array_equal(model.predict(x, verbose=0), model.predict(x, verbose=0))
