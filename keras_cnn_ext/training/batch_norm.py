"""Re-estimating BatchNormalization statistics after training.

BatchNormalization's moving averages trail the weights: after a short run (a few dozen steps, or
the last epochs of a schedule with a large learning rate) they describe the network of several
steps ago, and inference accuracy can be far below training accuracy. The usual remedy
(PyTorch's `torch.optim.swa_utils.update_bn`, the SWA paper's step after weight averaging) is to
recompute them with the final weights: reset them and run forward passes in training mode while
the layers average the batches' statistics with equal weights. Keras has no such function;
`recalibrate_batch_norm` is it.
"""

from __future__ import annotations

import keras
import numpy as np

from keras_cnn_ext.utils import check_int


def batch_norm_layers(model):
    """Every `keras.layers.BatchNormalization` (subclasses included) in `model`, nested models too."""
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(
            f"`model` must be a keras.Model or keras.layers.Layer. Received: {type(model).__name__}"
        )
    return [
        layer
        for layer in model._flatten_layers(include_self=True, recursive=True)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


def _batches(x, batch_size, steps):
    import tensorflow as tf

    if isinstance(x, tf.data.Dataset):
        for index, element in enumerate(x):
            if steps is not None and index >= steps:
                return
            yield element[0] if isinstance(element, (tuple, list)) else element
        return
    if isinstance(x, (tuple, list, dict)):
        raise TypeError(
            "`x` must be an array of inputs or a tf.data.Dataset of inputs or (inputs, targets). "
            f"Received: {type(x).__name__}"
        )
    try:
        x = np.asarray(x)
    except Exception as error:  # noqa: BLE001 - re-raised with the argument's name
        raise TypeError(f"`x` must be array-like or a tf.data.Dataset: {error}") from error
    if x.ndim == 0 or len(x) == 0:
        raise ValueError(f"`x` must hold at least one sample. Received shape {x.shape}")
    count = int(np.ceil(len(x) / batch_size))
    if steps is not None:
        count = min(count, steps)
    for index in range(count):
        yield x[index * batch_size : (index + 1) * batch_size]


def recalibrate_batch_norm(model, x, batch_size=256, steps=None):
    """Recomputes the moving mean and variance of every trainable BatchNormalization in `model`.

    Each layer's statistics are reset and replaced by the equal-weight average of the batch
    statistics of `x` under the current weights (momentum `1 - 1/i` for the `i`-th batch), as
    PyTorch's `torch.optim.swa_utils.update_bn` does. Only the moving statistics change; the
    momentum of each layer is restored afterwards. The forward passes run in training mode, so
    Dropout and other random layers are active during them, as in PyTorch. Frozen layers
    (`trainable=False`) keep their statistics, as they do in `fit`.

    Args:
        model: a Keras model or layer.
        x: inputs (array-like, batched here by `batch_size`) or a `tf.data.Dataset` of batches of
            inputs or of `(inputs, targets)`. Use un-augmented training images.
        batch_size: batch size for array inputs. Default 256.
        steps: at most this many batches, or `None` for all of `x`.

    Returns:
        The number of layers recalibrated.

    Raises:
        ValueError: a layer uses batch renormalization (its statistics follow other rules), or
            `x` is empty.
        TypeError: `model` is not a Keras layer or `x` is not array-like or a dataset.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization()])
    >>> recalibrate_batch_norm(model, np.full((8, 4), 3.0, "float32"))
    1
    >>> float(model.layers[0].moving_mean.numpy()[0])
    3.0
    """
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    steps = check_int(steps, "steps", minimum=1, allow_none=True)
    layers = [layer for layer in batch_norm_layers(model) if layer.trainable]
    for layer in layers:
        if getattr(layer, "renorm", False):
            raise ValueError(
                f"Layer {layer.name!r} uses batch renormalization (`renorm=True`); "
                "recalibrate_batch_norm supports plain BatchNormalization only."
            )
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    saved = [(layer.moving_mean.numpy(), layer.moving_variance.numpy()) for layer in layers]
    seen = 0
    try:
        for layer in layers:
            layer.moving_mean.assign(keras.ops.zeros_like(layer.moving_mean))
            layer.moving_variance.assign(keras.ops.ones_like(layer.moving_variance))
        for batch in _batches(x, batch_size, steps):
            seen += 1
            for layer in layers:
                layer.momentum = 1.0 - 1.0 / seen
            model(batch, training=True)
        if seen == 0:
            raise ValueError("`x` yielded no batch; the statistics were left unchanged.")
    except BaseException:
        for layer, (mean, variance) in zip(layers, saved, strict=True):
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(variance)
        raise
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
    return len(layers)
