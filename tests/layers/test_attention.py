"""create_attention: every accepted spec, errors; attention layers dropped into Keras models."""

import os
import tempfile

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_cnn_ext.layers import (
    CBAM,
    ChannelAttention,
    EfficientChannelAttention,
    SpatialAttention,
    SqueezeExcitation,
    create_attention,
)
from keras_cnn_ext.utils import make_divisible


@pytest.mark.parametrize("spec", [None, False, "none", "None", "", " NONE "])
def test_no_attention(spec):
    assert create_attention(spec) is None
    assert create_attention(spec, channels=64) is None


@pytest.mark.parametrize(
    "name, cls",
    [
        ("se", SqueezeExcitation),
        ("SE", SqueezeExcitation),
        ("eca", EfficientChannelAttention),
        ("cbam", CBAM),
        ("channel", ChannelAttention),
        ("spatial", SpatialAttention),
    ],
)
def test_names(name, cls):
    layer = create_attention(name, channels=32)
    assert type(layer) is cls
    assert not layer.built


def test_kwargs_pass_through():
    layer = create_attention("se", channels=64, ratio=0.5, gate_activation="hard_sigmoid")
    layer.build((None, 4, 4, 64))
    assert layer.reduce_kernel.shape == (64, 32)
    assert layer.get_config()["gate_activation"] == "hard_sigmoid"
    assert create_attention("eca", kernel_size=7).kernel_size == 7
    assert create_attention("cbam", mode="softmax").spatial_attention.mode == "softmax"


def test_unknown_name_lists_accepted_names():
    with pytest.raises(ValueError, match="`attention`") as info:
        create_attention("squeeze")
    for name in ("'se'", "'eca'", "'cbam'", "'none'", "'squeeze'"):
        assert name in str(info.value)


def test_layer_class():
    layer = create_attention(SqueezeExcitation, ratio=0.125)
    assert isinstance(layer, SqueezeExcitation) and layer.ratio == 0.125


def test_registered_class_name():
    layer = create_attention(keras.saving.get_registered_name(CBAM), mode="softmax")
    assert isinstance(layer, CBAM) and layer.spatial_attention.mode == "softmax"
    layer = create_attention("keras_cnn_ext>EfficientChannelAttention")
    assert isinstance(layer, EfficientChannelAttention)


def test_layer_instance_is_a_template():
    template = SqueezeExcitation(ratio=0.5, name="my_se")
    first = create_attention(template)
    second = create_attention(template, divisor=4)
    assert first is not template and second is not first
    assert first.name != template.name
    assert first.ratio == 0.5 and second.divisor == 4
    x = np.ones((1, 2, 2, 16), "float32")
    first(x), second(x)
    # Blocks built from one template never share weights.
    assert first.reduce_kernel is not second.reduce_kernel


def test_callable_receives_channels():
    seen = {}

    def make(channels=None, **kwargs):
        seen.update(channels=channels, **kwargs)
        return SqueezeExcitation(reduced_channels=channels // 4)

    layer = create_attention(make, channels=64, extra=1)
    assert seen == {"channels": 64, "extra": 1}
    layer.build((None, 2, 2, 64))
    assert layer.reduce_kernel.shape == (64, 16)
    assert create_attention(lambda: None) is None


def test_callable_must_return_a_layer():
    with pytest.raises(TypeError, match="`attention`"):
        create_attention(lambda: "se")


@pytest.mark.parametrize("spec", [42, 1.5, ["se"], object])
def test_bad_types(spec):
    with pytest.raises(TypeError, match="`attention`"):
        create_attention(spec)


@pytest.mark.parametrize(
    "channels, error",
    [(0, ValueError), (-3, ValueError), (2.0, TypeError), (True, TypeError), ("64", TypeError)],
)
def test_bad_channels(channels, error):
    with pytest.raises(error, match="`channels`"):
        create_attention("se", channels=channels)


def test_each_call_returns_a_new_layer():
    assert create_attention("se") is not create_attention("se")


# --- drop-in use ---------------------------------------------------------------------------


def test_functional_model_fit_and_save():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    for name in ("se", "eca", "cbam"):
        x = create_attention(name, channels=16)(x)
    x = create_attention("spatial", mode="softmax")(x)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss="mse")
    x_np = np.random.default_rng(0).uniform(size=(4, 8, 8, 3)).astype("float32")
    history = model.fit(x_np, np.zeros((4, 2), "float32"), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded(x_np)), np.asarray(model(x_np)), atol=1e-6)


def test_inserted_into_keras_applications_mobilenet_v2():
    base = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=5
    )
    channels = []

    def add_se(layer):
        clone = layer.__class__.from_config(layer.get_config())
        if not layer.name.endswith("_project_BN"):
            return clone
        channels.append(layer.output.shape[-1])
        # SE after each inverted residual's projection, before the residual add.
        return keras.Sequential([clone, create_attention("se")], name=layer.name + "_se")

    model = keras.models.clone_model(base, clone_function=add_se)
    assert len(channels) == 17
    added = sum(
        2 * c * make_divisible(c * 0.25, 8) + make_divisible(c * 0.25, 8) + c for c in channels
    )
    assert model.count_params() == base.count_params() + added
    x = np.random.default_rng(1).uniform(size=(2, 32, 32, 3)).astype("float32")
    assert model(x).shape == (2, 5)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    history = model.fit(x, np.array([0, 3]), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@settings(max_examples=12, deadline=None)
@given(
    st.sampled_from(["se", "eca", "cbam", "channel", "spatial"]),
    st.integers(1, 3),
    st.integers(1, 9),
    st.integers(1, 9),
    st.integers(1, 40),
    st.sampled_from(["channels_last", "channels_first"]),
)
def test_output_shape_is_input_shape(name, batch, height, width, channels, data_format):
    shape = (
        (batch, height, width, channels)
        if data_format == "channels_last"
        else (batch, channels, height, width)
    )
    layer = create_attention(name, data_format=data_format)
    y = layer(np.random.default_rng(0).uniform(size=shape).astype("float32"))
    assert tuple(y.shape) == shape == layer.compute_output_shape(shape)
    assert np.all(np.isfinite(np.asarray(y)))
