"""The `keras-cnn-ext` subcommands train, quantize, export, explain, distill and bench."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_cnn_ext import cli
from keras_cnn_ext.datasets import load_mnist_5k
from keras_cnn_ext.demo import build_demo_model

NAMES = ("train", "quantize", "export", "explain", "distill", "bench", "demo", "summary")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """1,000 real MNIST digits as an .npz, and a small trained demo net saved as .keras."""
    folder = tmp_path_factory.mktemp("cli")
    (x, y), _ = load_mnist_5k(seed=0)
    x, y = x[:1000], y[:1000]
    npz = folder / "digits.npz"
    np.savez(npz, x=(x[..., 0] * 255).astype("uint8"), y=y)
    keras.utils.set_random_seed(0)
    model = build_demo_model(width=8)
    model.compile(
        keras.optimizers.Adam(3e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x, y, batch_size=32, epochs=3, verbose=0)
    path = folder / "digits.keras"
    model.save(path)
    small = folder / "small.npz"  # for the training commands: 160 train / 40 test
    np.savez(small, x=x[:200], y=y[:200])
    return {
        "folder": folder,
        "npz": str(npz),
        "small": str(small),
        "model": str(path),
        "x": x,
        "y": y,
    }


def _fails(argv, message, capsys):
    assert cli.main(argv) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_every_subcommand_has_help_without_importing_tensorflow():
    probe = (
        "import sys\nfrom keras_cnn_ext import cli\n"
        f"for name in {NAMES!r}:\n"
        "    try:\n        cli.main([name, '--help'])\n"
        "    except SystemExit as e:\n        assert e.code == 0, name\n"
        "print('TF', 'tensorflow' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("TF False")
    for flag in ("--unsafe", "--data", "--precision", "--resume-dir", "--multi-worker", "--quick"):
        assert flag in result.stdout


def test_train_an_architecture_on_an_npz(digits, tmp_path, capsys):
    out = tmp_path / "lenet.keras"
    argv = ["train", "demo", "--data", digits["small"], "--epochs", "1", "--output", str(out)]
    assert cli.main([*argv, "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "40 test" in printed
    reloaded = keras.saving.load_model(out)
    assert reloaded.output_shape == (None, 10)
    # The same output again without --force is refused before any training.
    _fails(argv, "pass --force", capsys)


def test_train_resumes_from_a_checkpoint_folder(digits, tmp_path, capsys):
    out = tmp_path / "resumed.keras"
    argv = [
        "train",
        digits["model"],
        "--data",
        digits["small"],
        "--epochs",
        "1",
        "--quiet",
        "--resume-dir",
        str(tmp_path / "ckpt"),
        "--save-every",
        "4",
        "--output",
        str(out),
    ]
    assert cli.main(argv) == 0
    assert out.exists()
    assert "test accuracy" in capsys.readouterr().out


def test_train_mixed_precision(digits, tmp_path):
    out = tmp_path / "mixed.keras"
    argv = [
        "train",
        digits["model"],
        "--data",
        digits["small"],
        "--epochs",
        "1",
        "--quiet",
        "--precision",
        "mixed_bfloat16",
        "--output",
        str(out),
    ]
    assert cli.main(argv) == 0
    layer = keras.saving.load_model(out).get_layer("block1a_conv")
    assert layer.compute_dtype == "bfloat16"


def test_train_bad_inputs(digits, tmp_path, capsys):
    out = str(tmp_path / "x.keras")
    _fails(["train", "no_such_net", "--output", out], "unknown architecture", capsys)
    _fails(
        ["train", "demo", "--data", str(tmp_path / "nope.npz"), "--output", out],
        "does not exist",
        capsys,
    )
    flat = tmp_path / "flat.npz"
    np.savez(flat, x=np.zeros((10, 784)), y=np.zeros(10, int))
    _fails(["train", "demo", "--data", str(flat), "--output", out], "must be images", capsys)
    nokeys = tmp_path / "nokeys.npz"
    np.savez(nokeys, images=np.zeros((10, 8, 8)))
    _fails(["train", "demo", "--data", str(nokeys), "--output", out], "`x` and `y`", capsys)
    empty = tmp_path / "empty"
    (empty / "cats").mkdir(parents=True)
    (empty / "cats" / "notes.txt").write_text("no image")
    _fails(["train", "demo", "--data", str(empty), "--output", out], "no images", capsys)
    _fails(["train", "missing/model.keras", "--output", out], "cannot read model file", capsys)
    _fails(["train", "demo", "--multi-worker", "--output", out], "TF_CONFIG", capsys)
    # A model file fixes the image size: 32x32 images for a 28x28 model.
    small = tmp_path / "big.npz"
    np.savez(small, x=np.zeros((10, 32, 32)), y=np.zeros(10, int))
    _fails(
        ["train", digits["model"], "--data", str(small), "--output", out], "expects 28x28", capsys
    )


def test_train_on_a_folder_of_images(digits, tmp_path, capsys):
    from PIL import Image

    for label in (0, 1):
        (tmp_path / "data" / f"class{label}").mkdir(parents=True)
        for i in np.flatnonzero(digits["y"] == label)[:10]:
            image = Image.fromarray((digits["x"][i, ..., 0] * 255).astype("uint8"))
            image.save(tmp_path / "data" / f"class{label}" / f"{i}.png")
    out = tmp_path / "folder.keras"
    argv = [
        "train",
        "lenet5",
        "--data",
        str(tmp_path / "data"),
        "--image-size",
        "32,32",
        "--epochs",
        "1",
        "--quiet",
        "--output",
        str(out),
    ]
    assert cli.main(argv) == 0
    assert "2 classes" in capsys.readouterr().out
    assert keras.saving.load_model(out).output_shape[-1] == 2


def test_export_tflite_and_onnx_files_run(digits, tmp_path, capsys):
    from keras_cnn_ext.export import run_onnx, run_tflite

    model = keras.saving.load_model(digits["model"])
    expected = model.predict(digits["x"][:8], verbose=0)
    for fmt, extra in (("tflite", []), ("onnx", []), ("tflite", ["--quantization", "int8"])):
        out = tmp_path / f"m{len(extra)}.{fmt}"
        argv = ["export", digits["model"], "--format", fmt, "--output", str(out), *extra]
        assert cli.main([*argv, "--data", digits["npz"]]) == 0
        assert "max" in capsys.readouterr().out.lower()
        run = run_onnx if fmt == "onnx" else run_tflite
        got = run(str(out), digits["x"][:8])[0]
        if extra:  # int8: the same top-1 on most digits
            assert np.mean(got.argmax(-1) == expected.argmax(-1)) >= 0.75
        else:
            np.testing.assert_allclose(got, expected, atol=1e-4)
    _fails(
        [
            "export",
            digits["model"],
            "--format",
            "onnx",
            "--quantization",
            "int8",
            "--output",
            str(tmp_path / "q.onnx"),
        ],
        "tflite only",
        capsys,
    )
    _fails(["export", digits["model"], "--output", str(out)], "pass --force", capsys)


def test_quantize_writes_an_int8_file(digits, tmp_path, capsys):
    from keras_cnn_ext.export import inspect_tflite

    out = tmp_path / "q.tflite"
    argv = ["quantize", digits["model"], "--data", digits["npz"], "--output", str(out), "--quiet"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "int8 TFLite" in printed
    float_accuracy = float(printed.split("float Keras ")[1].split(",")[0])
    int8_accuracy = float(printed.split("int8 TFLite ")[1].split()[0])
    assert float_accuracy > 0.3  # chance is 0.1
    assert int8_accuracy >= float_accuracy - 0.1
    assert inspect_tflite(str(out))["int8_tensors"]


def test_explain_writes_a_png(digits, tmp_path, capsys):
    from PIL import Image

    image = tmp_path / "digit.png"
    Image.fromarray((digits["x"][0, ..., 0] * 255).astype("uint8")).save(image)
    out = tmp_path / "cam.png"
    assert cli.main(["explain", digits["model"], str(image), "--out", str(out)]) == 0
    assert "grad_cam: class" in capsys.readouterr().out
    with Image.open(out) as picture:
        assert picture.size == (28, 28) and picture.mode in ("RGB", "RGBA")
    _fails(["explain", digits["model"], str(image), "--out", str(out)], "--force", capsys)
    _fails(["explain", digits["model"], str(tmp_path / "none.png")], "cannot read image", capsys)
    _fails(["explain", digits["model"], str(image), "--method", "magic"], "--method", capsys)
    _fails(
        [
            "explain",
            digits["model"],
            str(image),
            "--layer",
            "nope",
            "--out",
            str(tmp_path / "c2.png"),
        ],
        "nope",
        capsys,
    )


def test_distill_a_student(digits, tmp_path, capsys):
    out = tmp_path / "student.keras"
    argv = [
        "distill",
        digits["model"],
        "--data",
        digits["npz"],
        "--epochs",
        "1",
        "--quiet",
        "--output",
        str(out),
    ]
    assert cli.main(argv) == 0
    assert "student" in capsys.readouterr().out
    student = keras.saving.load_model(out)
    assert student.count_params() < keras.saving.load_model(digits["model"]).count_params()
    _fails(["distill", digits["model"], "--alpha", "2"], "--alpha", capsys)


def test_bench_prints_a_table(digits, tmp_path, capsys):
    out = tmp_path / "bench.md"
    argv = [
        "bench",
        digits["model"],
        "--repeats",
        "2",
        "--batch-size",
        "4",
        "--runtimes",
        "keras,tflite,tflite-int8,onnx",
        "--output",
        str(out),
    ]
    assert cli.main(argv) == 0
    table = capsys.readouterr().out
    for name in ("| keras |", "| tflite |", "| tflite-int8 |", "| onnx |"):
        assert name in table
    assert out.read_text().startswith("| runtime |")
    _fails(["bench", digits["model"], "--runtimes", "tensorrt"], "--runtimes", capsys)
    _fails(["bench", "unknown_arch_x"], "unknown architecture", capsys)


def test_safe_mode_refuses_lambda_code_unless_unsafe(tmp_path, capsys):
    inputs = keras.Input((4, 4, 1))
    outputs = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, keras.layers.Flatten()(outputs)).save(path)
    _fails(["summary", str(path)], "--unsafe", capsys)
    assert cli.main(["summary", str(path), "--unsafe"]) == 0


def test_truncated_and_corrupt_model_files(digits, tmp_path, capsys):
    data = open(digits["model"], "rb").read()
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(data[: len(data) // 2])
    for command in (["export"], ["quantize"], ["bench"], ["distill"]):
        _fails([*command, str(truncated)], "cannot read model file", capsys)
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"PK\x03\x04" + os.urandom(200))
    _fails(["export", str(corrupt)], "cannot read model file", capsys)


def test_summary_json_still_parses(digits, capsys):
    assert cli.main(["summary", digits["model"], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["totals"]["macs"] > 0


def test_errors_of_command_modules_under_python_dash_m():
    # `python -m keras_cnn_ext.cli` runs the module as __main__: the commands' CLIError must
    # still be caught (one line, status 2, no traceback).
    result = subprocess.run(
        [sys.executable, "-m", "keras_cnn_ext.cli", "bench", "m.keras", "--runtimes", "foo"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("keras-cnn-ext bench: error: --runtimes")
    assert "Traceback" not in result.stderr
