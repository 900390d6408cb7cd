"""Block rematerialization: same training as without it, activations recomputed in backward."""

import keras
import numpy as np
import pytest

from keras_cnn_ext.layers import ResidualBlock
from keras_cnn_ext.models import ResNet20
from keras_cnn_ext.training import rematerialize, rematerialized_layers, unrematerialize

X = np.random.default_rng(0).uniform(size=(4, 8, 8, 3)).astype("float32")
Y = np.arange(4) % 3


def _model():
    keras.utils.set_random_seed(0)
    # BatchNorm (moving statistics) and drop path (a SeedGenerator) in every block.
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    for i in range(3):
        x = ResidualBlock(8, drop_path_rate=0.3, seed=i, name=f"block{i}")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


def _fit(model):
    model.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="sparse_categorical_crossentropy"
    )
    history = model.fit(X, Y, batch_size=2, epochs=1, shuffle=False, verbose=0)
    return history.history["loss"], [np.asarray(v) for v in model.variables]


def _counted(model, name="block0"):
    """Counts the training-mode calls of one block's own `call` (forward and recomputation)."""
    block = model.get_layer(name)
    inner, calls = block.call, []

    def counting(inputs, *args, **kwargs):
        calls.append(kwargs.get("training"))
        return inner(inputs, *args, **kwargs)

    object.__setattr__(block, "call", counting)
    return model, calls


def test_remat_trains_exactly_like_no_remat_and_recomputes():
    plain, plain_calls = _counted(_model())
    plain_loss, plain_state = _fit(plain)
    model, calls = _counted(_model())
    rematerialize(model)
    assert rematerialized_layers(model) == ["block0", "block1", "block2"]
    loss, state = _fit(model)
    # Each trace of the train step runs the block twice: forward, then the recomputation.
    assert calls.count(True) == 2 * plain_calls.count(True) > 0, (calls, plain_calls)
    assert loss == plain_loss
    # Weights and the rest of the model state (BN moving statistics, drop-path seed states).
    for a, b in zip(plain_state, state, strict=True):
        np.testing.assert_array_equal(a, b)


def test_inference_and_selection():
    model = _model()
    expected = np.asarray(model(X, training=False))
    rematerialize(model, layers=["block0", "block2"])
    assert rematerialized_layers(model) == ["block0", "block2"]
    np.testing.assert_array_equal(np.asarray(model(X, training=False)), expected)
    unrematerialize(model)
    assert rematerialized_layers(model) == []
    rematerialize(model, layers=lambda layer: layer.name.endswith("1"))
    assert rematerialized_layers(model) == ["block1"]


def test_bad_input():
    with pytest.raises(ValueError, match="not in the model"):
        rematerialize(_model(), layers=["block9"])
    with pytest.raises(TypeError, match="`model`"):
        rematerialize(keras.layers.Dense(2))


def test_builders_remat_argument():
    from keras_cnn_ext.models import DenseNet, ResNet50

    assert len(rematerialized_layers(ResNet20(input_shape=(8, 8, 3), remat=True))) == 9
    assert rematerialized_layers(ResNet20(input_shape=(8, 8, 3))) == []
    resnet50 = ResNet50(input_shape=(32, 32, 3), classes=2, width_multiplier=0.125, remat=True)
    assert len(rematerialized_layers(resnet50)) == 16
    densenet = DenseNet(121, growth_rate=4, input_shape=(32, 32, 3), classes=2, remat=True)
    assert len(rematerialized_layers(densenet)) == 4 + 3  # dense blocks and transitions
