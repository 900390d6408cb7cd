"""to_tflite: builtin ops only, dynamic batch, quantization modes, QAT int8, atomic files."""

import json
import os
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from export_models import make_float_model, make_unsupported_model

from keras_cnn_ext.export import (
    UnsupportedOpsError,
    VerificationError,
    inspect_tflite,
    run_tflite,
    to_tflite,
)


def _images(n, shape=(8, 8, 3), seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, *shape)).astype("float32")


def _op_tensor_dtypes(path):
    """op name -> set of dtypes of its non-constant inputs and outputs, for every op."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    out = []
    for op in interpreter._get_ops_details():
        dtypes = {
            np.dtype(tensors[i]["dtype"]).name for i in [*op["inputs"], *op["outputs"]] if i >= 0
        }
        out.append((op["op_name"], dtypes))
    return out


def test_float_parity_dynamic_batch_and_report(float_model, tmp_path):
    path = tmp_path / "model.tflite"
    report = to_tflite(float_model, path)
    assert report.passed and report.verified
    assert report.max_abs_diff <= 1e-5, report.max_abs_diff
    assert report.top1_agreement == 1.0
    assert report.inputs[0]["shape"] == [-1, 8, 8, 3]  # dynamic batch
    assert report.file_size == os.path.getsize(path)
    assert set(report.ops) <= {"CONV_2D", "DEPTHWISE_CONV_2D", "MEAN", "FULLY_CONNECTED", "SOFTMAX"}
    assert report.int8_tensors == []
    for batch in (1, 5):  # the file runs at any batch size
        x = _images(batch)
        (out,) = run_tflite(path, [x])
        np.testing.assert_allclose(out, float_model(x, training=False), atol=1e-5)
    data = report.to_dict()
    assert json.loads(json.dumps(data)) == data
    markdown = report.to_markdown()
    assert "| CONV_2D | 1 |" in markdown and "max abs diff" in markdown


def test_converter_freezes_once_and_writes_the_frozen_functions_file(
    float_model, tmp_path, function_rebuilds
):
    # Handing the converter an already frozen function gives the same bytes, but the converter
    # freezes it a second time (a rebuild of the whole graph in Python, the costliest step of a
    # large model's conversion): `to_tflite` lets the converter freeze, once.
    from tensorflow.python.framework import convert_to_constants

    from keras_cnn_ext.export import _common

    report = to_tflite(float_model, tmp_path / "model.tflite")
    assert report.passed and len(function_rebuilds) == 1
    specs = _common.input_specs(float_model, None)
    concrete = _common.inference_function(float_model, specs).get_concrete_function()
    frozen = convert_to_constants.convert_variables_to_constants_v2(concrete)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        twice = tf.lite.TFLiteConverter.from_concrete_functions([frozen]).convert()
    assert (tmp_path / "model.tflite").read_bytes() == twice


@pytest.mark.parametrize("quantization,expect_op", [("dynamic", None), ("float16", "DEQUANTIZE")])
def test_post_training_modes(float_model, tmp_path, quantization, expect_op):
    report = to_tflite(float_model, tmp_path / "m.tflite", quantization=quantization)
    assert report.passed and report.quantization == quantization
    if expect_op:
        assert expect_op in report.ops


def _rep_generator():
    for i in range(4):
        yield [_images(8, seed=i)]


@pytest.mark.parametrize(
    "data",
    [
        _images(32),
        tf.data.Dataset.from_tensor_slices((_images(32), np.zeros(32))).batch(8),
        _rep_generator,
    ],
    ids=["array", "dataset_xy", "generator"],
)
def test_full_integer_ptq(float_model, tmp_path, data):
    report = to_tflite(
        float_model, tmp_path / "int8.tflite", quantization="int8", representative_data=data
    )
    assert report.passed, report.to_markdown()
    assert report.quantization == "int8" and report.int8_tensors
    for op, dtypes in _op_tensor_dtypes(tmp_path / "int8.tflite"):
        if op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            assert dtypes <= {"int8", "int32"}, (op, dtypes)


def test_full_integer_int8_io(float_model, tmp_path):
    report = to_tflite(
        float_model,
        tmp_path / "int8io.tflite",
        quantization="int8",
        representative_data=_images(32),
        int8_io=True,
    )
    assert report.inputs[0]["dtype"] == "int8" and report.outputs[0]["dtype"] == "int8"
    assert report.inputs[0]["scale"] > 0 and isinstance(report.inputs[0]["zero_point"], int)
    assert "QUANTIZE" not in report.ops and "DEQUANTIZE" not in report.ops
    assert report.passed


@pytest.mark.parametrize(
    "data,match",
    [
        (_images(4, shape=(8, 8, 1)), r"shape=\(None, 8, 8, 3\), dtype=float32"),
        (np.zeros((4, 8, 8, 3), dtype="uint8"), r"expected batches of \(shape=\(None, 8, 8, 3\)"),
        (np.zeros((8, 8, 3), dtype="float32"), r"Received an array of shape=\(8, 8, 3\)"),
    ],
    ids=["channels", "dtype", "no_batch_axis"],
)
def test_representative_data_wrong_spec(float_model, tmp_path, data, match):
    with pytest.raises(ValueError, match=match):
        to_tflite(float_model, tmp_path / "x.tflite", quantization="int8", representative_data=data)
    assert not os.listdir(tmp_path)


def test_argument_errors(float_model, tmp_path):
    with pytest.raises(ValueError, match="needs `representative_data`"):
        to_tflite(float_model, tmp_path / "a.tflite", quantization="int8")
    with pytest.raises(ValueError, match="`int8_io=True` needs an int8 file"):
        to_tflite(float_model, tmp_path / "a.tflite", int8_io=True)
    with pytest.raises(ValueError, match="only used with quantization='int8'"):
        to_tflite(float_model, tmp_path / "a.tflite", representative_data=_images(4))
    with pytest.raises(ValueError, match="`quantization` must be one of"):
        to_tflite(float_model, tmp_path / "a.tflite", quantization="int4")
    with pytest.raises(ValueError, match="folder of `path` does not exist"):
        to_tflite(float_model, tmp_path / "missing" / "a.tflite")
    with pytest.raises(ValueError, match="not a folder"):
        to_tflite(float_model, tmp_path)
    assert not os.listdir(tmp_path)


def test_subclassed_model_without_graph(tmp_path):
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            return self.dense(x)

    model = Net()
    model(np.zeros((1, 4), "float32"))
    with pytest.raises(ValueError, match="no graph of Keras inputs.*input_signature"):
        to_tflite(model, tmp_path / "a.tflite")
    report = to_tflite(
        model, tmp_path / "a.tflite", input_signature=tf.TensorSpec((None, 4), tf.float32)
    )
    assert report.passed and report.inputs[0]["shape"] == [-1, 4]


def test_select_op_names_layer_and_op(tmp_path):
    with pytest.raises(UnsupportedOpsError, match=r"Cumprod \(layer 'running_product'\)") as info:
        to_tflite(make_unsupported_model(), tmp_path / "flex.tflite")
    assert info.value.ops == [("Cumprod", "running_product")]
    assert "allow_select_ops=True" in str(info.value)
    assert not os.listdir(tmp_path)


def test_allow_select_ops_writes_unverified_file_with_warning(tmp_path):
    with pytest.warns(UserWarning, match="FlexCumprod.*without verification"):
        report = to_tflite(
            make_unsupported_model(), tmp_path / "flex.tflite", allow_select_ops=True
        )
    assert report.ops.get("FlexCumprod") == 1
    assert report.verified is False and report.passed is None
    assert os.path.exists(tmp_path / "flex.tflite")


def test_failed_export_keeps_existing_file_byte_for_byte(float_model, tmp_path):
    path = tmp_path / "model.tflite"
    original = b"an existing file that must survive\x00\x01"
    path.write_bytes(original)
    with pytest.raises(UnsupportedOpsError):
        to_tflite(make_unsupported_model(), path)
    assert path.read_bytes() == original
    # A verification failure does not write either: float16 weights cannot match to 1e-12.
    with pytest.raises(VerificationError) as info:
        to_tflite(float_model, path, quantization="float16", tolerance=1e-12)
    assert info.value.report.passed is False and info.value.report.max_abs_diff > 1e-12
    assert path.read_bytes() == original
    assert sorted(os.listdir(tmp_path)) == ["model.tflite"]  # no temporary file left behind


def test_on_mismatch_warn_writes_and_reports(float_model, tmp_path):
    path = tmp_path / "model.tflite"
    with pytest.warns(UserWarning, match="written anyway"):
        report = to_tflite(
            float_model, path, quantization="float16", tolerance=1e-12, on_mismatch="warn"
        )
    assert report.passed is False and os.path.getsize(path) == report.file_size


def test_verify_false_still_reports_file(float_model, tmp_path):
    report = to_tflite(float_model, tmp_path / "m.tflite", verify=False)
    assert report.verified is False and report.max_abs_diff is None
    assert report.ops["CONV_2D"] == 1 and report.file_size > 0


def test_mixed_float16_exports_builtin_only_unlike_keras_litert(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = make_float_model()
    finally:
        keras.config.set_dtype_policy(previous)
    assert model.get_layer("conv").compute_dtype == "float16"
    x = _images(4)

    ours = to_tflite(model, tmp_path / "ours.tflite")
    assert not any(op.startswith("Flex") for op in ours.ops), ours.ops
    assert ours.passed and any("float32" in note for note in ours.notes)
    # Against the mixed-precision model itself: float16 rounding only.
    (out,) = run_tflite(tmp_path / "ours.tflite", [x])
    np.testing.assert_allclose(out, model(x, training=False), atol=5e-3)
    half = to_tflite(model, tmp_path / "half.tflite", quantization="float16")
    assert half.passed and not any(op.startswith("Flex") for op in half.ops)

    # Keras' own LiteRT export enables Select TF ops: FlexConv2D, which its interpreter cannot run.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.export(str(tmp_path / "keras.tflite"), format="litert", verbose=False)
    keras_ops = inspect_tflite(tmp_path / "keras.tflite")["ops"]
    assert any(op.startswith("Flex") for op in keras_ops), keras_ops
    interpreter = Interpreter(model_path=str(tmp_path / "keras.tflite"))
    with pytest.raises(RuntimeError, match="Select TensorFlow op"):
        interpreter.allocate_tensors()


class Sine(keras.layers.Layer):
    def call(self, x):
        return tf.math.sin(x)


def test_int8_file_names_ops_left_in_float(tmp_path):
    inputs = keras.Input((4, 4, 3))
    x = Sine(name="sine")(keras.layers.Conv2D(2, 3, name="conv")(inputs))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1, name="conv_out")(x))
    data = np.random.default_rng(0).uniform(0, 1, (8, 4, 4, 3)).astype("float32")
    with pytest.warns(UserWarning, match=r"SIN \(layer 'sine'\)"):
        report = to_tflite(
            model, tmp_path / "m.tflite", quantization="int8", representative_data=data
        )
    assert report.float_ops == {"SIN": 1} and report.passed


def test_multi_input_multi_output_keeps_order(tmp_path):
    from keras_cnn_ext.export import to_onnx

    a, b = keras.Input((4,), name="a"), keras.Input((3,), name="b")
    joint = keras.layers.Concatenate()([a, keras.layers.Dense(5)(b)])
    model = keras.Model([a, b], [keras.layers.Dense(2)(joint), keras.layers.Dense(3)(a)])
    rng = np.random.default_rng(0)
    samples = [rng.normal(size=(6, 4)).astype("float32"), rng.normal(size=(6, 3)).astype("float32")]
    tflite = to_tflite(model, tmp_path / "m.tflite", sample_data=samples)
    onnx = to_onnx(model, tmp_path / "m.onnx", sample_data=samples)
    for report, batch in ((tflite, -1), (onnx, None)):
        assert report.passed and report.num_samples == 6
        assert [t["shape"] for t in report.inputs] == [[batch, 4], [batch, 3]]
        assert [t["shape"] for t in report.outputs] == [[batch, 2], [batch, 3]]
