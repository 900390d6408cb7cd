"""Builder inputs and argument checks: keras.applications' rules, minimum input sizes."""

import os

import keras
import numpy as np
import pytest

from keras_cnn_ext.models.inputs import (
    Downsample,
    check_min_size,
    default_input_shape,
    make_inputs,
    min_input_size,
    validate_builder_args,
)


def test_validate_builder_args_accepts_defaults():
    validate_builder_args(include_top=True, weights=None, pooling=None, classes=10)
    validate_builder_args(include_top=False, classes=0, pooling="max")


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
        validate_builder_args(**kwargs)


def test_weights_must_be_a_weights_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("x")
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        validate_builder_args(include_top=True, weights=str(path))
    if os.geteuid() != 0:  # root reads everything
        unreadable = tmp_path / "m.weights.h5"
        unreadable.write_bytes(b"")
        unreadable.chmod(0)
        with pytest.raises(ValueError, match="no readable file"):
            validate_builder_args(include_top=True, weights=str(unreadable))


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


def test_check_min_size_message_names_stage():
    stages = [Downsample(f"block{i}_pool", 2, 2) for i in range(1, 6)]
    assert min_input_size(stages) == 32
    with pytest.raises(ValueError) as info:
        check_min_size((40, 20, 3), stages)
    message = str(info.value)
    assert "width is 1 when it reaches stage `block5_pool`" in message
    assert "minimum input size is 32x32" in message
    check_min_size((None, 32, 3), stages)


def test_make_inputs_shapes():
    assert make_inputs(default_shape=(8, 8, 3)).shape == (None, None, None, 3)
    assert make_inputs(default_shape=(8, 8, 3), require_static=True).shape == (None, 8, 8, 3)
    with pytest.raises(ValueError, match="static `input_shape`"):
        make_inputs(input_shape=(None, 8, 3), require_static=True)
    with pytest.raises(ValueError, match="three positive integers"):
        make_inputs(input_shape=(8, 8))
    with pytest.raises(ValueError, match="channel axis"):
        make_inputs(input_shape=(8, 8, None))
    with pytest.raises(ValueError, match="Keras tensor"):
        make_inputs(input_tensor=np.zeros((1, 8, 8, 3)))
    tensor = keras.Input((8, 8, 3))
    assert make_inputs(tensor) is tensor
    with pytest.raises(ValueError, match="must match the shape of `input_tensor`"):
        make_inputs(tensor, input_shape=(9, 9, 3))


@pytest.mark.parametrize("include_top", [True, False])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_default_shape_follows_keras_applications(include_top, data_format):
    # keras.applications' own rule for a network of default size 224 and minimum 32.
    from keras.src.applications.imagenet_utils import obtain_input_shape

    expected = obtain_input_shape(
        None, 224, 32, data_format, require_flatten=include_top, weights=None
    )
    shape = default_input_shape((224, 224, 3), include_top=include_top, data_format=data_format)
    assert shape == expected
    inputs = make_inputs(
        default_shape=(224, 224, 3), include_top=include_top, data_format=data_format
    )
    assert inputs.shape == (None, *expected)
    # An explicit `input_shape` or `input_tensor` wins over the default.
    assert make_inputs(input_shape=(3, 5, 5), include_top=include_top).shape == (None, 3, 5, 5)
    tensor = keras.Input((7, 7, 2))
    assert make_inputs(tensor, include_top=include_top) is tensor
