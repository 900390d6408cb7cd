import os

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_cnn_ext.models import common, registry
from keras_cnn_ext.models.common import Conv, Downsample, Pool


def test_validate_builder_args_accepts_defaults():
    common.validate_builder_args(include_top=True, weights=None, pooling=None, classes=10)
    common.validate_builder_args(include_top=False, classes=0, pooling="max")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(include_top=True, classes=0), "`classes` must be a positive integer"),
        (dict(include_top=True, classes=-3), "Received: classes=-3"),
        (dict(include_top=True, classes=2.5), "`classes`"),
        (dict(include_top=True, classes=True), "`classes`"),
        (dict(include_top=False, pooling="mean"), "`pooling` must be one of"),
        (dict(include_top=True, weights="imagenet"), "copy_weights"),
        (dict(include_top=True, weights="/no/such/file.weights.h5"), "no readable file"),
        (dict(include_top=True, weights=3), "`weights` must be None"),
        (dict(include_top=True, dropout=1.5), "`dropout`"),
        (dict(include_top=True, variant=("x", ("a", "b"))), "`variant` must be one of"),
    ],
)
def test_validate_builder_args_rejects(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        common.validate_builder_args(**kwargs)


def test_weights_must_be_a_weights_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("x")
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        common.validate_builder_args(include_top=True, weights=str(path))
    if os.geteuid() != 0:  # root reads everything
        unreadable = tmp_path / "m.weights.h5"
        unreadable.write_bytes(b"")
        unreadable.chmod(0)
        with pytest.raises(ValueError, match="no readable file"):
            common.validate_builder_args(include_top=True, weights=str(unreadable))


def test_downsample_arithmetic_matches_keras():
    for stage, layer in [
        (Downsample("p", 2, 2), keras.layers.MaxPooling2D(2, 2)),
        (Downsample("p", 3, 2), keras.layers.MaxPooling2D(3, 2)),
        (Downsample("c", 3, 2, "same"), keras.layers.Conv2D(1, 3, strides=2, padding="same")),
        (Downsample("c", 11, 4), keras.layers.Conv2D(1, 11, strides=4)),
    ]:
        for size in range(stage.min_input_size(1), 40):
            expected = layer.compute_output_shape((1, size, size, 1))[1]
            assert stage.output_size(size) == expected, (stage, size)


# Tables whose layers are built by `conv_stack`; `stack_stages` must predict their sizes.
_ENTRIES = st.sampled_from(
    [
        Conv(2, 3),
        Conv(2, 5, padding="valid"),
        Conv(2, 3, 2, "valid"),
        Conv(2, 3, 2, 1),
        Conv(2, 5, 2),
        Pool(2, 2),
        Pool(3, 2),
        Pool(2, 2, "same"),
    ]
)


@settings(max_examples=15, deadline=None)
@given(table=st.lists(_ENTRIES, min_size=1, max_size=4), extra=st.integers(0, 5))
def test_min_input_size_is_tight(table, extra):
    stages = common.stack_stages(table)
    minimum = common.min_input_size(stages)
    size = minimum + extra
    inputs = keras.Input((size, size, 1))
    out = common.conv_stack(inputs, table)
    expected = size
    for stage in stages:
        expected = stage.output_size(expected)
    assert out.shape[1] == expected >= 1
    if minimum > 1:
        with pytest.raises(ValueError, match=f"minimum input size is {minimum}x{minimum}"):
            common.check_min_size((minimum - 1, minimum, 1), stages)


def test_check_min_size_message_names_stage():
    stages = [Downsample(f"block{i}_pool", 2, 2) for i in range(1, 6)]
    assert common.min_input_size(stages) == 32
    with pytest.raises(ValueError) as info:
        common.check_min_size((40, 20, 3), stages)
    message = str(info.value)
    assert "width is 1 when it reaches stage `block5_pool`" in message
    assert "minimum input size is 32x32" in message
    common.check_min_size((None, 32, 3), stages)


def test_make_inputs_shapes():
    assert common.make_inputs(default_shape=(8, 8, 3)).shape == (None, None, None, 3)
    assert common.make_inputs(default_shape=(8, 8, 3), require_static=True).shape == (
        None,
        8,
        8,
        3,
    )
    with pytest.raises(ValueError, match="static `input_shape`"):
        common.make_inputs(input_shape=(None, 8, 3), require_static=True)
    with pytest.raises(ValueError, match="three positive integers"):
        common.make_inputs(input_shape=(8, 8))
    with pytest.raises(ValueError, match="channel axis"):
        common.make_inputs(input_shape=(8, 8, None))
    with pytest.raises(ValueError, match="Keras tensor"):
        common.make_inputs(input_tensor=np.zeros((1, 8, 8, 3)))
    tensor = keras.Input((8, 8, 3))
    assert common.make_inputs(tensor) is tensor
    with pytest.raises(ValueError, match="must match the shape of `input_tensor`"):
        common.make_inputs(tensor, input_shape=(9, 9, 3))


def test_input_tensor_from_another_graph_uses_its_source_inputs():
    source = keras.Input((12, 12, 3))
    scaled = keras.layers.Rescaling(2.0)(source)
    inputs = common.make_inputs(scaled)
    outputs = common.classifier_head(keras.layers.Conv2D(4, 3)(inputs), include_top=True, classes=3)
    model = common.finalize_model(inputs, outputs, name="m")
    assert model.inputs[0] is source
    assert model.output_shape == (None, 3)


@pytest.mark.parametrize(
    "kwargs,shape",
    [
        (dict(include_top=False), (None, 4, 4, 6)),
        (dict(include_top=False, pooling="avg"), (None, 6)),
        (dict(include_top=False, pooling="max"), (None, 6)),
        (dict(include_top=True, classes=5), (None, 5)),
        (dict(include_top=True, classes=5, flatten=True, hidden_units=(7,)), (None, 5)),
    ],
)
def test_classifier_head_shapes(kwargs, shape):
    x = keras.Input((4, 4, 6))
    assert common.classifier_head(x, **kwargs).shape == shape


def test_classifier_head_values():
    x = keras.Input((2, 2, 3))
    model = keras.Model(x, common.classifier_head(x, include_top=False, pooling="max"))
    data = np.arange(24, dtype="float32").reshape(2, 2, 2, 3)
    np.testing.assert_array_equal(np.asarray(model(data)), data.max(axis=(1, 2)))
    out = common.classifier_head(x, include_top=True, classes=4, classifier_activation=None)
    assert out.dtype == "float32"


def _small(kind, classes=3):
    x = keras.Input((6, 6, 2))
    y = keras.layers.Conv2D(4, 3, use_bias=False)(x)
    y = keras.layers.BatchNormalization()(y)
    if kind == "conv_head":
        y = keras.layers.GlobalAveragePooling2D(keepdims=True)(y)
        y = keras.layers.Conv2D(classes, 1)(y)
        y = keras.layers.Reshape((classes,))(y)
    else:
        y = keras.layers.GlobalAveragePooling2D()(y)
        y = keras.layers.Dense(classes)(y)
    return keras.Model(x, y)


def test_copy_weights_parity_and_reshape():
    rng = np.random.default_rng(0)
    source, target = _small("conv_head"), _small("dense_head")
    for w in source.weights:
        w.assign(rng.uniform(0.5, 1.5, size=w.shape).astype("float32"))
    common.copy_weights(source, target)
    x = rng.normal(size=(2, 6, 6, 2)).astype("float32")
    np.testing.assert_allclose(np.asarray(target(x)), np.asarray(source(x)), atol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        common.copy_weights(source, target, reshape=False)
    with pytest.raises(ValueError, match="has 7 variables"):
        common.copy_weights(source, keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))


def test_pluggable_parts():
    assert common.make_norm(None, "n") is None
    assert isinstance(common.make_norm("batch", "n"), keras.layers.BatchNormalization)
    assert isinstance(common.make_norm("group", "n", groups=2), keras.layers.GroupNormalization)
    assert isinstance(common.make_pool("avg", 2, 2, name="p"), keras.layers.AveragePooling2D)
    assert isinstance(
        common.make_pool(keras.layers.MaxPooling2D, 2, 2, name="p"), keras.layers.MaxPooling2D
    )
    with pytest.raises(ValueError, match="`pool_type`"):
        common.make_pool("median", 2, 2)
    with pytest.raises(ValueError, match="`activation`"):
        common.make_activation("no_such_activation", "a")
    with pytest.raises(ValueError, match="`norm`"):
        common.make_norm("no_such_norm", "n")


def test_registry():
    @registry.register_builder("Test-Net_1")
    def builder():
        return "built"

    assert registry.get_builder("testnet1") is builder
    assert registry.get_builder("TESTNET_1")() == "built"
    assert "testnet1" in registry.list_builders()
    with pytest.raises(ValueError, match="already registered"):
        registry.register_builder("testnet1")(lambda: None)
    with pytest.raises(ValueError, match="Unknown architecture name: 'nonet'.*lenet5"):
        registry.get_builder("nonet")
    del registry._BUILDERS["testnet1"]


def test_builtin_names_registered():
    import keras_cnn_ext.models  # noqa: F401  (registers the builders)

    names = registry.list_builders()
    for name in ("lenet5", "alexnet", "vgg11", "vgg13", "vgg16", "vgg19", "mobilenetv1", "unet"):
        assert name in names
