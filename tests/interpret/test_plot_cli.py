"""Overlays, grid figures and the `explain` command's function."""

import os

import keras
import numpy as np
import pytest
from PIL import Image

from keras_cnn_ext import interpret


def test_overlay_writes_a_png(tmp_path):
    image = np.random.default_rng(0).uniform(size=(16, 16, 1)).astype("float32")
    heatmap = np.zeros((16, 16), "float32")
    heatmap[4:8, 4:8] = 1
    path = tmp_path / "cam.png"
    pixels = interpret.overlay(image, heatmap, path=path, cmap="jet", alpha=0.5)
    assert pixels.shape == (16, 16, 3) and pixels.dtype == np.uint8
    with Image.open(path) as saved:
        assert saved.size == (16, 16)
        np.testing.assert_array_equal(np.asarray(saved.convert("RGB")), pixels)
    # jet's hot end is red: the hot square is redder than the cold background.
    assert pixels[5, 5, 0] > pixels[12, 12, 0]
    assert [p.name for p in tmp_path.iterdir()] == ["cam.png"]  # no temporary file left


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"heatmap": np.zeros((8, 8))}, ValueError, "height and width"),
        ({"alpha": 2.0}, ValueError, "alpha"),
        ({"cmap": "no_such_map"}, ValueError, "cmap"),
        ({"path": "out.jpg"}, ValueError, ".png"),
        ({"path": "/no/such/folder/out.png"}, ValueError, "existing folder"),
    ],
)
def test_overlay_bad_input(kwargs, error, match):
    args = {"image": np.zeros((16, 16, 3)), "heatmap": np.zeros((16, 16)), **kwargs}
    with pytest.raises(error, match=match):
        interpret.overlay(**args)


def test_grid_figure(tmp_path, square_model, square_positives):
    images = square_positives[0][:2]
    maps = {
        "grad_cam": interpret.grad_cam(square_model, images, 1),
        "saliency": interpret.saliency(square_model, images, 1),
    }
    path = interpret.plot_grid(images, maps, tmp_path / "grid.png", titles=["a", "b"])
    with Image.open(path) as saved:
        width, height = saved.size
    assert width > height  # 3 columns (image + 2 methods) over 2 rows
    with pytest.raises(ValueError, match="one map per image"):
        interpret.plot_grid(images, {"x": maps["saliency"][:1]}, tmp_path / "bad.png")


@pytest.fixture(scope="module")
def saved_square_model(tmp_path_factory, square_model):
    path = tmp_path_factory.mktemp("model") / "squares.keras"
    square_model.save(path)
    return path


def _save_png(path, array):
    Image.fromarray(np.round(array * 255).astype("uint8")).save(path)
    return path


def test_explain_file(tmp_path, saved_square_model, square_positives):
    image = _save_png(tmp_path / "digit.png", square_positives[0][0, ..., 0])
    result = interpret.explain_file(saved_square_model, image, "grad_cam", tmp_path / "out.png")
    assert result["class_index"] == 1 and result["layer"] == "conv3"
    assert os.path.isfile(result["out"])
    default = interpret.explain_file(saved_square_model, image, "saliency", class_index=0)
    assert default["out"] == str(tmp_path / "digit_saliency.png") and default["class_index"] == 0


def test_explain_file_errors(tmp_path, saved_square_model, square_positives):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="readable image"):
        interpret.explain_file(saved_square_model, broken, out=tmp_path / "o.png")
    with pytest.raises(ValueError, match="readable image"):
        interpret.explain_file(saved_square_model, tmp_path / "missing.png", out=tmp_path / "o.png")
    big = _save_png(tmp_path / "big.png", np.random.default_rng(0).uniform(size=(40, 48)))
    with pytest.raises(ValueError, match=r"expects 32x32 .* is 40x48\. Pass resize=True"):
        interpret.explain_file(saved_square_model, big, out=tmp_path / "o.png")
    resized = interpret.explain_file(saved_square_model, big, out=tmp_path / "o.png", resize=True)
    assert os.path.isfile(resized["out"])
    with pytest.raises(ValueError, match=r"Candidates.*'conv3'"):
        interpret.explain_file(saved_square_model, big, layer="conv9", resize=True)
    with pytest.raises(ValueError, match="method"):
        interpret.explain_file(saved_square_model, big, method="lime")
    with pytest.raises(ValueError, match="only to the methods"):
        interpret.explain_file(saved_square_model, big, method="saliency", layer="conv3")
    with pytest.raises(ValueError, match="model_path"):
        interpret.explain_file(tmp_path / "none.keras", big)


def test_load_image_channels(tmp_path):
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((5, 7, 3), "uint8") + 255).save(rgb)
    grey = interpret.load_image(rgb, channels=1)
    assert grey.shape == (5, 7, 1) and np.allclose(grey, 1.0)
    assert interpret.load_image(rgb, size=(5, 7)).shape == (5, 7, 3)
    assert keras.ops.is_tensor(keras.ops.convert_to_tensor(grey))
