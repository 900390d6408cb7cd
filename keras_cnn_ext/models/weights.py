"""Weights for builders: the `weights` argument, and copies from other models.

- `check_weights`: `weights` must be None or a readable `.weights.h5`/`.keras` file.
- `load_weights`: loads that file into a built model, with an error naming the model.
- `copy_weights`: copies the weights of a model with the same architecture (for example a
  `keras.applications` model) into a builder's model, matched by order and shape.
- `load_keras_applications_weights`: the same, matched by layer name (ResNet, DenseNet).
"""

from __future__ import annotations

import collections
import os

import keras
import numpy as np

WEIGHTS_SUFFIXES = (".weights.h5", ".keras")


def check_weights(weights):
    """Validates a builder's `weights`: None (random initialisation) or a readable file.

    Raises:
        ValueError: naming `weights`, what is accepted and what was received; for
            `"imagenet"`, how to get keras.applications' ImageNet weights instead.
    """
    if weights is None:
        return None
    accepted = "None (random initialisation) or the path of a readable weights file"
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(
            f"`weights` must be {accepted} ({' or '.join(WEIGHTS_SUFFIXES)}). "
            f"Received: weights={weights!r}"
        )
    path = os.fspath(weights)
    if path == "imagenet":
        raise ValueError(
            "`weights='imagenet'` is not available for keras_cnn_ext builders: build the "
            "matching `keras.applications` model with ImageNet weights and copy them with "
            "`keras_cnn_ext.models.load_keras_applications_weights` (by layer name: ResNet, "
            "DenseNet) or `keras_cnn_ext.models.copy_weights` (by order), or pass the path of "
            f"a weights file. Received: weights={weights!r}"
        )
    if not (os.path.isfile(path) and os.access(path, os.R_OK)):
        raise ValueError(
            f"`weights` must be {accepted}; no readable file exists there. "
            f"Received: weights={weights!r}"
        )
    if not path.endswith(WEIGHTS_SUFFIXES):
        raise ValueError(
            f"`weights` must be a file ending in {' or '.join(WEIGHTS_SUFFIXES)} (what "
            f"`model.load_weights` reads). Received: weights={weights!r}"
        )
    return path


def load_weights(model, weights):
    """Loads the file `weights` (checked by `check_weights`) into `model`; None does nothing.

    Raises:
        ValueError: if the file does not fit the model.
    """
    if weights is None:
        return model
    try:
        model.load_weights(os.fspath(weights))
    except Exception as error:  # keras raises several types for a mismatching file
        raise ValueError(
            f"Could not load `weights` into model `{model.name}`: {error}. "
            f"Received: weights={weights!r}"
        ) from error
    return model


def _squeezed(shape):
    return tuple(d for d in shape if d != 1)


def copy_weights(source, target, *, reshape=True):
    """Copies every variable of `source` into `target`: same architecture, names may differ.

    Variables are matched in order within each shape: the k-th variable of a given shape in
    `target` gets the k-th variable of that shape in `source`. For two models built layer for
    layer alike (`keras.applications.VGG16(weights=None)` and our `VGG16()`) that is plain
    order; it also holds when one model nests layers in another order (our MobileNetV1's
    `SeparableConvBlock` lists its pointwise kernel before its first normalisation;
    keras.applications' MobileNet does not). With `reshape`, shapes are compared without their
    size-1 axes, so a 1x1 `Conv2D` classifier maps onto a `Dense` one.

    Args:
        source: the model holding the weights.
        target: the model to fill (same architecture).
        reshape: compare shapes without their size-1 axes. Default True.

    Returns:
        `target`.

    Raises:
        ValueError: if the variable counts, or the counts of some shape, differ.

    Example:

    >>> source = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> target = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> bool(np.all(copy_weights(source, target).get_weights()[0] == source.get_weights()[0]))
    True
    """
    key = _squeezed if reshape else tuple
    src, dst = list(source.weights), list(target.weights)
    if len(src) != len(dst):
        raise ValueError(
            f"Cannot copy weights: `source` ({source.name}) has {len(src)} variables and "
            f"`target` ({target.name}) has {len(dst)}."
        )
    queues = collections.defaultdict(collections.deque)
    for variable in src:
        queues[key(tuple(variable.shape))].append(variable)
    pairs = []
    for variable in dst:
        queue = queues[key(tuple(variable.shape))]
        if not queue:
            raise ValueError(
                f"Cannot copy weights: `target` variable `{variable.path}` of shape "
                f"{tuple(variable.shape)} has no remaining variable of that shape in `source`."
            )
        pairs.append((variable, queue.popleft()))
    for dst_var, src_var in pairs:
        value = np.asarray(keras.ops.convert_to_numpy(src_var))
        dst_var.assign(value.reshape(tuple(dst_var.shape)))
    return target


def _leaf_weighted_layers(model):
    """The layers of `model` that own variables themselves, nested layers included."""
    return [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if not layer._layers and layer.weights
    ]


def load_keras_applications_weights(model, keras_model):
    """Copies a `keras.applications` model's weights into ours, matched by layer name.

    Our ResNet and DenseNet builders name every convolution, normalisation and dense layer as
    `keras.applications` does (`conv2_block1_1_conv`, `conv2_block1_0_bn`, ...), also inside
    the block layers (`ResidualBlock`, `DenseBlock`), so the mapping is by name and does not
    depend on the order in which layers create their variables. Use it to load ImageNet
    weights: `load_keras_applications_weights(ResNet50(), keras.applications.ResNet50())`.

    Args:
        model: our model (same architecture).
        keras_model: the `keras.applications` model holding the weights.

    Returns:
        `model`.

    Raises:
        ValueError: if a weighted layer of either model has no counterpart of the same name,
            or a pair of variables differs in shape.
    """
    ours = {layer.name: layer for layer in _leaf_weighted_layers(model)}
    theirs = {layer.name: layer for layer in _leaf_weighted_layers(keras_model)}
    unmatched = sorted(set(ours) ^ set(theirs))
    if unmatched:
        raise ValueError(
            f"Cannot copy weights from `{keras_model.name}` into `{model.name}`: these weighted "
            f"layers exist in only one of them: {unmatched[:10]}"
            + (f" and {len(unmatched) - 10} more" if len(unmatched) > 10 else "")
        )
    pairs = []
    for name, layer in theirs.items():
        target = ours[name]
        if len(layer.weights) != len(target.weights):
            raise ValueError(
                f"Cannot copy weights: layer `{name}` has {len(layer.weights)} variables in "
                f"`{keras_model.name}` and {len(target.weights)} in `{model.name}`."
            )
        for src, dst in zip(layer.weights, target.weights, strict=True):
            if tuple(src.shape) != tuple(dst.shape):
                raise ValueError(
                    f"Cannot copy weights: `{src.path}` has shape {tuple(src.shape)} but "
                    f"`{dst.path}` has shape {tuple(dst.shape)}."
                )
            pairs.append((dst, src))
    for dst, src in pairs:
        dst.assign(keras.ops.convert_to_numpy(src))
    return model
