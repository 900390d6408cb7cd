"""A quantization-aware model exports to a fully int8 TFLite file and to a QDQ ONNX file."""

import numpy as np
import pytest
import tensorflow as tf
from export_models import make_float_model

from keras_cnn_ext.export import run_onnx, run_tflite, to_onnx, to_tflite
from keras_cnn_ext.export import tflite as tflite_module
from keras_cnn_ext.export.onnx import nudged_quantization
from keras_cnn_ext.export.report import VerificationError
from keras_cnn_ext.export.tflite import QAT_MIN_TOP1_AGREEMENT, QAT_TOLERANCE_STEPS


def _inputs(n=32, seed=1):
    return np.random.default_rng(seed).uniform(0, 1, (n, 12, 12, 1)).astype("float32")


def _ops_with_tensors(path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    return [
        (
            op["op_name"],
            [tensors[i] for i in op["inputs"] if i >= 0],
            [tensors[i] for i in op["outputs"]],
        )
        for op in interpreter._get_ops_details()
    ]


@pytest.fixture(scope="module")
def qat_tflite(qat_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("qat") / "qat.tflite"
    return path, to_tflite(qat_model, path)


def test_qat_tflite_is_fully_int8_without_representative_data(qat_model, qat_tflite):
    path, report = qat_tflite
    assert report.quantization == "qat" and report.passed, report.to_markdown()
    assert report.float_ops == {}, report.float_ops
    assert report.samples == "uniform random in [0, 1)"  # the input quantizer's own range
    # One QUANTIZE at the input and one DEQUANTIZE at the output: no pairs inside the graph.
    assert report.ops.get("QUANTIZE") == 1 and report.ops.get("DEQUANTIZE") == 1, report.ops
    compute = {}
    for op, inputs, outputs in _ops_with_tensors(path):
        if op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MEAN"):
            dtypes = {np.dtype(t["dtype"]).name for t in inputs + outputs}
            assert dtypes <= {"int8", "int32"}, (op, dtypes)
            compute[op] = len(inputs[1]["quantization_parameters"]["scales"]) if op != "MEAN" else 1
    print("int8 ops and their weight scale counts:", compute)
    # Per-channel weight scales: one per output channel (depthwise: in_channels x multiplier).
    assert compute == {"CONV_2D": 8, "DEPTHWISE_CONV_2D": 16, "FULLY_CONNECTED": 1, "MEAN": 1}


def test_qat_tflite_matches_the_qat_model_within_one_output_step(qat_model, qat_tflite):
    path, report = qat_tflite
    x = _inputs()
    (out,) = run_tflite(path, [x])
    expected = np.asarray(qat_model(x, training=False))
    step = 8.0 / 255  # the output fake-quant's range (-4, 4) over 255 steps
    assert np.max(np.abs(out - expected)) <= step + 1e-6
    assert np.mean(out.argmax(-1) == expected.argmax(-1)) >= 0.99
    # The default acceptance: QAT_TOLERANCE_STEPS output steps and 90% top-1 agreement.
    assert report.tolerance == pytest.approx(QAT_TOLERANCE_STEPS * step + 1e-6, rel=1e-6)
    assert report.min_top1_agreement == QAT_MIN_TOP1_AGREEMENT


def test_qat_tflite_int8_io(qat_model, tmp_path):
    report = to_tflite(qat_model, tmp_path / "io.tflite", int8_io=True)
    assert report.inputs[0]["dtype"] == "int8" and report.outputs[0]["dtype"] == "int8"
    # The input quantizer's range (0, 1) is the file's input scale and zero point.
    assert report.inputs[0]["scale"] == pytest.approx(1 / 255)
    assert report.inputs[0]["zero_point"] == -128
    assert "QUANTIZE" not in report.ops and "DEQUANTIZE" not in report.ops
    assert report.passed


def test_qat_rejects_other_modes(qat_model, tmp_path):
    with pytest.raises(ValueError, match="quantization-aware.*must be None or 'int8'"):
        to_tflite(qat_model, tmp_path / "a.tflite", quantization="float16")
    with pytest.raises(ValueError, match="not used for a quantization-aware model"):
        to_tflite(qat_model, tmp_path / "a.tflite", representative_data=_inputs(4))


def test_qat_onnx_is_qdq_with_int8_weights(qat_model, tmp_path):
    import onnx
    from onnx import numpy_helper

    path = tmp_path / "qat.onnx"
    report = to_onnx(qat_model, path)
    assert report.quantization == "qdq" and report.passed, report.to_markdown()
    assert report.ops["QuantizeLinear"] >= 5 and report.ops["DequantizeLinear"] >= 8
    proto = onnx.load(str(path))
    initializers = {t.name: t for t in proto.graph.initializer}
    weight_scales = {}
    for node in proto.graph.node:
        if node.op_type in ("Conv", "MatMul", "Gemm"):
            producer = next(n for n in proto.graph.node if node.input[1] in n.output)
            while producer.op_type in ("Reshape", "Transpose"):  # depthwise kernel layout
                producer = next(n for n in proto.graph.node if producer.input[0] in n.output)
            assert producer.op_type == "DequantizeLinear", (node.name, producer.op_type)
            weights = initializers[producer.input[0]]
            assert weights.data_type == onnx.TensorProto.INT8
            scales = numpy_helper.to_array(initializers[producer.input[1]])
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            weight_scales[(node.op_type, group)] = scales.size
    assert weight_scales == {("Conv", 1): 8, ("Conv", 8): 16, ("MatMul", 1): 1}, weight_scales
    x = _inputs()
    (out,) = run_onnx(path, [x])
    expected = np.asarray(qat_model(x, training=False))
    assert np.max(np.abs(out - expected)) <= 8.0 / 255 + 1e-6
    assert np.mean(out.argmax(-1) == expected.argmax(-1)) >= 0.99


@pytest.mark.parametrize("narrow_range", [False, True])
def test_nudged_quantization_is_tf_fake_quant(narrow_range):
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 5, 1000).astype("float32")
    low, high = -1.3, 2.7
    expected = tf.quantization.fake_quant_with_min_max_vars(
        x, low, high, narrow_range=narrow_range
    ).numpy()
    scale, zero_point, quant_min, quant_max = nudged_quantization(low, high, 8, narrow_range)
    q = np.clip(np.floor(x / scale + zero_point + 0.5), quant_min, quant_max)
    np.testing.assert_allclose((q - zero_point) * scale, expected, atol=1e-6)


def test_quantize_model_output_exports_to_both_formats(tmp_path):
    from keras_cnn_ext.quantization import quantize_model

    keras_model = make_float_model(classes=4)
    qat = quantize_model(keras_model)
    x = np.random.default_rng(0).uniform(0, 1, (16, 8, 8, 3)).astype("float32")
    for _ in range(3):  # moving min/max start from the first batches
        qat(x, training=True)
    tflite = to_tflite(qat, tmp_path / "qat.tflite", sample_data=x)
    assert tflite.quantization == "qat" and tflite.passed, tflite.to_markdown()
    assert tflite.ops.get("QUANTIZE") == 1 and tflite.ops.get("DEQUANTIZE") == 1, tflite.ops
    assert tflite.float_ops == {}, tflite.float_ops
    onnx = to_onnx(qat, tmp_path / "qat.onnx", sample_data=x)
    assert onnx.quantization == "qdq" and onnx.passed, onnx.to_markdown()
    assert onnx.ops.get("QuantizeLinear", 0) >= 2 and onnx.int8_tensors


@pytest.fixture(scope="module")
def softmax_lenet():
    """A QAT LeNet-5 + BN ending in an int8 softmax, briefly trained on real MNIST digits."""
    import keras

    from keras_cnn_ext.datasets import load_mnist_5k
    from keras_cnn_ext.models import LeNet5
    from keras_cnn_ext.quantization import quantize_model

    (x, y), _ = load_mnist_5k()
    keras.utils.set_random_seed(3)
    model = LeNet5("modern", input_shape=(28, 28, 1), padding="same", norm="batch")
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(x[:2000], y[:2000], batch_size=128, epochs=2, verbose=0)
    qat = quantize_model(model)
    qat.compile(keras.optimizers.Adam(3e-4), "sparse_categorical_crossentropy")
    qat.fit(x[:1000], y[:1000], batch_size=128, epochs=1, verbose=0)
    return qat, x[2000:2064]


def test_softmax_headed_qat_model_passes_the_default_verification(softmax_lenet, tmp_path):
    qat, digits = softmax_lenet
    for sample_data in (None, digits):  # random inputs in the input range, then real digits
        report = to_tflite(qat, tmp_path / "softmax.tflite", sample_data=sample_data)
        assert report.ops.get("SOFTMAX") == 1 and report.float_ops == {}, report.ops
        # One step at the softmax's int8 input moves a probability by up to half that step,
        # several of the output's 1/256 steps: the tolerance is counted in those.
        print(f"softmax LeNet ({report.samples}): {report.max_abs_diff:.4f} <= "
              f"{report.tolerance:.4f}, top-1 {report.top1_agreement}")  # fmt: skip
        assert report.passed and report.tolerance > QAT_TOLERANCE_STEPS / 256


def _tampered(scale_of):
    """A `_convert` that multiplies one quantization scale (picked by `scale_of`) by 1.5."""
    real = tflite_module._convert

    def convert(converter, model, nodes):
        flatbuffer = real(converter, model, nodes)
        scales = np.asarray(scale_of(flatbuffer), dtype=np.float32)
        old = scales.tobytes()
        assert flatbuffer.count(old) >= 1
        return flatbuffer.replace(old, (scales * np.float32(1.5)).tobytes())

    return convert


def _scales(flatbuffer, op_name, which):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    op = next(o for o in interpreter._get_ops_details() if o["op_name"] == op_name)
    index = op["inputs"][which]
    return tensors[index]["quantization_parameters"]["scales"]


def test_a_tampered_qat_file_fails_the_default_verification(softmax_lenet, tmp_path, monkeypatch):
    op = "CONV_2D"  # the first convolution's per-channel weight scales, x1.5
    monkeypatch.setattr(tflite_module, "_convert", _tampered(lambda fb: _scales(fb, op, 1)))
    path = tmp_path / "tampered.tflite"
    with pytest.raises(VerificationError, match="Nothing was written") as error:
        to_tflite(softmax_lenet[0], path, sample_data=softmax_lenet[1])
    report = error.value.report
    print(f"{op} weight scales x1.5: {report.max_abs_diff:.4f} > {report.tolerance:.4f}, "
          f"top-1 {report.top1_agreement}")  # fmt: skip
    assert not report.passed and not path.exists()
