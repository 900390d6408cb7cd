"""Rematerialization (gradient checkpointing) at block granularity, on Keras' `keras.remat`.

`rematerialize(model)` makes each block of a built model (by default every layer that holds
sublayers: `ResidualBlock`, `DenseBlock`, `SeparableConvBlock`, attention blocks, nested
models) keep only its input for the backward pass; its inner activations are recomputed from
that input when the gradient is taken (Chen et al. 2016, "Training deep nets with sublinear
memory cost"). The builders' `remat=True` applies it to the model they return.

Why not `keras.RematScope` as it stands (Keras 3.15, TensorFlow backend):

- its layer hook calls `keras.remat(layer.call)(inputs, training=...)`, and TensorFlow's
  `custom_gradient` rejects keyword arguments outside eager mode ("The custom_gradient decorator
  currently supports keywords arguments only when eager execution is enabled"), so a block
  called with `training` inside `fit`'s `tf.function` fails;
- the recomputation re-runs the block's state updates: a SeedGenerator advances again (the
  recomputed dropout / drop-path masks differ from the forward ones, so the gradients are
  wrong) and BatchNormalization applies its moving-average update twice.

Here the block's call is wrapped in `keras.remat` (`tf.recompute_grad`) with `training` bound
in a closure, and the recomputation first restores the block's non-trainable state (seed
states, moving statistics) to its value before the forward pass, then puts back the value the
forward pass left. Gradients, weights and statistics equal those without remat.
"""

from __future__ import annotations

import functools

import keras
import tensorflow as tf

_MARK = "_keras_cnn_ext_remat"


def _is_block(layer):
    return bool(getattr(layer, "_layers", None)) and not isinstance(layer, keras.layers.InputLayer)


def _remat_call(layer, call):
    @functools.wraps(call)
    def wrapped(inputs, *args, training=None, **kwargs):
        if args or kwargs or not training or not isinstance(inputs, tf.Tensor):
            return call(inputs, *args, training=training, **kwargs)
        state = [v for v in layer.variables if not v.trainable]
        # Non-trainable state before the forward pass: the recomputation starts from it.
        before = [tf.identity(v.value) for v in state]
        calls = []

        def forward(x):
            if not calls:  # the forward pass
                calls.append(True)
                return call(x, training=training)
            # The recomputation in the backward pass: same seeds, statistics updated once.
            after = [tf.identity(v.value) for v in state]
            with tf.control_dependencies(after):
                restore = [v.assign(b) for v, b in zip(state, before, strict=True)]
            with tf.control_dependencies([r.op if hasattr(r, "op") else r for r in restore]):
                x = tf.identity(x)
            outputs = call(x, training=training)
            with tf.control_dependencies(tf.nest.flatten(outputs)):
                for v, a in zip(state, after, strict=True):
                    v.assign(a)
            return outputs

        return keras.remat(forward)(inputs)

    wrapped.__wrapped__ = call
    return wrapped


def rematerialize(model, layers=None):
    """Turns on block-level rematerialization in `model` (in place) and returns `model`.

    Args:
        model: a built Keras model (functional or Sequential).
        layers: which layers to rematerialize: `None` (every block: a layer holding sublayers,
            e.g. `ResidualBlock`, `DenseBlock`, a nested model), a list of layer names, or a
            predicate `fn(layer) -> bool`.

    Returns:
        `model`, whose selected layers recompute their activations in the backward pass.
        Inference and the saved model are unchanged; `unrematerialize` undoes it.

    Example:

    >>> from keras_cnn_ext.models import ResNet20
    >>> model = rematerialize(ResNet20(input_shape=(16, 16, 3), classes=2))
    >>> len(rematerialized_layers(model))
    9
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: {model!r} of type {type(model)}")
    if layers is None:
        select = _is_block
    elif callable(layers):
        select = layers
    else:
        names = set(layers)
        unknown = names - {layer.name for layer in model.layers}
        if unknown:
            raise ValueError(
                f"`layers` names layers that are not in the model: {sorted(unknown)}. "
                f"Known blocks: {[layer.name for layer in model.layers if _is_block(layer)]}"
            )

        def select(layer):
            return layer.name in names

    for layer in model.layers:
        if select(layer) and not getattr(layer, _MARK, False):
            object.__setattr__(layer, "call", _remat_call(layer, layer.call))
            object.__setattr__(layer, _MARK, True)
    # Traced train functions would keep the old calls.
    model.train_function = model.test_function = model.predict_function = None
    return model


def unrematerialize(model):
    """Undoes `rematerialize` on `model` (in place) and returns it."""
    for layer in model.layers:
        if getattr(layer, _MARK, False):
            object.__delattr__(layer, "call")  # back to the class's method
            object.__setattr__(layer, _MARK, False)
    model.train_function = model.test_function = model.predict_function = None
    return model


def rematerialized_layers(model):
    """The names of `model`'s layers that `rematerialize` turned on."""
    return [layer.name for layer in model.layers if getattr(layer, _MARK, False)]
