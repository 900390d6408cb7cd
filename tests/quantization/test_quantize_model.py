"""quantize_model: placement of fake quants, copies, nesting, configs, bad input."""

import warnings

import keras
import numpy as np
import pytest

from keras_cnn_ext.layers import DropPath, ResidualBlock, SqueezeExcitation
from keras_cnn_ext.quantization import (
    FakeQuant,
    QuantizeConfig,
    QuantizeWrapper,
    quantize_model,
    quantizers_of,
)


def conv_bn_relu_net(input_shape=(12, 12, 3)):
    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.Conv2D(8, 3, use_bias=False, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    y = keras.layers.Conv2D(8, 1, name="side")(x)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.ReLU(name="add_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(4, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs, name="net")


def _train_step(model, x):
    """One eager SGD step (what `fit` does, without tracing a train function)."""
    import tensorflow as tf

    optimizer = keras.optimizers.SGD(0.1)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(x, training=True)))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))


def _producer(tensor):
    return tensor._keras_history.operation


def _fake_quant_after(model):
    """Names of the layers whose output goes straight into a FakeQuant."""
    names = set()
    for layer in quantizers_of(model):
        source = _producer(layer.input)
        names.add(source.layer.name if isinstance(source, QuantizeWrapper) else source.name)
    return names


def test_fake_quant_placement_follows_the_patterns():
    qat = quantize_model(conv_bn_relu_net())
    # Conv + BN + ReLU and Add + ReLU are units.
    assert _fake_quant_after(qat) == {
        "image", "relu", "side", "add_relu", "gap", "head", "head_softmax"
    }  # fmt: skip
    # The int8 softmax's own output range, 1/256 steps from 0: no requantize, no learning.
    assert qat.get_layer("head_softmax_fq").fixed_range == (0.0, 255 / 256)
    wrapped = {
        layer.layer.name: layer for layer in qat.layers if isinstance(layer, QuantizeWrapper)
    }
    assert set(wrapped) == {"conv", "side", "head"}
    assert wrapped["conv"].weight_quantizers["kernel"].per_axis
    assert not wrapped["head"].weight_quantizers["kernel"].per_axis  # Dense: per tensor
    assert qat.get_layer("head").layer.activation.__name__ == "linear"  # softmax split off


def test_original_untouched_and_outputs_equal_before_training():
    model = conv_bn_relu_net()
    x = np.random.default_rng(0).normal(size=(4, 12, 12, 3)).astype("float32")
    before = [w.copy() for w in model.get_weights()]
    expected = model.predict(x, verbose=0)
    qat = quantize_model(model)
    _train_step(qat, x)
    for old, new in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)
    np.testing.assert_array_equal(model.predict(x, verbose=0), expected)
    assert all(not isinstance(layer, (FakeQuant, QuantizeWrapper)) for layer in model.layers)


def test_nested_models_and_sequential_are_supported():
    inner = keras.Sequential(
        [keras.Input((10,)), keras.layers.Dense(6, name="d1"), keras.layers.ReLU(name="r1")],
        name="inner",
    )
    inputs = keras.Input((10,))
    outer = keras.Model(inputs, keras.layers.Dense(3, name="d2")(inner(inputs)))
    qat = quantize_model(outer)
    names = [layer.name for layer in qat.layers]
    assert "d1" in names and "d2" in names and "inner" not in names
    x = np.random.default_rng(1).normal(size=(5, 10)).astype("float32")
    assert qat(x).shape == (5, 3)
    sequential = keras.Sequential([keras.Input((10,)), keras.layers.Dense(2)])
    assert len(quantizers_of(quantize_model(sequential))) == 2


def test_residual_block_with_se_and_drop_path_is_expanded_exactly():
    inputs = keras.Input((8, 8, 8))
    x = ResidualBlock(8, block_type="basic", attention="se", drop_path_rate=0.1, name="b1")(inputs)
    x = ResidualBlock(16, block_type="basic", strides=2, shortcut="zero_pad", name="b2")(x)
    model = keras.Model(inputs, x)
    from keras_cnn_ext.quantization.qat import _expand

    flat = _expand(model, QuantizeConfig())
    kinds = {type(layer) for layer in flat.layers}
    assert ResidualBlock not in kinds and SqueezeExcitation not in kinds and DropPath in kinds
    x = np.random.default_rng(2).normal(size=(2, 8, 8, 8)).astype("float32")
    np.testing.assert_allclose(flat(x), model(x), rtol=1e-5, atol=1e-5)
    qat = quantize_model(model)
    # An unquantized copy of the block's layers would leave float ops: every conv is wrapped.
    assert sum(isinstance(layer, QuantizeWrapper) for layer in qat.layers) == 2 + 2 + 2  # SE: 2


@pytest.mark.parametrize("builder", ["DenseNetBC", "MobileNetV1"])
def test_package_builders_expand_to_quantized_primitives(builder):
    from keras_cnn_ext import models

    kwargs = {"depth": 16, "growth_rate": 4} if builder == "DenseNetBC" else {"alpha": 0.25}
    model = getattr(models, builder)(input_shape=(32, 32, 3), classes=3, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every layer has a rule: no float leftovers
        qat = quantize_model(model)
    x = np.random.default_rng(4).uniform(size=(2, 32, 32, 3)).astype("float32")
    from keras_cnn_ext.quantization.qat import _expand

    np.testing.assert_allclose(_expand(model, QuantizeConfig())(x), model(x), atol=1e-5)
    assert qat(x).shape == (2, 3)


def test_skip_by_name_and_class_and_per_tensor_weights():
    qat = quantize_model(conv_bn_relu_net(), skip=["side", keras.layers.GlobalAveragePooling2D])
    assert "side" not in _fake_quant_after(qat) and "gap" not in _fake_quant_after(qat)
    assert isinstance(qat.get_layer("side"), keras.layers.Conv2D)
    per_tensor = quantize_model(conv_bn_relu_net(), per_tensor_weights=True, fold_batch_norm=False)
    assert not per_tensor.get_layer("conv").weight_quantizers["kernel"].per_axis


def test_unsupported_layer_stays_float_with_a_warning_and_strict_raises():
    inputs = keras.Input((6,))
    x = keras.layers.Dense(4, name="d")(inputs)
    x = keras.layers.LayerNormalization(name="ln")(x)
    model = keras.Model(inputs, x)
    with pytest.warns(UserWarning, match=r"'ln' \(LayerNormalization\)"):
        qat = quantize_model(model)
    assert isinstance(qat.get_layer("ln"), keras.layers.LayerNormalization)
    with pytest.raises(ValueError, match=r"'ln' \(LayerNormalization\)"):
        quantize_model(model, strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quantize_model(model, skip="ln")  # skipping it explicitly is silent


def test_subclassed_model_raises_a_clear_error():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    net = Net()
    net(np.zeros((1, 3), "float32"))
    with pytest.raises(TypeError, match="subclassed.*no layer graph"):
        quantize_model(net)
    with pytest.raises(TypeError, match="`model` must be a Functional or Sequential"):
        quantize_model(keras.layers.Dense(2))
    with pytest.raises(TypeError, match="`config` must be a QuantizeConfig"):
        quantize_model(conv_bn_relu_net(), config={"strict": True})


def test_qat_model_saves_and_loads(tmp_path):
    qat = quantize_model(conv_bn_relu_net())
    x = np.random.default_rng(3).normal(size=(4, 12, 12, 3)).astype("float32")
    _train_step(qat, x)
    path = tmp_path / "qat.keras"
    qat.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), qat.predict(x, verbose=0), atol=1e-6)
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in qat.layers]
