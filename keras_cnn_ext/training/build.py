"""Building a compiled model's state before `fit`, so the first epoch traces its step once.

Keras 3's TensorFlow trainer builds the model, the compiled metrics and loss, and the
optimizer's slot variables ahead of `fit` only under a distribution strategy
(`TensorFlowTrainer._maybe_symbolic_build` returns at once without one, "to maximize backwards
compatibility"). Otherwise they are created inside the first trace of the train function, and a
`tf.function` that creates variables on its first call traces it a second time
(tensorflow/tensorflow#48851). The first epoch of every `fit` then pays for two traces: for a
ResNet-20 with Adam and an accuracy metric on 2 CPU cores, 16-20 s against 7 s once built.
`build_for_fit` runs the same symbolic build that Keras runs under a strategy, now.
"""

from __future__ import annotations

import keras


def _spec(value, name):
    """A `KerasTensor` with the batch axis unknown, from an array, tensor, TensorSpec or None."""
    if value is None:
        return None
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is None or dtype is None:
        import numpy as np

        try:
            value = np.asarray(value)
        except Exception as error:  # noqa: BLE001 - re-raised with the argument's name
            raise TypeError(f"`{name}` must be array-like: {error}") from error
        if value.dtype == object:
            raise TypeError(
                f"`{name}` must be array-like (numbers or tensors). Received an object array"
            )
        shape, dtype = value.shape, value.dtype
    shape = tuple(shape)
    if not shape:
        raise ValueError(f"`{name}` must have a batch axis. Received a scalar of {dtype}")
    return keras.KerasTensor((None, *shape[1:]), keras.backend.standardize_dtype(dtype))


def _structure_spec(value, name):
    return keras.tree.map_structure(lambda v: _spec(v, name), value)


def _batch_from(x, y, sample_weight):
    import tensorflow as tf

    if isinstance(x, tf.data.Dataset):
        if y is not None or sample_weight is not None:
            raise ValueError(
                "`y` and `sample_weight` must be None when `x` is a tf.data.Dataset "
                "(it yields (inputs, targets[, sample weights]))."
            )
        element = x.element_spec
        if not isinstance(element, tuple):
            element = (element,)
        if not 1 <= len(element) <= 3:
            raise ValueError(
                "`x` must yield inputs, (inputs, targets) or (inputs, targets, sample weights). "
                f"Received an element of {len(element)} parts"
            )
        element = element + (None,) * (3 - len(element))
        return tuple(_structure_spec(part, "x") for part in element)
    return (
        _structure_spec(x, "x"),
        _structure_spec(y, "y"),
        _structure_spec(sample_weight, "sample_weight"),
    )


def build_for_fit(model, x, y=None, sample_weight=None):
    """Creates a compiled model's variables now, so that `fit` traces its train step once.

    Builds what the first `fit` would otherwise create inside its first trace: the model's
    layers, the compiled loss and metrics (their totals and counts) and the optimizer's slot
    variables (Adam's moments, a `LossScaleOptimizer`'s scale, gradient accumulators). Keras
    does the same itself under a distribution strategy; without one it defers it, and
    TensorFlow traces the step twice. Training is unchanged: the same variables with the same
    initial values exist before the first step either way, nothing consumes random numbers.

    Call it after `compile` and before `fit`. Only the shapes and dtypes of `x` (and `y`) are
    read, not their values; a tf.data dataset is read through its `element_spec`.

    Args:
        model: a compiled `keras.Model`.
        x: the inputs `fit` will get (an array, a tensor, a structure of them), or a
            `tf.data.Dataset` of `(inputs, targets[, sample weights])`.
        y: the targets, unless `x` is a dataset.
        sample_weight: the sample weights, if `fit` gets some.

    Returns:
        The model.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> model.compile(keras.optimizers.Adam(), "mse", metrics=["mae"])
    >>> len(model.optimizer.variables)
    2
    >>> _ = build_for_fit(model, np.zeros((8, 4)), np.zeros((8, 2)))
    >>> len(model.optimizer.variables)  # iterations, learning rate, two moments per weight
    6
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: {type(model).__name__}")
    if not getattr(model, "compiled", False) or model.optimizer is None:
        raise ValueError("`model` must be compiled with an optimizer before `build_for_fit`.")
    batch = _batch_from(x, y, sample_weight)
    with model.distribute_strategy.scope():
        model._symbolic_build(data_batch=batch)
    return model
