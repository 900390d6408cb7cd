"""Callbacks that schedule the distillation temperature and the label weight `alpha`."""

from __future__ import annotations

import numbers

import keras

from keras_cnn_ext.distillation.trainer import attached_distillation


def _check_pairs(schedule):
    pairs = []
    for item in schedule:
        if (
            not isinstance(item, (tuple, list))
            or len(item) != 2
            or isinstance(item[0], bool)
            or not isinstance(item[0], numbers.Integral)
            or item[0] < 0
        ):
            raise ValueError(
                "`schedule` as a list must hold (epoch, value) pairs with epochs >= 0. "
                f"Received: {schedule!r}"
            )
        pairs.append((int(item[0]), item[1]))
    if (
        not pairs
        or pairs[0][0] != 0
        or any(a[0] >= b[0] for a, b in zip(pairs, pairs[1:], strict=False))
    ):
        raise ValueError(
            "`schedule` pairs must start at epoch 0 and have increasing epochs, e.g. "
            f"[(0, 8.0), (10, 4.0)]. Received: {schedule!r}"
        )
    return pairs


class _DistillationScheduler(keras.callbacks.Callback):
    """Sets a `Distillation` variable from a schedule; the value is logged every epoch."""

    attribute = None

    def __init__(self, schedule, distillation=None, verbose=0):
        super().__init__()
        if isinstance(schedule, (list, tuple)):
            self.pairs = _check_pairs(schedule)
            for _, value in self.pairs:
                self.check_value(value)
        elif callable(schedule):
            self.pairs = None
        else:
            raise TypeError(
                "`schedule` must be a callable of the optimizer step (e.g. a "
                "keras.optimizers.schedules.LearningRateSchedule) or a list of (epoch, value) "
                f"pairs. Received: {schedule!r} of type {type(schedule)}"
            )
        self.schedule = schedule
        self.distillation = distillation
        self.verbose = verbose
        self._target = None

    @classmethod
    def check_value(cls, value):
        raise NotImplementedError

    def value_at(self, epoch, step):
        """The scheduled value at `epoch` (list schedules) or optimizer `step` (callables)."""
        if self.pairs is not None:
            return [value for start, value in self.pairs if start <= epoch][-1]
        value = self.schedule(step)
        return float(keras.ops.convert_to_numpy(value))

    def _step(self):
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def _set(self, epoch):
        value = self.check_value(self.value_at(epoch, self._step()))
        getattr(self._target, self.attribute).assign(value)
        return value

    def on_train_begin(self, logs=None):
        self._target = self.distillation or attached_distillation(self.model)
        if self._target is None:
            raise ValueError(
                f"{type(self).__name__} found no Distillation attached to {self.model.name!r}: "
                "call `Distillation.attach(student)` first or pass `distillation=`."
            )
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        value = self._set(epoch)
        if self.verbose:
            print(f"Epoch {epoch + 1}: {self.attribute} = {value:.4g}")

    def on_train_batch_begin(self, batch, logs=None):
        if self.pairs is None:
            self._set(self._epoch)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs[self.attribute] = float(getattr(self._target, self.attribute).numpy())

    def get_config(self):
        schedule = self.schedule
        if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            schedule = keras.optimizers.schedules.serialize(schedule)
        elif self.pairs is not None:
            schedule = [list(pair) for pair in self.pairs]
        else:
            raise NotImplementedError(
                "A plain Python callable schedule cannot be serialized; use a "
                "keras.optimizers.schedules.LearningRateSchedule or a list of (epoch, value)."
            )
        return {"schedule": schedule, "verbose": self.verbose}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config["schedule"], dict):
            config["schedule"] = keras.optimizers.schedules.deserialize(config["schedule"])
        else:
            config["schedule"] = [tuple(pair) for pair in config["schedule"]]
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class TemperatureScheduler(_DistillationScheduler):
    """Schedules the distillation temperature `tau` during `fit`; logs it as `temperature`.

    Args:
        schedule: a list of `(epoch, temperature)` pairs starting at epoch 0 (the value holds
            from that epoch on), or a callable of the optimizer step, such as any
            `keras.optimizers.schedules.LearningRateSchedule`, evaluated before every batch.
        distillation: the `Distillation`; default the one attached to the model being fit.
        verbose: 1 prints the value at the start of each epoch.

    Example:

    >>> anneal = TemperatureScheduler([(0, 8.0), (5, 4.0), (10, 2.0)])
    >>> anneal.value_at(epoch=6, step=0)
    4.0
    """

    attribute = "temperature"

    @classmethod
    def check_value(cls, value):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
            raise ValueError(f"`schedule` must give positive temperatures. Received: {value!r}")
        return float(value)


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class AlphaScheduler(_DistillationScheduler):
    """Schedules `alpha`, the weight of the student's label loss, during `fit`; logs `alpha`.

    Args:
        schedule: a list of `(epoch, alpha)` pairs starting at epoch 0, or a callable of the
            optimizer step (e.g. `keras.optimizers.schedules.PolynomialDecay`), evaluated
            before every batch. Values must lie in [0, 1].
        distillation: the `Distillation`; default the one attached to the model being fit.
        verbose: 1 prints the value at the start of each epoch.

    Example:

    >>> ramp = AlphaScheduler(keras.optimizers.schedules.PolynomialDecay(0.9, 1000, 0.1))
    >>> round(ramp.value_at(epoch=0, step=500), 3)
    0.5
    """

    attribute = "alpha"

    @classmethod
    def check_value(cls, value):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
            raise ValueError(f"`schedule` must give alphas in [0, 1]. Received: {value!r}")
        return float(value)
