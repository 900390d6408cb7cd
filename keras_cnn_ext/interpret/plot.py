"""Pictures of attribution maps: one overlay, or a grid of images x methods, saved to PNG.

matplotlib is imported lazily (the `plot` extra) and only through its object API with the Agg
canvas, so the user's pyplot backend and open figures are left alone. Files are written to a
temporary file in the target folder and moved into place, so a failed write never leaves a
half-written PNG where the user's file was.
"""

from __future__ import annotations

import os

import numpy as np

from keras_cnn_ext.atomic import atomic_path


def _matplotlib():
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "Attribution pictures need matplotlib: pip install 'keras-cnn-ext[plot]'"
        ) from error
    return matplotlib, Figure, FigureCanvasAgg


def _check_path(path, name="path"):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`{name}` must be a file path (str or os.PathLike). Received: {path!r}")
    path = os.fspath(path)
    if not path.lower().endswith(".png"):
        raise ValueError(f"`{name}` must end in '.png'. Received: {path!r}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"`{name}` must be in an existing folder. Received: {path!r}")
    return path


def _atomic_write(path, write):
    with atomic_path(path, suffix=".png") as tmp:
        write(tmp)
    return path


def _as_display_image(image):
    """(H, W), (H, W, 1|3|4) or channels-first (1|3, H, W) -> float RGB in [0, 1], (H, W, 3)."""
    image = np.asarray(image, "float32")
    if image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3, 4):
        image = np.moveaxis(image, 0, -1)
    if image.ndim == 3 and image.shape[-1] == 4:
        image = image[..., :3]
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(
            "`image` must have shape (height, width), (height, width, 1|3|4) or (1|3, height, "
            f"width). Received shape: {image.shape}"
        )
    low, high = float(np.min(image)), float(np.max(image))
    return (image - low) / (high - low) if high > low else np.zeros_like(image)


def normalize_map(heatmap):
    """Scales a map to [0, 1] (a constant map becomes zeros)."""
    heatmap = np.asarray(heatmap, "float32")
    low, high = float(np.min(heatmap)), float(np.max(heatmap))
    return (heatmap - low) / (high - low) if high > low else np.zeros_like(heatmap)


def overlay(image, heatmap, path=None, cmap="jet", alpha=0.45):
    """Blends a colour-mapped heatmap over an image; writes a PNG when `path` is given.

    Args:
        image: one image, `(height, width[, channels])` (any value range: it is rescaled).
        heatmap: `(height, width)` map of the same size (rescaled to [0, 1]).
        path: where to write the PNG (written atomically), or None to only return the pixels.
        cmap: a matplotlib colormap name (default `"jet"`).
        alpha: the heatmap's weight in the blend, in [0, 1] (default 0.45).

    Returns:
        The blended picture, uint8 RGB `(height, width, 3)`.

    Example:

    >>> pixels = overlay(np.random.rand(8, 8, 3), np.random.rand(8, 8))
    >>> pixels.shape, pixels.dtype
    ((8, 8, 3), dtype('uint8'))
    """
    matplotlib, _, _ = _matplotlib()
    rgb = _as_display_image(image)
    heatmap = np.asarray(heatmap, "float32")
    if heatmap.ndim == 3 and 1 in (heatmap.shape[0], heatmap.shape[-1]):
        heatmap = heatmap.squeeze()
    if heatmap.shape != rgb.shape[:2]:
        raise ValueError(
            f"`heatmap` must have the image's height and width {rgb.shape[:2]}. "
            f"Received shape: {heatmap.shape}"
        )
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ValueError(f"`alpha` must be a number in [0, 1]. Received: {alpha!r}")
    try:
        colormap = matplotlib.colormaps[cmap]
    except KeyError:
        raise ValueError(f"`cmap` must be a matplotlib colormap name. Received: {cmap!r}") from None
    colours = colormap(normalize_map(heatmap))[..., :3]
    blended = np.clip((1 - alpha) * rgb + alpha * colours, 0, 1)
    pixels = np.round(blended * 255).astype("uint8")
    if path is not None:
        path = _check_path(path)
        import matplotlib.image

        _atomic_write(path, lambda tmp: matplotlib.image.imsave(tmp, pixels, format="png"))
    return pixels


def plot_grid(images, maps, path, titles=None, cmap="jet", alpha=0.45, dpi=100):
    """Saves a grid figure: one row per image, the image then one overlay per method.

    Args:
        images: a batch `(batch, height, width[, channels])`.
        maps: a dict `{method name: (batch, height, width) maps}` (one column each, in order).
        path: the PNG file to write (atomically).
        titles: optional row labels, one per image (e.g. the predicted class).
        cmap, alpha: as in `overlay`.
        dpi: resolution of the figure.

    Returns:
        `path`.
    """
    _, Figure, FigureCanvasAgg = _matplotlib()
    path = _check_path(path)
    images = np.asarray(images)
    if not isinstance(maps, dict) or not maps:
        raise TypeError(
            "`maps` must be a non-empty dict {method name: (batch, height, width) maps}. "
            f"Received: {type(maps)}"
        )
    for name, value in maps.items():
        if len(value) != len(images):
            raise ValueError(
                f"`maps[{name!r}]` must hold one map per image ({len(images)}). "
                f"Received {len(value)}"
            )
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"`titles` must hold one label per image. Received {len(titles)}")
    rows, cols = len(images), 1 + len(maps)
    figure = Figure(figsize=(2.0 * cols, 2.0 * rows), dpi=dpi)
    FigureCanvasAgg(figure)
    for r, image in enumerate(images):
        cells = [_as_display_image(image)] + [
            overlay(image, value[r], cmap=cmap, alpha=alpha) for value in maps.values()
        ]
        labels = ["image", *maps]
        for c, cell in enumerate(cells):
            axis = figure.add_subplot(rows, cols, r * cols + c + 1)
            axis.imshow(cell)
            axis.set_xticks([])
            axis.set_yticks([])
            if r == 0:
                axis.set_title(labels[c], fontsize=9)
            if c == 0 and titles is not None:
                axis.set_ylabel(str(titles[r]), fontsize=9)
    figure.tight_layout()
    return _atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"))
