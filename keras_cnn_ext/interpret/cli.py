"""What `keras-cnn-ext explain model.keras image.png --method grad_cam --out out.png` runs."""

from __future__ import annotations

import os

import numpy as np

from keras_cnn_ext.interpret import _targets
from keras_cnn_ext.interpret.methods import LAYER_METHODS, METHODS, build_method
from keras_cnn_ext.interpret.plot import _check_path, overlay


def load_image(image_path, size=None, channels=3, resize=False, scale=1.0 / 255.0):
    """Reads an image file with PIL into a float32 `(height, width, channels)` array.

    Args:
        image_path: the file to read (any format PIL opens).
        size: the `(height, width)` the model expects, or None to keep the file's size.
        channels: 1 (grey) or 3 (RGB), the model's input channels.
        resize: resize to `size` when it differs (bilinear); otherwise a different size raises.
        scale: pixel values are multiplied by this (default 1/255, giving [0, 1]).

    Raises:
        ValueError: the file cannot be read as an image, or its size differs and `resize` is False.
    """
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as error:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "Reading images needs pillow: pip install 'keras-cnn-ext[plot]'"
        ) from error
    if channels not in (1, 3):
        raise ValueError(f"`channels` must be 1 or 3. Received: {channels!r}")
    try:
        with Image.open(image_path) as opened:
            picture = opened.convert("L" if channels == 1 else "RGB")
    except (FileNotFoundError, IsADirectoryError, UnidentifiedImageError, OSError) as error:
        raise ValueError(
            f"`image_path` must be a readable image file (PNG, JPEG, ...). Could not read "
            f"{os.fspath(image_path)!r}: {error}"
        ) from None
    if size is not None and tuple(size) != (picture.height, picture.width):
        if not resize:
            raise ValueError(
                f"The model expects {size[0]}x{size[1]} images but {os.fspath(image_path)!r} is "
                f"{picture.height}x{picture.width}. Pass resize=True (`--resize`) to resize it."
            )
        picture = picture.resize((size[1], size[0]), Image.BILINEAR)
    pixels = np.asarray(picture, "float32") * scale
    return pixels[..., None] if pixels.ndim == 2 else pixels


def explain_file(
    model_path,
    image_path,
    method="grad_cam",
    out=None,
    layer=None,
    class_index=None,
    resize=False,
    scale=1.0 / 255.0,
):
    """Explains one image file with one method and writes the overlay PNG.

    Args:
        model_path: a `.keras` file (loaded with `compile=False`) or a `keras.Model`.
        image_path: the image to explain.
        method: a name from `keras_cnn_ext.interpret.METHODS` (default `"grad_cam"`).
        out: the PNG to write (default: `<image name>_<method>.png` beside the image).
        layer: the target layer for Grad-CAM-type methods (None: automatic); an unknown name
            raises a ValueError listing the candidates.
        class_index: the class to explain (None: the top prediction).
        resize: resize the image to the model's input size instead of raising.
        scale: pixel scale applied after reading (default 1/255).

    Returns:
        A dict with `"out"` (the PNG path), `"class_index"`, `"score"` (the model's output for
        that class), `"method"` and `"layer"` (the target layer used, or None).
    """
    import keras

    if method not in METHODS:
        raise ValueError(f"`method` must be one of {sorted(METHODS)}. Received: {method!r}")
    if layer is not None and method not in LAYER_METHODS:
        raise ValueError(
            f"`layer` applies only to the methods {list(LAYER_METHODS)}. Received layer={layer!r} "
            f"with method={method!r}"
        )
    if isinstance(model_path, keras.Model):
        model = model_path
    else:
        if not os.path.isfile(os.fspath(model_path)):
            raise ValueError(
                f"`model_path` must be an existing .keras file. Received: {model_path!r}"
            )
        model = keras.saving.load_model(model_path, compile=False)
    io = _targets.graph_io(model)
    if io is None or len(io[0][0].shape) != 4:
        raise ValueError("The model must be a Sequential or Functional model with one image input.")
    height, width, channels = io[0][0].shape[1:]
    size = (height, width) if height is not None and width is not None else None
    image = load_image(image_path, size=size, channels=channels, resize=resize, scale=scale)
    if out is None:
        stem = os.path.splitext(os.fspath(image_path))[0]
        out = f"{stem}_{method}.png"
    out = _check_path(out, "out")
    options = {"layer": layer} if method in LAYER_METHODS else {}
    explainer = build_method(model, method, **options)
    batch = image[None]
    index = int(explainer.resolve_class_index(batch, class_index)[0])
    heatmap = explainer.attribute(batch, index)[0]
    overlay(image, heatmap, path=out)
    return {
        "out": out,
        "class_index": index,
        "score": float(explainer.predict(batch)[0, index]),
        "method": method,
        "layer": getattr(explainer, "layer_name", None),
    }
