"""Factories that turn a name (or a class) into a normalisation, activation or pooling layer.

Blocks and builders take `norm="batch"`, `activation="relu"`, `pooling="avg"` the way timm's
`create_attn`/`create_act`/`get_norm_layer` let every model swap its parts by name; these three
functions are the one place such names are resolved, so every block accepts the same names and
rejects unknown ones with the same message.
"""

from __future__ import annotations

import inspect

import keras

from keras_cnn_ext.utils import normalize_data_format

NORMALIZATIONS = ("batch", "sync_batch", "layer", "group", None)
ADAPTIVE_POOLINGS = ("adaptive_avg", "adaptive_max")  # pool to a fixed output size
POOLINGS = ("max", "avg", "fractional", *ADAPTIVE_POOLINGS)


def _accepts(cls, argument):
    try:
        parameters = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return False
    return argument in parameters or any(
        p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )


def _layer_class(value):
    return isinstance(value, type) and issubclass(value, keras.layers.Layer)


def _registered_class(value):
    """A Keras layer class registered under `value` (e.g. `"keras_cnn_ext>MyNorm"`), or None."""
    obj = keras.saving.get_registered_object(value)
    if obj is None and hasattr(keras.layers, value):
        obj = getattr(keras.layers, value)
    return obj if _layer_class(obj) else None


def layer_spec_name(value):
    """The serializable form of a `norm`/`activation` argument: a string, `None`, or a callable.

    A Keras layer class becomes its registered name (`"BatchNormalization"`,
    `"keras_cnn_ext>MyNorm"`), which the factories resolve back, so blocks can put it in
    `get_config`.
    """
    if _layer_class(value):
        return keras.saving.get_registered_name(value)
    return value


def create_norm(
    norm="batch",
    *,
    axis=-1,
    epsilon=1e-3,
    momentum=0.99,
    groups=32,
    name=None,
    dtype=None,
    **kwargs,
):
    """Returns a normalisation layer over the channel axis, chosen by name.

    Args:
        norm: `"batch"` (`BatchNormalization`), `"sync_batch"` (`BatchNormalization` with
            `synchronized=True`: statistics reduced over replicas), `"layer"`
            (`LayerNormalization` over the channel axis only), `"group"` (`GroupNormalization`
            with `groups`), `None` (an `Identity` layer), or a Keras layer class (or its
            registered name) called with `axis`, `epsilon`, `momentum` where it accepts them.
            Default `"batch"`.
        axis: the channel axis. Default -1.
        epsilon: the variance epsilon. Default 1e-3 (Keras' default).
        momentum: the moving-average momentum of batch normalisation. Default 0.99.
        groups: the number of groups of `"group"`. Default 32.
        name: the layer's name.
        dtype: the layer's dtype policy.
        **kwargs: passed on to the layer.

    Raises:
        ValueError: if `norm` is not one of the accepted names.
    """
    common = dict(name=name, dtype=dtype, **kwargs)
    if norm is None:
        return keras.layers.Identity(**common)
    if norm == "batch" or norm == "sync_batch":
        return keras.layers.BatchNormalization(
            axis=axis,
            epsilon=epsilon,
            momentum=momentum,
            synchronized=norm == "sync_batch",
            **common,
        )
    if norm == "layer":
        return keras.layers.LayerNormalization(axis=axis, epsilon=epsilon, **common)
    if norm == "group":
        return keras.layers.GroupNormalization(groups=groups, axis=axis, epsilon=epsilon, **common)
    cls = norm if _layer_class(norm) else _registered_class(norm) if isinstance(norm, str) else None
    if cls is None:
        raise ValueError(
            f"`norm` must be one of {NORMALIZATIONS} or a Keras layer class. Received: norm={norm!r}"
        )
    for argument, value in (("axis", axis), ("epsilon", epsilon), ("momentum", momentum)):
        if _accepts(cls, argument):
            common.setdefault(argument, value)
    return cls(**common)


def create_activation(activation="relu", *, name=None, dtype=None):
    """Returns an activation layer, chosen by name, callable or layer class.

    Args:
        activation: any `keras.activations` name (`"relu"`, `"relu6"`, `"hard_swish"`,
            `"gelu"`, `"silu"`, ...), `None` (an `Identity` layer), a callable applied
            elementwise (wrapped in `keras.layers.Activation`), or a Keras layer class such as
            `keras.layers.PReLU` (or its registered name). Default `"relu"`.
        name: the layer's name.
        dtype: the layer's dtype policy.

    Raises:
        ValueError: if `activation` is an unknown name or not usable.
    """
    if activation is None:
        return keras.layers.Identity(name=name, dtype=dtype)
    if isinstance(activation, str):
        try:
            fn = keras.activations.get(activation)
        except (ValueError, TypeError):
            cls = _registered_class(activation)
            if cls is not None:
                return cls(name=name, dtype=dtype)
            from keras.src.activations import ALL_OBJECTS_DICT

            raise ValueError(
                f"`activation` must be a Keras activation name (one of {sorted(ALL_OBJECTS_DICT)}),"
                f" None, a callable or a Keras layer class. Received: activation={activation!r}"
            ) from None
        return keras.layers.Activation(fn, name=name, dtype=dtype)
    if _layer_class(activation):
        return activation(name=name, dtype=dtype)
    if callable(activation) and not isinstance(activation, keras.layers.Layer):
        return keras.layers.Activation(activation, name=name, dtype=dtype)
    raise ValueError(
        "`activation` must be a Keras activation name, None, a callable or a Keras layer class "
        f"(not a layer instance, which blocks cannot share). Received: activation={activation!r}"
    )


def create_pooling(
    pooling,
    *,
    pool_size=None,
    strides=None,
    padding="valid",
    output_size=1,
    data_format=None,
    name=None,
    dtype=None,
    **kwargs,
):
    """Returns a pooling layer for a stem, a stage or a head, chosen by name.

    Args:
        pooling: one of
            - `"max"`/`"avg"`: `MaxPooling2D`/`AveragePooling2D(pool_size, strides, padding)`,
              or `GlobalMaxPooling2D`/`GlobalAveragePooling2D` when `pool_size` is None
              (`keepdims` may be passed in `kwargs`);
            - `"adaptive_avg"`/`"adaptive_max"`: `AdaptiveAveragePooling2D`/
              `AdaptiveMaxPooling2D(output_size)` (PyTorch's bins);
            - `"fractional"`: `FractionalMaxPooling2D` (Graham 2014); `kwargs` such as
              `pooling_ratio`, `overlapping`, `seed` are passed on.
        pool_size: the window of `"max"`/`"avg"`; None for global pooling. Default None.
        strides: the stride of `"max"`/`"avg"`; default `pool_size`.
        padding: `"valid"` or `"same"` for `"max"`/`"avg"`. Default `"valid"`.
        output_size: the output size of the adaptive poolings. Default 1.
        data_format: `"channels_last"` or `"channels_first"`; default Keras' global setting.
        name: the layer's name.
        dtype: the layer's dtype policy.
        **kwargs: passed on to the layer.

    Raises:
        ValueError: if `pooling` is not one of the accepted names.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"`pooling` must be one of {POOLINGS}. Received: pooling={pooling!r}")
    data_format = normalize_data_format(data_format)
    common = dict(data_format=data_format, name=name, dtype=dtype, **kwargs)
    if pooling in ("max", "avg"):
        if pool_size is None:
            cls = (
                keras.layers.GlobalMaxPooling2D
                if pooling == "max"
                else (keras.layers.GlobalAveragePooling2D)
            )
            return cls(**common)
        cls = keras.layers.MaxPooling2D if pooling == "max" else keras.layers.AveragePooling2D
        return cls(pool_size=pool_size, strides=strides, padding=padding, **common)
    # Imported here: the pooling layers live in sibling modules that import this package.
    from keras_cnn_ext import layers as ext_layers

    if pooling == "fractional":
        return ext_layers.FractionalMaxPooling2D(**common)
    cls = (
        ext_layers.AdaptiveAveragePooling2D
        if pooling == "adaptive_avg"
        else ext_layers.AdaptiveMaxPooling2D
    )
    return cls(output_size, **common)
