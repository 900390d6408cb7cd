"""The end of every classifier builder: the classifier (`include_top=True`) or feature pooling.

`pooling` (features, `include_top=False`) is keras.applications': `None`, `"avg"`, `"max"`.
`head_pooling` (the classifier's pooling) takes any name of the pooling factory
(`keras_cnn_ext.layers.factories.POOLINGS`) for global-pooling heads, and `None` or an adaptive
pooling for flattening heads (VGG, AlexNet, LeNet: torchvision's `AdaptiveAvgPool2d((7, 7))`).
"""

from __future__ import annotations

import keras

from keras_cnn_ext.layers.factories import ADAPTIVE_POOLINGS, POOLINGS, create_pooling
from keras_cnn_ext.models.parts import act_name, apply, make_activation
from keras_cnn_ext.utils import normalize_data_format

# keras.applications' `pooling` of the features.
FEATURE_POOLINGS = (None, "avg", "max")
# A global-pooling classifier's `head_pooling`: every name the pooling factory resolves.
HEAD_POOLINGS = POOLINGS
# A flattening classifier's `head_pooling`: flatten as is, or pool adaptively to a fixed size.
FLATTEN_HEAD_POOLINGS = (None, *ADAPTIVE_POOLINGS)
_GLOBAL_POOLS = {"avg": keras.layers.GlobalAveragePooling2D, "max": keras.layers.GlobalMaxPooling2D}


def head_pooling_layer(x, head_pooling, *, include_top, data_format=None):
    """Applies the non-global part of a classifier's pooling; returns `(x, top_pooling)`.

    `"avg"`/`"max"` are `classifier_head`'s global poolings and leave `x` as is;
    `"adaptive_avg"`/`"adaptive_max"` pool to 1x1 first (PyTorch's `AdaptiveAvgPool2d(1)` head);
    `"fractional"` applies fractional max pooling by 2 (Graham 2014) before the global average.
    Nothing is applied when `include_top` is false (`pooling` governs the features then).

    Raises:
        ValueError: if `head_pooling` is not one of `HEAD_POOLINGS`.
    """
    if head_pooling not in HEAD_POOLINGS:
        raise ValueError(
            f"`head_pooling` must be one of {HEAD_POOLINGS}. Received: head_pooling={head_pooling!r}"
        )
    if head_pooling in _GLOBAL_POOLS:
        return x, head_pooling
    if not include_top:
        return x, "avg"
    options = {"pooling_ratio": 2.0} if head_pooling == "fractional" else {"output_size": 1}
    layer = create_pooling(head_pooling, data_format=data_format, name="head_pool", **options)
    return layer(x), "avg"


def classifier_head(
    x,
    *,
    include_top,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    dropout=0.0,
    hidden_units=(),
    hidden_activation="relu",
    flatten=False,
    top_pooling="avg",
    head_pooling=None,
    head_size=None,
    data_format=None,
    prefix="",
):
    """The classifier (`include_top=True`) or the optional feature pooling.

    With `include_top=True`: `Flatten` (when `flatten`) or global `top_pooling`, then for each
    entry of `hidden_units` a `Dense` with `hidden_activation` followed by `Dropout(dropout)`
    (when non-zero; also one before the classifier when there are no hidden layers), then the
    `Dense(classes)` layer named `"predictions"` with `classifier_activation` (computed in
    float32 under mixed precision). With `include_top=False`: `pooling` `None` (the 4D
    features), `"avg"` or `"max"`.

    Args:
        x: the last feature map.
        include_top, pooling, classes, classifier_activation: as in `keras.applications`.
        dropout: the dropout rate after each hidden `Dense` layer. Default 0.
        hidden_units: the widths of hidden `Dense` layers (e.g. `(4096, 4096)` for VGG).
        hidden_activation: their activation; a name or a callable. Default `"relu"`.
        flatten: flatten the feature map instead of pooling it (VGG, AlexNet, LeNet).
        top_pooling: the global pooling used by the classifier when not `flatten`.
        head_pooling: with `flatten`, one of `FLATTEN_HEAD_POOLINGS`: an adaptive pooling to
            `head_size` before flattening (`"adaptive_avg"` as torchvision's AlexNet/VGG), so
            the classifier fits any input size, or `None` to flatten the feature map as it is.
            Without `flatten`, one of `HEAD_POOLINGS` (`head_pooling_layer`), which then
            decides the global pooling instead of `top_pooling`.
        head_size: the `(height, width)` of `head_pooling`'s output.
        data_format: the feature map's layout; default Keras' global setting.
        prefix: a prefix for the layer names.

    Example:

    >>> features = keras.Input((4, 4, 8))
    >>> classifier_head(features, include_top=True, classes=3).shape
    (None, 3)
    >>> classifier_head(features, include_top=False, pooling="max").shape
    (None, 8)
    """
    data_format = normalize_data_format(data_format)
    if not flatten and head_pooling is not None:
        x, top_pooling = head_pooling_layer(
            x, head_pooling, include_top=include_top, data_format=data_format
        )
    if not include_top:
        if pooling is None:
            return x
        pool = _GLOBAL_POOLS[pooling](data_format=data_format, name=f"{prefix}{pooling}_pool")
        return pool(x)
    if flatten and head_pooling is not None:
        x = create_pooling(
            head_pooling, output_size=head_size, data_format=data_format, name=f"{prefix}head_pool"
        )(x)
    if flatten:
        x = keras.layers.Flatten(data_format=data_format, name=f"{prefix}flatten")(x)
    else:
        pool = _GLOBAL_POOLS[top_pooling]
        x = pool(data_format=data_format, name=f"{prefix}{top_pooling}_pool")(x)
    # Dropout after each hidden layer and before the classifier, as in AlexNet's and VGG's papers
    # ("dropout in the first two fully-connected layers") and keras.applications.MobileNet.
    for i, units in enumerate(hidden_units, start=1):
        x = keras.layers.Dense(units, name=f"{prefix}fc{i}")(x)
        activation = make_activation(
            hidden_activation, f"{prefix}fc{i}_{act_name(hidden_activation)}"
        )
        x = apply(activation, x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"{prefix}drop{i}")(x)
    if dropout and not hidden_units:
        x = keras.layers.Dropout(dropout, name=f"{prefix}dropout")(x)
    # The logits and softmax in float32: float16 softmax/cross-entropy under- and overflows.
    return keras.layers.Dense(
        classes, activation=classifier_activation, dtype="float32", name=f"{prefix}predictions"
    )(x)
