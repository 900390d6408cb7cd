"""The examples written for the command-line issue run end to end at tiny sizes."""

import importlib.util
import os

import numpy as np
import pytest

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_applications_model_gets_se_blocks_and_an_adaptive_head():
    example = _load("applications_with_our_layers")
    # No training step here (tracing MobileNet's train step dominates on a loaded CPU).
    result = example.main(["--epochs", "0", "--test-size", "32"])
    # MobileNet has 13 pointwise convolutions: one SE block after each.
    assert len(result["se_blocks"]) == 13
    assert result["model"].get_layer("adaptive_pool").output.shape[1:3] == (2, 2)
    assert 0.0 <= result["accuracy"] <= 1.0
    base, _ = example.build()
    assert not any("_se" in layer.name for layer in base.layers)  # the original is unchanged


def test_every_architecture_family_builds_and_runs(capsys):
    example = _load("architecture_families")
    rows = example.main(["--input-size", "32", "--families", "lenet5,resnet20,mobilenetv1"])
    assert [row[0] for row in rows] == ["lenet5", "resnet20", "mobilenetv1"]
    for _, _, params, macs, shape in rows:
        assert params > 0 and macs > 0 and shape == (2, 10)
    assert "| resnet20 |" in capsys.readouterr().out


# AlexNet needs at least 67x67 inputs and DenseNet-BC is slow to build: the example's default
# run covers them; here the other families at 32x32.
@pytest.mark.parametrize("family", ["vgg11", "seresnet18"])
def test_remaining_families_build(family):
    example = _load("architecture_families")
    (row,) = example.main(["--input-size", "32", "--families", family])
    assert row[4] == (2, 10)


def test_erasing_and_cutout_in_a_tf_data_pipeline(tmp_path):
    from keras_cnn_ext.datasets import load_mnist_5k

    example = _load("erasing_in_tf_data")
    (x, y), _ = load_mnist_5k()
    batch = next(iter(example.make_pipeline(x[:64], y[:64], shuffle=False)))[0].numpy()
    assert batch.shape == (64, 28, 28, 1)
    changed = np.any(batch != x[:64], axis=(1, 2, 3))
    assert 0 < changed.sum() <= 64  # Cutout always, RandomErasing on about half
    figure = tmp_path / "erased.png"
    result = example.main(["--epochs", "1", "--train-size", "256", "--figure", str(figure)])
    assert figure.stat().st_size > 0 and 0.0 <= result["accuracy"] <= 1.0
