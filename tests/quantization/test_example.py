"""examples/qat_to_int8_tflite.py runs end to end at a tiny size."""

import importlib.util
import os

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "qat_to_int8_tflite.py")


def test_qat_example_writes_a_fully_int8_file(tmp_path):
    spec = importlib.util.spec_from_file_location("qat_example", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    output = tmp_path / "lenet.tflite"
    result = example.main(
        ["--output", str(output), "--float-epochs", "1", "--qat-epochs", "1", "--train-size", "256"]
    )
    report = result["report"]
    assert output.exists() and report.passed and report.quantization == "qat"
    assert report.ops["QUANTIZE"] == 1 and report.ops["DEQUANTIZE"] == 1
    assert 0.0 <= result["int8_accuracy"] <= 1.0
