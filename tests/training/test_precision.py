"""Mixed precision: every layer and builder family trains one step under both mixed policies."""

import inspect
from unittest import mock

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_cnn_ext import layers as ext
from keras_cnn_ext import models
from keras_cnn_ext.models.resnet import RESNET_DEPTHS
from keras_cnn_ext.training import (
    POLICIES,
    apply_precision,
    build_for_fit,
    check_policy,
    choose_policy,
    loss_scale_optimizer,
    precision_policy_map,
)

MIXED = ("mixed_float16", "mixed_bfloat16")

# One entry per public layer class of keras_cnn_ext.layers (checked below), on 8x8x8 inputs.
LAYERS = {
    "AdaptiveAveragePooling2D": {"output_size": 2},
    "AdaptiveMaxPooling2D": {"output_size": 2},
    "CBAM": {},
    "ChannelAttention": {},
    "Cutout": {"size": 2, "seed": 1},
    "DenseBlock": {"num_layers": 2, "growth_rate": 4},
    "DropBlock2D": {"rate": 0.2, "block_size": 3, "seed": 1},
    "DropPath": {"rate": 0.2, "seed": 1},
    "EfficientChannelAttention": {},
    "FractionalMaxPooling2D": {"pooling_ratio": 1.5, "seed": 1},
    "GroupBatchNormalization": {"group": "p4"},
    "GroupConv2D": {"filters": 4, "kernel_size": 3, "group": "p4", "padding": "same"},
    "GroupPooling": {"group": "p4"},
    "GroupedConv2D": {"filters": 8, "kernel_size": 3, "groups": 2, "padding": "same"},
    "LocalResponseNormalization": {},
    "RandomErasing": {"probability": 1.0, "value_range": (0.0, 1.0), "seed": 1},
    "ResidualBlock": {"filters": 8},
    "SeparableConvBlock": {"filters": 8},
    "SpatialAttention": {},
    "SpatialDropout2D": {"rate": 0.2, "seed": 1},
    "SqueezeExcitation": {},
    "TransitionBlock": {},
}


def _one_block_per_stage(build):
    with mock.patch.dict(RESNET_DEPTHS, {26: ("bottleneck", (1, 1, 1, 1))}):
        return build()


BUILDERS = {
    "lenet5": lambda: models.LeNet5(input_shape=(32, 32, 1), classes=3),
    "alexnet": lambda: models.AlexNet(input_shape=(67, 67, 3), classes=3, fc_units=(8, 8)),
    "vgg11": lambda: models.VGG(
        11, input_shape=(32, 32, 3), classes=3, width_multiplier=0.125, fc_units=(8,)
    ),
    "resnet8": lambda: models.ResNet8(input_shape=(16, 16, 3), classes=3),
    # ResNet-26's row patched to one bottleneck block per stage: the same pre-activation, SE
    # and drop-path code in half the trace.
    "seresnet26v2_one_block": lambda: _one_block_per_stage(
        lambda: models.ResNet(
            26,
            version="v2",
            attention="se",
            input_shape=(32, 32, 3),
            classes=3,
            width_multiplier=0.125,
            drop_path_rate=0.1,
            seed=0,
        )
    ),
    # DenseNet 10 (CIFAR layout, two units a block): the same DenseBlock/TransitionBlock layers
    # as DenseNet-121, traced in a fraction of the time.
    "densenet": lambda: models.DenseNet(
        10, layout="cifar", growth_rate=4, input_shape=(32, 32, 3), classes=3
    ),
    "mobilenet": lambda: models.MobileNetV1(input_shape=(32, 32, 3), alpha=0.25, classes=3),
    "unet": lambda: models.UNet((16, 16, 3), classes=3, base_filters=4, depth=2),
}


def _public_layer_classes():
    return sorted(
        name
        for name, obj in vars(ext).items()
        if inspect.isclass(obj) and issubclass(obj, keras.layers.Layer)
    )


def test_every_public_layer_is_covered():
    assert sorted(LAYERS) == _public_layer_classes()


def _all_layers_model():
    """One branch per layer: layer -> global pool -> Dense; branches concatenated -> softmax."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 8))
    features = []
    for name in sorted(LAYERS):
        y = getattr(ext, name)(**LAYERS[name], name=name.lower())(inputs)
        y = keras.layers.GlobalAveragePooling2D()(y)
        features.append(keras.layers.Dense(2)(y))
    x = keras.layers.Concatenate()(features)
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs)


def _train_step(model, x, y, policy):
    model.compile(
        # Keras' default initial loss scale (2**15) makes the first float16 steps overflow
        # (and be skipped) in a 22-branch model; 2**8 lets the very first step apply.
        optimizer=loss_scale_optimizer(keras.optimizers.SGD(0.01), policy, initial_scale=2.0**8),
        loss="sparse_categorical_crossentropy",
    )
    build_for_fit(model, x, y)  # the loss-scale variables before the trace: one trace
    before = [np.array(w) for w in model.trainable_weights]
    loss = float(model.train_on_batch(x, y))
    changed = sum(
        not np.array_equal(b, np.array(w))
        for b, w in zip(before, model.trainable_weights, strict=True)
    )
    return loss, changed


@pytest.fixture
def global_policy():
    previous = keras.config.dtype_policy()
    yield keras.config.set_dtype_policy
    keras.config.set_dtype_policy(previous)


@pytest.mark.parametrize("policy", MIXED)
def test_every_layer_trains_under_the_global_mixed_policy(policy, global_policy):
    global_policy(policy)
    model = _all_layers_model()
    half = policy.split("_")[1]
    for name in LAYERS:
        assert model.get_layer(name.lower()).compute_dtype == half, name
    x = np.random.default_rng(0).uniform(size=(4, 8, 8, 8)).astype("float32")
    loss, changed = _train_step(model, x, np.arange(4) % 3, policy)
    assert np.isfinite(loss)
    assert changed > 0.9 * len(model.trainable_weights)


def _small_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = ext.LocalResponseNormalization(name="lrn")(x)
    x = ext.ResidualBlock(8, name="block")(x)
    x = ext.DropBlock2D(0.1, 3, seed=2, name="dropblock")(x)
    x = ext.AdaptiveAveragePooling2D(2, name="pool")(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("policy", MIXED)
def test_apply_precision_keeps_sensitive_layers_float32_and_trains(policy):
    reference = _small_model()
    model = apply_precision(reference, policy)
    half = policy.split("_")[1]
    dtypes = {layer.name: layer.compute_dtype for layer in model.layers}
    for name in ("head", "lrn", "pool"):
        assert dtypes[name] == "float32", name
    for name in ("conv", "block", "dropblock"):
        assert dtypes[name] == half, name
    assert keras.backend.standardize_dtype(model.output.dtype) == "float32"
    x = np.random.default_rng(1).uniform(size=(4, 8, 8, 4)).astype("float32")
    # Same weights, same function (to half precision).
    np.testing.assert_allclose(
        np.asarray(model(x, training=False)),
        np.asarray(reference(x, training=False)),
        atol=2e-2 if half == "bfloat16" else 5e-3,
    )
    optimizer = loss_scale_optimizer(keras.optimizers.SGD(0.01), policy)
    # The model's own policy is the map's default, so `compile` would not add loss scaling.
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer) == (half == "float16")
    loss, changed = _train_step(model, x, np.arange(4) % 3, policy)
    assert np.isfinite(loss)
    assert changed == len(model.trainable_weights)


@pytest.mark.parametrize("policy", MIXED)
@pytest.mark.parametrize("builder", sorted(BUILDERS))
def test_every_builder_family_trains_one_step(builder, policy, global_policy):
    global_policy(policy)
    keras.utils.set_random_seed(0)
    model = BUILDERS[builder]()
    shape = (2, *model.input_shape[1:])
    x = np.random.default_rng(0).uniform(size=shape).astype("float32")
    y = np.zeros((2, *model.output_shape[1:-1]), "int64")
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    if policy == "mixed_float16":  # Keras wraps it itself for a mixed_float16 model
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    loss = float(model.train_on_batch(x, y))
    assert np.isfinite(loss), builder


def test_float16_overflow_step_is_skipped_with_weights_unchanged():
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(4, kernel_initializer="ones", dtype="mixed_float16")]
    )
    optimizer = loss_scale_optimizer(keras.optimizers.SGD(0.1), "mixed_float16")
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    model.compile(optimizer=optimizer, loss="mse")
    x = np.full((2, 4), 30000.0, "float32")  # 4 * 30000 overflows float16 (max 65504)
    model.train_on_batch(x[:, :1].repeat(4, 1) * 0 + 1.0, np.zeros((2, 4)))  # builds; finite
    before = [np.array(w) for w in model.weights]
    scale = float(optimizer.dynamic_scale)
    iterations = int(optimizer.iterations)
    model.train_on_batch(x, np.zeros((2, 4)))
    for b, w in zip(before, model.weights, strict=True):
        np.testing.assert_array_equal(b, np.array(w))
    assert float(optimizer.dynamic_scale) == scale / 2
    assert int(optimizer.iterations) == iterations  # the skipped step is not counted
    # A finite step afterwards trains again.
    model.train_on_batch(np.ones((2, 4), "float32"), np.zeros((2, 4)))
    assert not np.array_equal(before[0], np.array(model.weights[0]))


def test_choose_policy_reasons():
    cpu = tf.config.list_physical_devices("CPU")
    choice = choose_policy(cpu)
    assert choice.policy in POLICIES and choice.reason

    class FakeDevice:
        def __init__(self, kind):
            self.device_type = kind

    assert choose_policy([FakeDevice("TPU")]).policy == "mixed_bfloat16"


def test_policy_map_and_loss_scaling_for_other_policies():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    policy_map = precision_policy_map(model, "mixed_bfloat16")
    assert isinstance(policy_map, keras.dtype_policies.DTypePolicyMap)
    assert policy_map[model.layers[0].path].name == "float32"
    assert policy_map["anything_else"].name == "mixed_bfloat16"
    sgd = keras.optimizers.SGD()
    assert loss_scale_optimizer(sgd, "mixed_bfloat16") is sgd
    assert loss_scale_optimizer(sgd, "float32") is sgd


@pytest.mark.parametrize("bad", ["mixed_float32", "fp16", None, 16])
def test_unknown_policy_name(bad):
    with pytest.raises(ValueError, match="`policy` must be one of"):
        check_policy(bad)
    with pytest.raises(ValueError, match="`policy`"):
        precision_policy_map(keras.Sequential([keras.Input((2,))]), bad)
