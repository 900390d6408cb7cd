"""The `keras-cnn-ext` command line: summary of names and files, clean errors with status 2."""

import json
import os
import subprocess
import sys

import keras
import pytest

from keras_cnn_ext import cli


def _tiny_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(x), name="tiny")


def test_summary_of_a_saved_model(tmp_path, capsys):
    path = tmp_path / "tiny.keras"
    _tiny_model().save(path)
    assert cli.main(["summary", str(path)]) == 0
    out = capsys.readouterr().out
    assert 'Model "tiny"' in out and "conv" in out and "FLOPs = 2 x MACs" in out
    # 6*6*4 outputs of a 3x3x3 kernel, then 4*2 for the head.
    assert f"{6 * 6 * 4 * 27 + 8:,}" in out


def test_summary_json_with_input_shape_and_batch(tmp_path, capsys):
    path = tmp_path / "tiny.keras"
    _tiny_model().save(path)
    code = cli.main(["summary", str(path), "--input-shape", "8,8,3", "--batch-size", "2", "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["batch_size"] == 2
    assert data["totals"]["macs"] == 2 * (6 * 6 * 4 * 27 + 8)


def test_summary_of_keras_applications_name(capsys):
    code = cli.main(["summary", "keras.applications.MobileNet", "--input-shape", "32,32,3"])
    assert code == 0
    assert "conv_pw_13" in capsys.readouterr().out


def test_summary_of_a_package_builder(capsys):
    assert cli.main(["summary", "lenet5"]) == 0
    assert "Params:" in capsys.readouterr().out


def test_summary_of_a_table_row_builder_with_input_shape(capsys):
    # `resnet20` takes **kwargs (forwarded to ResNet): --input-shape must still reach it.
    assert cli.main(["summary", "resnet20", "--input-shape", "32,32,3"]) == 0
    out = capsys.readouterr().out
    assert "(1, 32, 32, 3)" in out and "Params:" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["summary", "no_such_architecture"], "unknown architecture"),
        (["summary", "keras.applications.NoSuchNet"], "keras.applications has no"),
        (["summary", "missing/model.keras"], "cannot read model file"),
        (["summary", "keras.applications.MobileNet", "--input-shape", "a,b"], "--input-shape"),
        (["summary", "keras.applications.MobileNet", "--input-shape", "8,8,3"], "could not build"),
    ],
)
def test_user_errors_exit_2_without_traceback(argv, message, capsys):
    assert cli.main(argv) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_unreadable_file_exits_2(tmp_path, capsys):
    path = tmp_path / "broken.keras"
    path.write_bytes(b"not a zip file")
    assert cli.main(["summary", str(path)]) == 2
    assert "cannot read model file" in capsys.readouterr().err


def test_parser_lists_subcommands_and_requires_one(capsys):
    assert "summary" in cli.SUBCOMMANDS
    with pytest.raises(SystemExit) as exc:
        cli.main([])
    assert exc.value.code == 2


# --- start-up: no TensorFlow on the fast paths, no TensorFlow noise on success ----------------

_NO_TF_PROBE = """
import sys
from keras_cnn_ext import cli
for argv in (["--help"], ["summary", "lenet5", "--batch-size", "0"], ["demo", "--epochs", "x"]):
    try:
        code = cli.main(argv)
    except SystemExit as e:
        code = e.code
    print(argv[0], code, "tensorflow" in sys.modules, "keras" in sys.modules)
"""


def _clean_env():
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the test session sets it; users usually do not
    return env


def test_help_and_argument_errors_do_not_import_tensorflow():
    result = subprocess.run(
        [sys.executable, "-c", _NO_TF_PROBE],
        capture_output=True,
        text=True,
        env=_clean_env(),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[-4:-1] == [
        "--help 0 False False",
        "summary 2 False False",
        "demo 2 False False",
    ]
    assert "--verbose" in result.stdout  # listed by --help


def test_successful_summary_prints_no_tensorflow_log_lines():
    result = subprocess.run(
        [sys.executable, "-m", "keras_cnn_ext.cli", "summary", "lenet5"],
        capture_output=True,
        text=True,
        env=_clean_env(),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert 'Model "lenet5"' in result.stdout
    assert result.stderr == ""  # no "I0000 ... cudart_stub", "E0000 ... cuInit", absl lines


def test_verbose_is_accepted_before_and_after_the_subcommand():
    parser = cli.build_parser()
    assert parser.parse_args(["--verbose", "summary", "lenet5"]).verbose is True
    assert parser.parse_args(["summary", "lenet5", "--verbose"]).verbose is True
    assert parser.parse_args(["summary", "lenet5"]).verbose is False


def test_option_values_are_checked_while_parsing(capsys):
    assert cli.main(["summary", "lenet5", "--batch-size", "0"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.strip() == (
        "keras-cnn-ext summary: error: --batch-size must be a positive integer. Received: 0"
    )
