"""Proofs on real MNIST: a QAT model converts to a fully int8, builtin-only TFLite file that
keeps the float model's accuracy, agrees with the QAT Keras model, and is no larger than the
converter's own post-training int8 file."""

import numpy as np
import pytest

from keras_cnn_ext.export import run_tflite, to_tflite
from keras_cnn_ext.quantization import affine_params, quantizers_of

COMPUTE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
# Every builtin op these nets can use in int8 (anything else, a Flex op included, fails).
BUILTIN = {
    "QUANTIZE", "DEQUANTIZE", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D",
    "MEAN", "ADD", "MUL", "LOGISTIC", "SOFTMAX", "PAD", "RESHAPE", "SHAPE", "STRIDED_SLICE",
    "PACK", "AVERAGE_POOL_2D", "CONCATENATION",
}  # fmt: skip


def op_table(path):
    """`[(op, input dtypes, output dtypes, output name)]` of a TFLite file, in graph order."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    rows = []
    for op in interpreter._get_ops_details():
        inputs = [tensors[i] for i in op["inputs"] if i >= 0]
        outputs = [tensors[i] for i in op["outputs"]]
        rows.append((op["op_name"], inputs, outputs))
    return rows


def _dtype(tensor):
    return np.dtype(tensor["dtype"]).name


@pytest.fixture(
    scope="module", params=["lenet", pytest.param("se_resnet20", marks=pytest.mark.slow)]
)
def converted(request, mnist, tmp_path_factory):
    trained = request.getfixturevalue(request.param)
    (x_train, _), _ = mnist
    folder = tmp_path_factory.mktemp(request.param)
    float_file = to_tflite(trained["float"], folder / "float.tflite")
    ptq = to_tflite(
        trained["float"],
        folder / "ptq.tflite",
        quantization="int8",
        representative_data=x_train[:200],
    )
    # The default verification: random inputs, 4 output steps, 90% top-1 agreement.
    qat = to_tflite(trained["qat"], folder / "qat.tflite")
    return request.param, trained, float_file, ptq, qat


def test_int8_accuracy_within_half_a_point_of_float(converted, mnist):
    name, trained, _, _, qat = converted
    _, (x_test, y_test) = mnist
    (probs,) = run_tflite(qat.path, [x_test])
    int8_accuracy = float(np.mean(probs.argmax(-1) == y_test))
    print(
        f"{name}: float {trained['float_accuracy']:.4f}, QAT Keras {trained['qat_accuracy']:.4f}, "
        f"int8 TFLite {int8_accuracy:.4f}"
    )
    # Fine-tuning may also improve a model; the int8 file must not lose more than 0.5 points.
    assert int8_accuracy >= trained["float_accuracy"] - 0.005


def test_every_op_builtin_and_every_conv_dense_int8(converted):
    name, _, _, _, qat = converted
    assert qat.quantization == "qat" and qat.passed
    rows = op_table(qat.path)
    assert {op for op, _, _ in rows} <= BUILTIN, qat.ops
    listed = []
    for op, inputs, outputs in rows:
        if op in COMPUTE_OPS:
            dtypes = [_dtype(t) for t in inputs + outputs]
            listed.append(f"{op} {outputs[0]['name'][:70]} {dtypes}")
            assert _dtype(inputs[0]) == _dtype(inputs[1]) == _dtype(outputs[0]) == "int8", op
    print(f"{name}: {len(listed)} int8 conv/dense ops\n" + "\n".join(listed))
    # ResNet-20: stem + 9 x 2 convs; 9 x 2 SE dense layers + the head.
    assert len(listed) == (5 if name == "lenet" else 19 + 19)
    # One QUANTIZE at the input, one DEQUANTIZE at the output: no pairs inside the graph.
    assert qat.ops["QUANTIZE"] == 1 and qat.ops["DEQUANTIZE"] == 1, qat.ops


def test_int8_file_no_larger_than_the_converters_ptq_file(converted):
    name, _, float_file, ptq, qat = converted
    ratio = qat.file_size / float_file.file_size
    print(f"{name}: float {float_file.file_size}, PTQ {ptq.file_size}, QAT {qat.file_size} B")
    assert qat.file_size <= ptq.file_size
    if name == "lenet":
        # TFMOT's figure for this model, 0.27 to the two digits (its file measured
        # 68,696 / 250,796 = 0.274 here; ours 0.275).
        assert round(ratio, 2) <= 0.27, ratio


def test_tflite_agrees_with_the_qat_model_within_one_output_step(converted, mnist):
    name, trained, _, _, qat = converted
    _, (x_test, _) = mnist
    (logits,) = run_tflite(qat.path, [x_test])
    expected = trained["qat"].predict(x_test, batch_size=250, verbose=0)
    # The logits' int8 step: the range of the last FakeQuant (the head's output).
    last = quantizers_of(trained["qat"])[-1]
    assert last.name == "predictions_fq"
    step, _ = affine_params(float(last.range_min), float(last.range_max))
    steps = np.abs(logits - expected) / step
    agreement = float(np.mean(logits.argmax(-1) == expected.argmax(-1)))
    within = float(np.mean(steps <= 1.001))
    print(
        f"{name}: top-1 agreement {agreement:.4f}, logits within one step {within:.4f}, "
        f"max {steps.max():.2f} steps of {step:.4f}"
    )
    if name == "lenet":
        assert agreement >= 0.99
        assert steps.max() <= 1.001
        return
    # Deeper, one-step rounding flips inside (float32 fake quant against TFLite's integer
    # requantization and its LOGISTIC table in the nine SE gates) propagate to the logits, so
    # ResNet-20 is held to a measured bound instead of one step: with the fixture's seeded
    # training (96.0% accurate) 99.7% top-1 agreement, 99.3% of logits within one step, at most
    # 2 steps. Before the fixture seeded its initial weights, runs ranged over 97.7-99.3% within
    # one step and 2-5 steps at most.
    assert agreement >= 0.99
    assert within >= 0.98 and steps.max() <= 4.001
