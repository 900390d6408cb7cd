"""The `keras-cnn-ext` command line: summary of names and files, clean errors with status 2."""

import json

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
