"""Callbacks that change a layer's rate between training steps, from the host."""

from __future__ import annotations

import keras

from keras_cnn_ext.utils import check_positive_int, check_rate


def _rate_layers(layers, model):
    """The layers whose `rate_variable` a scheduler drives."""
    if layers is None:
        found = [layer for layer in model._flatten_layers() if hasattr(layer, "rate_variable")]
        if not found:
            raise ValueError(
                "`layers=None` selects every layer with a `rate_variable` (e.g. DropBlock2D), "
                "but the model has none."
            )
        return found
    if isinstance(layers, keras.layers.Layer):
        layers = [layers]
    layers = list(layers)
    for layer in layers:
        if not hasattr(layer, "rate_variable"):
            raise ValueError(
                "`layers` must hold built layers with a `rate_variable` (e.g. DropBlock2D). "
                f"Received: {layer!r}"
            )
    return layers


class RateScheduler(keras.callbacks.Callback):
    """Sets the `rate_variable` of layers from `schedule(step)` before every training batch.

    The step is the optimizer's iteration count, so the schedule continues across `fit`
    calls and after a checkpoint is restored. The value is assigned from the host in
    cross-replica context, which updates every replica's copy of the variable; the compiled
    train step reads the variable, so it sees the new value without retracing. Nothing changes
    Python state inside a layer's `call`.

    Args:
        schedule: a callable `step -> rate` (Python int to Python float in [0, 1)).
        layers: a layer, a list of layers, or `None` (default) for every layer of the model
            that has a `rate_variable` (e.g. every `DropBlock2D`).
        verbose: int, 1 prints the rate at the start of each epoch.

    Example:

    >>> scheduler = RateScheduler(lambda step: min(0.1, 0.1 * step / 1000))
    """

    def __init__(self, schedule, layers=None, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"`schedule` must be callable. Received: {schedule!r}")
        self.schedule = schedule
        self.layers = layers
        self.verbose = verbose
        self._targets = None

    def _step(self):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            return 0
        return int(keras.ops.convert_to_numpy(optimizer.iterations))

    def _set(self, step):
        rate = self.schedule(step)
        try:
            rate = check_rate(rate, "schedule(step)")
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"`schedule` must return a float in [0, 1) (step {step}). {e}"
            ) from None
        for layer in self._targets:
            layer.rate_variable.assign(float(rate))
        return rate

    def on_train_begin(self, logs=None):
        self._targets = _rate_layers(self.layers, self.model)

    def on_train_batch_begin(self, batch, logs=None):
        self._set(self._step())

    def on_epoch_begin(self, epoch, logs=None):
        if self.verbose:
            print(f"Epoch {epoch + 1}: rate = {self.schedule(self._step()):.4f}")

    def on_train_end(self, logs=None):
        self._targets = None


class LinearRateSchedule(RateScheduler):
    """Ramps the rate of layers linearly from `start` to `end` over `steps` training steps.

    DropBlock's paper (Ghiasi et al., 2018) finds that starting with a low drop rate and
    increasing it linearly works better than a fixed rate. After `steps` the rate stays at
    `end`.

    Args:
        layers: a layer, a list of layers, or `None` for every layer with a `rate_variable`.
        start: float in [0, 1), the rate at step 0.
        end: float in [0, 1), the rate from step `steps` on.
        steps: int >= 1, the length of the ramp in optimizer steps.
        verbose: int, 1 prints the rate at the start of each epoch.

    Example:

    >>> from keras_cnn_ext.layers import DropBlock2D
    >>> block = DropBlock2D(rate=0.1, block_size=5)
    >>> ramp = LinearRateSchedule(block, start=0.0, end=0.1, steps=1000)
    """

    def __init__(self, layers=None, start=0.0, end=0.1, steps=1000, verbose=0):
        self.start = check_rate(start, "start")
        self.end = check_rate(end, "end")
        self.steps = check_positive_int(steps, "steps")
        super().__init__(self.rate_at, layers=layers, verbose=verbose)

    def rate_at(self, step):
        """The scheduled rate at optimizer step `step`."""
        fraction = min(max(step, 0), self.steps) / self.steps
        return self.start + (self.end - self.start) * fraction
