"""One factory that turns an attention spec ("se", a class, a layer, None) into a layer.

Builders take `attention="se"` (or a class, a configured layer, a callable) and resolve it here,
the way timm's `create_attn` maps `attn_layer` names to modules.
"""

from __future__ import annotations

import keras

from keras_cnn_ext.layers.cbam import CBAM, ChannelAttention, SpatialAttention
from keras_cnn_ext.layers.efficient_channel_attention import EfficientChannelAttention
from keras_cnn_ext.layers.squeeze_excitation import SqueezeExcitation
from keras_cnn_ext.utils import check_int

ATTENTION_LAYERS = {
    "se": SqueezeExcitation,
    "eca": EfficientChannelAttention,
    "cbam": CBAM,
    "channel": ChannelAttention,
    "spatial": SpatialAttention,
}
_NONE_NAMES = ("none", "")


def is_attention_name(attention):
    """Whether `attention` is one of the names `create_attention` maps itself ("se", "none", ...).

    Those layers are this package's and take `data_format`; blocks pass theirs on to them.
    """
    return isinstance(attention, str) and attention.strip().lower() in (
        *ATTENTION_LAYERS,
        *_NONE_NAMES,
    )


def create_attention(attention, channels=None, **kwargs):
    """Returns a new attention layer for `attention`, or `None` for no attention.

    Args:
        attention: one of
            - `None`, `False`, `"none"` or `""`: no attention, returns `None`;
            - a name: `"se"` (`SqueezeExcitation`), `"eca"` (`EfficientChannelAttention`),
              `"cbam"` (`CBAM`), `"channel"` (`ChannelAttention`), `"spatial"`
              (`SpatialAttention`); case-insensitive; or the registered name of a serializable
              layer class (`"package>ClassName"`, as `keras.saving.get_registered_name` gives);
            - a `keras.layers.Layer` subclass: called as `attention(**kwargs)`;
            - a `keras.layers.Layer` instance: a template; a new layer with the same config
              (updated by `kwargs`) is returned, so blocks built from one template never share
              weights;
            - any other callable: called as `attention(**kwargs)`, with `channels=channels`
              added when `channels` is given; it must return a layer or `None`.
        channels: the channel count of the input, if the caller knows it. The layers of this
            package read it from the input at build time, so it is only checked (a positive
            integer) and passed on to user callables. Defaults to `None`.
        **kwargs: passed to the layer's constructor, e.g. `ratio=0.25` for `"se"`.

    Returns:
        A new, unbuilt `keras.layers.Layer`, or `None`.

    Raises:
        ValueError: for an unknown name or a bad `channels`.
        TypeError: for a spec of another type, or a callable that returns no layer.

    Example:

    >>> create_attention("se", ratio=0.25)
    <SqueezeExcitation name=..., built=False>
    >>> create_attention(None) is None
    True
    """
    check_int(channels, "channels", minimum=1, allow_none=True)
    if attention is None or attention is False:
        return None
    if isinstance(attention, str):
        name = attention.strip().lower()
        if name in _NONE_NAMES:
            return None
        if name in ATTENTION_LAYERS:
            return ATTENTION_LAYERS[name](**kwargs)
        # A class or callable stored in a config by its registered name ("keras_cnn_ext>CBAM").
        registered = keras.saving.get_registered_object(attention.strip())
        if registered is None or not callable(registered):
            accepted = ", ".join(repr(n) for n in (*ATTENTION_LAYERS, "none", None))
            raise ValueError(
                f"`attention` must be one of {accepted}, a keras.layers.Layer subclass or "
                f"instance, or a callable returning a layer. Received: {attention!r}"
            )
        attention = registered
    if isinstance(attention, type) and issubclass(attention, keras.layers.Layer):
        return attention(**kwargs)
    if isinstance(attention, keras.layers.Layer):
        config = attention.get_config()
        config.pop("name", None)  # a copy gets its own unique name
        config.update(kwargs)
        return type(attention).from_config(config)
    if callable(attention):
        if channels is not None:
            kwargs = {"channels": channels, **kwargs}
        layer = attention(**kwargs)
        if layer is not None and not isinstance(layer, keras.layers.Layer):
            raise TypeError(
                f"`attention` callable must return a keras.layers.Layer or None. "
                f"Received: {layer!r} of type {type(layer)}"
            )
        return layer
    raise TypeError(
        f"`attention` must be None, a name ({', '.join(ATTENTION_LAYERS)}), a keras.layers.Layer "
        f"subclass or instance, or a callable. Received: {attention!r} of type {type(attention)}"
    )
