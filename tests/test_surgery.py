"""Model surgery: replace and insert layers in Functional/Sequential/nested models, keep weights."""

import keras
import numpy as np
import pytest

from keras_cnn_ext.layers import AdaptiveAveragePooling2D, SqueezeExcitation
from keras_cnn_ext.surgery import (
    copy_layer,
    flatten_model,
    insert_after,
    replace_layers,
    transform,
)


@pytest.fixture(scope="module")
def resnet50():
    keras.utils.set_random_seed(0)
    return keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=10)


def test_se_after_every_residual_block_and_adaptive_head_on_keras_applications(resnet50):
    x = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype("float32")
    model = insert_after(
        resnet50,
        "conv*_block*_out",
        lambda layer: SqueezeExcitation(name=f"{layer.name}_se"),
    )
    model = replace_layers(
        model,
        {
            "avg_pool": lambda layer: keras.Sequential(
                [AdaptiveAveragePooling2D(1), keras.layers.Flatten()], name="adaptive_pool"
            )
        },
    )
    blocks = [layer for layer in resnet50.layers if layer.name.endswith("_out")]
    se = [layer for layer in model.layers if isinstance(layer, SqueezeExcitation)]
    assert len(blocks) == len(se) == 16
    # Every SE reads its block's output and feeds the next block.
    for block, attention in zip(blocks, se, strict=True):
        assert attention.input._keras_history.operation.name == block.name
    assert model.output_shape == resnet50.output_shape
    assert model.count_params() == resnet50.count_params() + sum(
        layer.count_params() for layer in se
    )
    np.testing.assert_array_equal(
        model.get_layer("conv5_block3_3_conv").kernel.numpy(),
        resnet50.get_layer("conv5_block3_3_conv").kernel.numpy(),
    )
    assert model(x).shape == (2, 10)


def test_copies_keep_weights_and_leave_the_original_alone():
    inputs = keras.Input((4,), name="x")
    hidden = keras.layers.Dense(3, name="d1")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="d2")(hidden))
    x = np.random.default_rng(1).normal(size=(5, 4)).astype("float32")
    copy = transform(model)
    np.testing.assert_array_equal(copy(x), model(x))
    assert copy.get_layer("d1") is not model.get_layer("d1")
    copy.get_layer("d1").kernel.assign(np.zeros((4, 3)))
    assert np.abs(model.get_layer("d1").kernel.numpy()).sum() > 0
    assert [layer.name for layer in copy.layers] == [layer.name for layer in model.layers]
    layer = copy_layer(model.get_layer("d2"))
    assert layer.built and np.array_equal(
        layer.kernel.numpy(), model.get_layer("d2").kernel.numpy()
    )


def test_nested_sequential_and_shared_layers():
    shared = keras.layers.Dense(4, name="shared")
    inner = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(4, name="inner_dense")], name="inner"
    )
    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    outputs = keras.layers.Add(name="add")([shared(a), inner(shared(b))])
    model = keras.Model([a, b], outputs)
    xs = [np.random.default_rng(i).normal(size=(3, 4)).astype("float32") for i in range(2)]
    relu_after = insert_after(
        model, "inner_dense", lambda layer: keras.layers.ReLU(name="inner_relu")
    )
    nested = relu_after.get_layer("inner")
    assert isinstance(nested, keras.Model)
    assert [layer.name for layer in nested.layers][-1] == "inner_relu"
    flat = flatten_model(model)
    assert "inner" not in [layer.name for layer in flat.layers]
    np.testing.assert_allclose(flat(xs), model(xs), rtol=1e-6)
    # The shared layer stays one layer, called twice.
    assert len([layer for layer in flat.layers if layer.name == "shared"]) == 1
    removed = replace_layers(model, {"inner_dense": lambda layer: None})
    np.testing.assert_allclose(
        removed(xs), model.get_layer("shared")(xs[0]) + model.get_layer("shared")(xs[1]), rtol=1e-6
    )


def test_match_by_class_and_predicate_and_sequential_models():
    model = keras.Sequential(
        [keras.Input((6, 6, 2)), keras.layers.Conv2D(3, 3), keras.layers.GlobalAveragePooling2D()]
    )
    new = replace_layers(
        model,
        {
            keras.layers.GlobalAveragePooling2D: lambda _: keras.Sequential(
                [AdaptiveAveragePooling2D(1), keras.layers.Flatten()]
            )
        },
    )
    x = np.random.default_rng(2).normal(size=(2, 6, 6, 2)).astype("float32")
    np.testing.assert_allclose(new(x), model(x), rtol=1e-5, atol=1e-6)
    new = insert_after(
        model, lambda layer: layer.name.startswith("conv"), lambda _: keras.layers.ReLU()
    )
    assert any(isinstance(layer, keras.layers.ReLU) for layer in new.layers)


def test_bad_inputs_raise_clear_errors():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")])
    with pytest.raises(TypeError, match="`mapping` must be a non-empty dict"):
        replace_layers(model, [])
    with pytest.raises(TypeError, match="must be a callable"):
        replace_layers(model, {"d": keras.layers.Dense(2)})
    with pytest.raises(TypeError, match="`match` must be a layer class"):
        insert_after(model, 3, lambda layer: keras.layers.ReLU())
    with pytest.raises(TypeError, match="must return a keras Layer or None"):
        replace_layers(model, {"d": lambda layer: "relu"})
    with pytest.raises(ValueError, match="no input shape yet"):
        transform(keras.Sequential([keras.layers.Dense(2)]))

    class Net(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(TypeError, match="subclassed"):
        transform(Net())
