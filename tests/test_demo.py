"""The `keras-cnn-ext demo` job on real MNIST digits."""

import numpy as np
import pytest

from keras_cnn_ext import cli
from keras_cnn_ext.datasets import load_mnist_5k
from keras_cnn_ext.demo import run_demo


def test_mnist_split_is_stratified_and_disjoint():
    (x_train, y_train), (x_test, y_test) = load_mnist_5k(test_size=1000, seed=0)
    assert x_train.shape == (4000, 28, 28, 1) and x_test.shape == (1000, 28, 28, 1)
    assert np.bincount(y_test).tolist() == [100] * 10
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0
    # No test digit is also a training digit.
    train_rows = {row.tobytes() for row in x_train.reshape(4000, -1)}
    assert not any(row.tobytes() in train_rows for row in x_test.reshape(1000, -1))


def test_demo_trains_profiles_and_reloads(tmp_path):
    lines = []
    results = run_demo(epochs=1, output_dir=str(tmp_path), verbose=0, print_fn=lines.append)
    # One epoch over 4,000 real digits: far above chance (10%).
    assert results["accuracy"] > 0.8
    assert results["reload_matches"]
    assert (tmp_path / "demo.keras").exists()
    assert not list(tmp_path.glob("*.partial*"))
    report = "\n".join(lines)
    assert "FractionalMaxPooling2D" in report and "MACs" in report


@pytest.mark.parametrize("argv", [["demo", "--epochs", "0"], ["demo", "--batch-size", "-1"]])
def test_demo_cli_rejects_bad_arguments(argv, capsys):
    assert cli.main(argv) == 2
    assert "must be a positive integer" in capsys.readouterr().err
