"""Counters for keras_cnn_ext's own layers, checked against plain-Keras equivalents."""

import keras
import pytest

from keras_cnn_ext import layers as ours
from keras_cnn_ext.analysis import profile

L = keras.layers
SHAPE = (8, 8, 16)


def _model(fn):
    inputs = keras.Input(SHAPE)
    return keras.Model(inputs, fn(inputs))


def _quiet_profile(model):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "unknown layer" warning may appear
        return profile(model)


def _plain_se(x, hidden, branches=("avg",)):
    fc1 = L.Conv2D(hidden, 1, activation="relu")
    fc2 = L.Conv2D(x.shape[-1], 1)
    pools = {"avg": L.GlobalAveragePooling2D, "max": L.GlobalMaxPooling2D}
    s = L.Add()([fc2(fc1(pools[b](keepdims=True)(x))) for b in branches])
    return L.Multiply()([x, L.Activation("sigmoid")(s)])


def test_squeeze_excitation_matches_plain_keras():
    se = _quiet_profile(_model(lambda x: ours.SqueezeExcitation(ratio=0.25)(x)))
    plain = profile(_model(lambda x: _plain_se(x, hidden=8)))
    assert se.macs == plain.macs == 2 * 16 * 8
    assert se.params == plain.params
    assert se.records[-1].receptive_field == "global"


def test_channel_attention_runs_the_mlp_on_both_poolings():
    ca = _quiet_profile(_model(lambda x: ours.ChannelAttention(reduced_channels=4)(x)))
    plain = profile(_model(lambda x: _plain_se(x, hidden=4, branches=("avg", "max"))))
    assert ca.macs == plain.macs == 2 * 2 * 16 * 4


def test_eca_and_spatial_attention():
    eca = _quiet_profile(_model(lambda x: ours.EfficientChannelAttention(kernel_size=3)(x)))
    assert eca.macs == 16 * 3
    sa = _quiet_profile(_model(lambda x: ours.SpatialAttention(kernel_size=7)(x)))
    # A 7x7 convolution over the [mean, max] maps at every position.
    assert sa.macs == 8 * 8 * 7 * 7 * 2
    assert sa.records[-1].receptive_field == "7"


def test_cbam_is_traced_through_its_parts():
    cbam = _quiet_profile(_model(lambda x: ours.CBAM(reduced_channels=4, kernel_size=7)(x)))
    assert cbam.macs == 2 * 2 * 16 * 4 + 8 * 8 * 7 * 7 * 2
    assert cbam.params == sum(r.params for r in cbam.records)
    assert not cbam.unknown_layers


@pytest.mark.parametrize(
    "make",
    [
        lambda: ours.DropPath(0.1),
        lambda: ours.DropBlock2D(0.1, block_size=3),
        lambda: ours.SpatialDropout2D(0.1),
    ],
    ids=["drop_path", "dropblock", "spatial_dropout"],
)
def test_regularizers_are_identity_geometry(make):
    inputs = keras.Input(SHAPE)
    x = L.Conv2D(4, 3, padding="same")(inputs)
    model = keras.Model(inputs, L.Conv2D(4, 3, padding="same")(make()(x)))
    result = _quiet_profile(model)
    assert result.records[-1].receptive_field == "5"
    assert result.records[-1].rf_exact


def test_adaptive_pooling_and_local_response_normalization():
    inputs = keras.Input((10, 10, 2))
    x = ours.LocalResponseNormalization(depth_radius=1, name="lrn")(inputs)
    x = ours.AdaptiveAveragePooling2D((4, 4), name="avg")(x)
    y = ours.AdaptiveMaxPooling2D((1, 1), name="max")(x)
    model = keras.Model(inputs, [x, y])
    result = _quiet_profile(model)
    records = {r.name: r for r in result.records}
    assert records["lrn"].other_ops == 8 * 10 * 10 * 2 and records["lrn"].receptive_field == "1"
    # 10 -> 4 bins of 3 pixels, stride 2.5 (PyTorch's bins, as Keras' own layer).
    assert (records["avg"].receptive_field, records["avg"].jump) == ("3", "2.5")
    assert records["max"].receptive_field == "global"
    assert result.output_receptive_field == ["3", "global"]


def test_fractional_max_pooling_if_available():
    if not hasattr(ours, "FractionalMaxPooling2D"):
        pytest.skip("keras_cnn_ext.layers.FractionalMaxPooling2D is not written yet")
    inputs = keras.Input((16, 16, 2))
    layer = ours.FractionalMaxPooling2D(pooling_ratio=1.6, name="fmp")
    result = _quiet_profile(keras.Model(inputs, layer(inputs)))
    record = result.records[-1]
    assert record.output_shape == (1, 10, 10, 2)
    # 16 -> 10: regions of 1 or 2 pixels (2 when not divisible), one more when overlapping.
    expected_rf = 3 if getattr(layer, "overlapping", False) else 2
    assert (record.receptive_field, record.jump) == (str(expected_rf), "1.6")
