"""Callbacks of the standard QAT recipe: freeze BN statistics, freeze ranges, log ranges.

Krishnamoorthi 2018 ("Quantizing deep convolutional networks for efficient inference: a
whitepaper", section 3.2) fine-tunes with BN statistics frozen after a while (so the folded
weights stop moving) and the quantization ranges frozen near the end. Both flags are read when
`fit` traces its train step, so the callbacks retrace it (`make_train_function(force=True)`).
"""

from __future__ import annotations

import numbers

import keras
import numpy as np

from keras_cnn_ext.quantization.quantizers import FakeQuant


def _check_epochs(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"`{name}` must be an integer >= 0. Received: {name}={value!r}")
    return int(value)


def _retrace(model):
    model.make_train_function(force=True)


class _FreezeAfter(keras.callbacks.Callback):
    """Calls `_freeze(model)` at the start of epoch `after_epochs` (0-based: after N epochs)."""

    def __init__(self, after_epochs):
        super().__init__()
        self.after_epochs = _check_epochs(after_epochs, "after_epochs")
        self.frozen_at = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.frozen_at is None and epoch >= self.after_epochs:
            if self._freeze(self.model):
                _retrace(self.model)
            self.frozen_at = epoch


class FreezeBatchNormStatistics(_FreezeAfter):
    """After `after_epochs` epochs, BatchNormalization layers use their moving statistics.

    The layers are set `trainable=False`, which in Keras 3 runs BN in inference mode (moving
    mean and variance, no more updates) and also stops training gamma and beta.

    Args:
        after_epochs: the number of epochs trained with batch statistics first.

    Example:

    >>> callback = FreezeBatchNormStatistics(after_epochs=2)
    """

    def _freeze(self, model):
        changed = False
        for layer in _all_layers(model):
            if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable:
                layer.trainable = False
                changed = True
        return changed


class FreezeQuantizationRanges(_FreezeAfter):
    """After `after_epochs` epochs, the moving-average ranges of every `FakeQuant` stop moving.

    Args:
        after_epochs: the number of epochs the ranges keep adapting.

    Example:

    >>> callback = FreezeQuantizationRanges(after_epochs=3)
    """

    def _freeze(self, model):
        changed = False
        for layer in _all_layers(model):
            if isinstance(layer, FakeQuant) and not layer.frozen:
                layer.frozen = True
                changed = True
        return changed


class QuantizationRangeLogger(keras.callbacks.Callback):
    """Adds activation-range statistics of a QAT model to the `fit` logs at each epoch's end.

    Keys (in `History.history` and any later logger): `quant_range_min` and `quant_range_max`
    (the extremes over all `FakeQuant` layers), `quant_range_width_mean` (their mean width
    `max - min`), and with `per_layer=True` also `<layer>/min` and `<layer>/max`.

    Args:
        per_layer: log every quantizer's range as well. Default False.

    Example:

    >>> callback = QuantizationRangeLogger(per_layer=True)
    """

    def __init__(self, per_layer=False):
        super().__init__()
        self.per_layer = bool(per_layer)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        quantizers = [layer for layer in _all_layers(self.model) if isinstance(layer, FakeQuant)]
        if not quantizers:
            return
        lows = np.array([float(q.range_min.numpy()) for q in quantizers])
        highs = np.array([float(q.range_max.numpy()) for q in quantizers])
        logs["quant_range_min"] = float(lows.min())
        logs["quant_range_max"] = float(highs.max())
        logs["quant_range_width_mean"] = float((highs - lows).mean())
        if self.per_layer:
            for q, lo, hi in zip(quantizers, lows, highs, strict=True):
                logs[f"{q.name}/min"] = float(lo)
                logs[f"{q.name}/max"] = float(hi)


def _all_layers(model):
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)]
