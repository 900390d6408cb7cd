"""Plumbing shared by every architecture builder.

The builders keep `keras.applications`' signature (`include_top`, `weights`, `input_tensor`,
`input_shape`, `pooling`, `classes`, `classifier_activation`, `name`) so that users can swap them
in. This module holds the parts of that signature every builder handles the same way:

- `validate_builder_args`: the argument checks `keras.applications` does, with clearer errors.
- `make_inputs`: the input tensor from `input_tensor`/`input_shape`/a default shape, validated
  against the network's downsampling (`check_min_size`, `Downsample`).
- `classifier_head`: the classifier (`include_top=True`) or the feature pooling (`pooling`).
- `finalize_model`: the `keras.Model` over the source inputs of `input_tensor`, with `weights`
  loaded from a file.
- `copy_weights`: copies the weights of a model with the same architecture (for example a
  `keras.applications` model) into a builder's model, matched by order and shape.

Typical use inside a builder::

    validate_builder_args(include_top=include_top, weights=weights, pooling=pooling,
                          classes=classes)
    inputs = make_inputs(input_tensor, input_shape, default_shape=(224, 224, 3),
                         stages=STAGES, require_static=include_top)
    x = ...  # the body
    outputs = classifier_head(x, include_top=include_top, pooling=pooling, classes=classes,
                              classifier_activation=classifier_activation)
    return finalize_model(inputs, outputs, name=name, weights=weights)
"""

from __future__ import annotations

import collections
import numbers
import os

import keras
import numpy as np

from keras_cnn_ext.layers.factories import create_activation, create_norm, create_pooling
from keras_cnn_ext.layers.grouped_conv2d import GroupedConv2D
from keras_cnn_ext.layers.local_response_normalization import LocalResponseNormalization
from keras_cnn_ext.utils import check_rate, make_divisible, normalize_data_format

POOLINGS = (None, "avg", "max")
FLATTEN_HEAD_POOLINGS = (None, "adaptive_avg", "adaptive_max")
WEIGHTS_SUFFIXES = (".weights.h5", ".keras")


class Downsample(collections.namedtuple("Downsample", ["name", "kernel", "stride", "padding"])):
    """One spatial reduction of a network, for input-size checks.

    Args:
        name: the stage's name, shown in error messages (e.g. `"block3_pool"`).
        kernel: the window size (int, the same on both spatial axes).
        stride: the stride (int).
        padding: `"valid"`, `"same"`, or an int: the total zero padding added along an axis
            before a `"valid"` window (e.g. `2` for `ZeroPadding2D(1)`). Default `"valid"`.
    """

    __slots__ = ()

    def __new__(cls, name, kernel, stride, padding="valid"):
        return super().__new__(cls, name, int(kernel), int(stride), padding)

    def output_size(self, size):
        """The output length along one axis for an input of length `size`."""
        if self.padding == "same":
            return -(-size // self.stride)
        pad = 0 if self.padding == "valid" else int(self.padding)
        return (size + pad - self.kernel) // self.stride + 1

    def min_input_size(self, out_size):
        """The smallest input length that gives an output of at least `out_size`."""
        if self.padding == "same":
            return max(1, (out_size - 1) * self.stride + 1)
        pad = 0 if self.padding == "valid" else int(self.padding)
        return max(1, (out_size - 1) * self.stride + self.kernel - pad)


def min_input_size(stages):
    """The smallest spatial size for which every stage in `stages` keeps an output >= 1."""
    size = 1
    for stage in reversed(tuple(stages)):
        size = stage.min_input_size(size)
    return size


def _spatial_dims(input_shape, data_format):
    return tuple(input_shape[1:3]) if data_format == "channels_first" else tuple(input_shape[0:2])


def check_min_size(input_shape, stages, data_format=None):
    """Raises a ValueError if `input_shape` is too small for the network's downsampling.

    Args:
        input_shape: the shape without the batch axis, e.g. `(32, 32, 3)`; unknown (`None`)
            spatial sizes are not checked.
        stages: the network's spatial reductions, a sequence of `Downsample`, in order.
        data_format: `"channels_last"` or `"channels_first"`; default Keras' global setting.

    Raises:
        ValueError: naming the first stage whose output would be empty and the minimum size.
    """
    data_format = normalize_data_format(data_format)
    stages = tuple(stages)
    minimum = min_input_size(stages)
    for axis, size in zip(
        ("height", "width"), _spatial_dims(input_shape, data_format), strict=True
    ):
        if size is None:
            continue
        current = size
        for stage in stages:
            out = stage.output_size(current)
            if out < 1:
                raise ValueError(
                    f"`input_shape` is too small for this network: the {axis} is {current} "
                    f"when it reaches stage `{stage.name}` (kernel {stage.kernel}, stride "
                    f"{stage.stride}, padding {stage.padding!r}), which would leave no output. "
                    f"The minimum input size is {minimum}x{minimum}. "
                    f"Received: input_shape={tuple(input_shape)}"
                )
            current = out
    return minimum


def validate_builder_args(
    *, include_top, weights=None, pooling=None, classes=1000, dropout=None, **choices
):
    """Checks the `keras.applications` arguments every builder shares.

    Args:
        include_top: whether the classifier is built.
        weights: `None` (random initialisation) or the path of a readable `.weights.h5` or
            `.keras` file, loaded after the model is built.
        pooling: `None`, `"avg"` or `"max"` (used when `include_top=False`).
        classes: the number of classes; a positive int when `include_top=True`.
        dropout: optional dropout rate in [0, 1).
        **choices: `name=(value, accepted_values)` pairs for a builder's own enumerated
            arguments (e.g. `variant=("classic", ("classic", "modern"))`).

    Raises:
        ValueError: on any invalid value, naming the argument, what is accepted and what was
            received.
    """
    if weights is not None:
        if not isinstance(weights, (str, os.PathLike)):
            raise ValueError(
                "`weights` must be None (random initialisation) or the path of a readable "
                f"weights file ({' or '.join(WEIGHTS_SUFFIXES)}). Received: weights={weights!r}"
            )
        path = os.fspath(weights)
        if path == "imagenet":
            raise ValueError(
                "`weights='imagenet'` is not available for keras_cnn_ext builders: build the "
                "matching `keras.applications` model with ImageNet weights and copy them with "
                "`keras_cnn_ext.models.load_keras_applications_weights` (by layer name: ResNet, "
                "DenseNet) or `keras_cnn_ext.models.common.copy_weights` (by order), or pass "
                f"the path of a weights file. Received: weights={weights!r}"
            )
        if not (os.path.isfile(path) and os.access(path, os.R_OK)):
            raise ValueError(
                "`weights` must be None (random initialisation) or the path of a readable "
                f"weights file; no readable file exists there. Received: weights={weights!r}"
            )
        if not path.endswith(WEIGHTS_SUFFIXES):
            raise ValueError(
                f"`weights` must be a file ending in {' or '.join(WEIGHTS_SUFFIXES)} (what "
                f"`model.load_weights` reads). Received: weights={weights!r}"
            )
    if pooling not in POOLINGS:
        raise ValueError(f"`pooling` must be one of {POOLINGS}. Received: pooling={pooling!r}")
    if include_top and (
        isinstance(classes, bool) or not isinstance(classes, numbers.Integral) or classes <= 0
    ):
        raise ValueError(
            "`classes` must be a positive integer when `include_top=True`. "
            f"Received: classes={classes!r}"
        )
    if dropout is not None:
        check_rate(dropout, "dropout")
    for arg, (value, accepted) in choices.items():
        if value not in tuple(accepted):
            raise ValueError(f"`{arg}` must be one of {tuple(accepted)}. Received: {arg}={value!r}")


def make_inputs(
    input_tensor=None,
    input_shape=None,
    default_shape=(224, 224, 3),
    stages=(),
    require_static=False,
    data_format=None,
):
    """Returns the model's input Keras tensor, validated like `keras.applications` does.

    Args:
        input_tensor: optional Keras tensor (e.g. `keras.Input(...)` or another model's output)
            to build the model on.
        input_shape: optional shape without the batch axis, e.g. `(32, 32, 3)`. Default: the
            shape of `input_tensor` if given, else `default_shape` when `require_static`, else
            `default_shape` with unknown spatial sizes.
        default_shape: the network's usual input shape (channels last or first according to
            `data_format`).
        stages: the network's spatial reductions (`Downsample`), checked by `check_min_size`.
        require_static: whether the spatial size must be known (a `Flatten` classifier).
        data_format: `"channels_last"` or `"channels_first"`; default Keras' global setting.

    Raises:
        ValueError: if `input_tensor` is not a Keras tensor, `input_shape` is not three
            dimensions or disagrees with `input_tensor`, or the input is too small.
    """
    data_format = normalize_data_format(data_format)
    if input_tensor is not None and not keras.backend.is_keras_tensor(input_tensor):
        raise ValueError(
            "`input_tensor` must be a Keras tensor (e.g. the output of `keras.Input`). "
            f"Received: input_tensor of type {type(input_tensor)}"
        )
    if input_tensor is not None:
        tensor_shape = tuple(input_tensor.shape[1:])
        if input_shape is not None and tuple(input_shape) != tensor_shape:
            raise ValueError(
                "`input_shape` must match the shape of `input_tensor` (without the batch axis). "
                f"Received: input_shape={tuple(input_shape)}, input_tensor.shape="
                f"{tuple(input_tensor.shape)}"
            )
        input_shape = tensor_shape
    if input_shape is None:
        input_shape = tuple(default_shape)
        if not require_static:
            channels_axis = 0 if data_format == "channels_first" else 2
            input_shape = tuple(
                d if i == channels_axis else None for i, d in enumerate(input_shape)
            )
    try:
        input_shape = tuple(input_shape)
    except TypeError:
        raise ValueError(
            f"`input_shape` must be a tuple of three integers. Received: {input_shape!r}"
        ) from None
    if len(input_shape) != 3 or not all(
        d is None or (isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0)
        for d in input_shape
    ):
        raise ValueError(
            "`input_shape` must be a tuple of three positive integers (height, width, channels "
            f"or channels, height, width). Received: input_shape={input_shape}"
        )
    channels = input_shape[0] if data_format == "channels_first" else input_shape[-1]
    if channels is None:
        raise ValueError(
            f"The channel axis of `input_shape` must be known. Received: input_shape={input_shape}"
        )
    if require_static and None in _spatial_dims(input_shape, data_format):
        raise ValueError(
            "With `include_top=True` the classifier needs a static `input_shape`; give "
            f"height and width. Received: input_shape={input_shape}"
        )
    check_min_size(input_shape, stages, data_format)
    if input_tensor is not None:
        return input_tensor
    return keras.Input(shape=input_shape)


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
    `Dense(classes)` layer named
    `"predictions"` with `classifier_activation` (computed in float32 under mixed precision).
    With `include_top=False`: `pooling` `None` (the 4D features), `"avg"` or `"max"`.

    Args:
        x: the last feature map.
        include_top, pooling, classes, classifier_activation: as in `keras.applications`.
        dropout: the dropout rate after each hidden `Dense` layer. Default 0.
        hidden_units: the widths of hidden `Dense` layers (e.g. `(4096, 4096)` for VGG).
        hidden_activation: their activation; a name or a callable. Default `"relu"`.
        flatten: flatten the feature map instead of pooling it (VGG, AlexNet, LeNet).
        top_pooling: the global pooling used by the classifier when not `flatten`.
        head_pooling: with `flatten`, an adaptive pooling to `head_size` before flattening
            (`"adaptive_avg"` as torchvision's AlexNet/VGG, or `"adaptive_max"`), so the
            classifier fits any input size; `None` flattens the feature map as it is. Without
            `flatten`, one of `HEAD_POOLINGS` (`head_pooling_layer`), which then decides the
            global pooling instead of `top_pooling`.
        head_size: the `(height, width)` of `head_pooling`'s output.
        data_format: the feature map's layout; default Keras' global setting.
        prefix: a prefix for the layer names.
    """
    data_format = normalize_data_format(data_format)
    if not flatten and head_pooling is not None:
        x, top_pooling = head_pooling_layer(
            x, head_pooling, include_top=include_top, data_format=data_format
        )
    global_pools = {
        "avg": keras.layers.GlobalAveragePooling2D,
        "max": keras.layers.GlobalMaxPooling2D,
    }
    if not include_top:
        if pooling is None:
            return x
        return global_pools[pooling](data_format=data_format, name=f"{prefix}{pooling}_pool")(x)
    if flatten and head_pooling is not None:
        x = create_pooling(
            head_pooling, output_size=head_size, data_format=data_format, name=f"{prefix}head_pool"
        )(x)
    if flatten:
        x = keras.layers.Flatten(data_format=data_format, name=f"{prefix}flatten")(x)
    else:
        x = global_pools[top_pooling](data_format=data_format, name=f"{prefix}{top_pooling}_pool")(
            x
        )
    # Dropout after each hidden layer and before the classifier, as in AlexNet's and VGG's papers
    # ("dropout in the first two fully-connected layers") and keras.applications.MobileNet.
    for i, units in enumerate(hidden_units, start=1):
        x = keras.layers.Dense(units, name=f"{prefix}fc{i}")(x)
        x = apply(
            make_activation(hidden_activation, f"{prefix}fc{i}_{_act_name(hidden_activation)}"), x
        )
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"{prefix}drop{i}")(x)
    if dropout and not hidden_units:
        x = keras.layers.Dropout(dropout, name=f"{prefix}dropout")(x)
    # The logits and softmax in float32: float16 softmax/cross-entropy under- and overflows.
    return keras.layers.Dense(
        classes, activation=classifier_activation, dtype="float32", name=f"{prefix}predictions"
    )(x)


def finalize_model(inputs, outputs, name, weights=None):
    """Builds the `keras.Model` and loads `weights`.

    `inputs` may be the tensor returned by `make_inputs`, including a user's `input_tensor` that
    is an intermediate tensor of another graph: like `keras.applications`, the model then starts
    at that tensor's source inputs (`keras.utils.get_source_inputs`).

    Raises:
        ValueError: if the weights file does not fit the model.
    """
    sources = keras.utils.get_source_inputs(inputs)
    model = keras.Model(sources[0] if len(sources) == 1 else sources, outputs, name=name)
    if weights is not None:
        try:
            model.load_weights(os.fspath(weights))
        except Exception as error:  # keras raises several types for a mismatching file
            raise ValueError(
                f"Could not load `weights` into model `{name}`: {error}. "
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

    Returns:
        `target`.

    Raises:
        ValueError: if the variable counts, or the counts of some shape, differ.
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


# --- Pluggable parts ------------------------------------------------------------------------
# Builders take normalisation, activation and pooling by name (or a layer class); the names are
# resolved once, package-wide, by `keras_cnn_ext.layers.factories`.

POOL_TYPES = ("max", "avg", "fractional")


def make_norm(norm, name, data_format=None, **kwargs):
    """A normalisation layer (`create_norm` names or a layer class), or None for `norm=None`."""
    if norm is None:
        return None
    axis = 1 if normalize_data_format(data_format) == "channels_first" else -1
    return create_norm(norm, axis=axis, name=name, **kwargs)


def make_activation(activation, name):
    """An activation layer (`create_activation` names, callables, layer classes), or None."""
    if activation is None:
        return None
    return create_activation(activation, name=name)


def make_pool(pool_type, pool_size, strides, padding="valid", data_format=None, name=None):
    """A downsampling pooling layer: `"max"`, `"avg"`, `"fractional"` (ratio `strides`) or a
    layer class taking Keras' pooling arguments."""
    data_format = normalize_data_format(data_format)
    if isinstance(pool_type, type) and issubclass(pool_type, keras.layers.Layer):
        return pool_type(
            pool_size=pool_size,
            strides=strides,
            padding=padding,
            data_format=data_format,
            name=name,
        )
    if pool_type not in POOL_TYPES:
        raise ValueError(
            f"`pool_type` must be one of {POOL_TYPES} or a pooling layer class. "
            f"Received: pool_type={pool_type!r}"
        )
    if pool_type == "fractional":
        return create_pooling(
            pool_type, pooling_ratio=float(strides), data_format=data_format, name=name
        )
    return create_pooling(
        pool_type,
        pool_size=pool_size,
        strides=strides,
        padding=padding,
        data_format=data_format,
        name=name,
    )


def apply(layer, x):
    """`layer(x)`, or `x` when the factory returned no layer."""
    return x if layer is None else layer(x)


# --- Plain convolution stacks (LeNet, AlexNet, VGG) ------------------------------------------


class Conv(collections.namedtuple("Conv", ["filters", "kernel", "strides", "padding", "groups"])):
    """A convolution entry of a layer table: `padding` is `"same"`, `"valid"` or an int (zero
    padding on each side, torchvision style, followed by a `"valid"` convolution)."""

    __slots__ = ()

    def __new__(cls, filters, kernel=3, strides=1, padding="same", groups=1):
        return super().__new__(cls, filters, kernel, strides, padding, groups)


class Pool(collections.namedtuple("Pool", ["size", "strides", "padding"])):
    """A pooling entry of a layer table."""

    __slots__ = ()

    def __new__(cls, size=2, strides=2, padding="valid"):
        return super().__new__(cls, size, strides, padding)


class LRN(collections.namedtuple("LRN", [])):
    """A local response normalisation entry of a layer table (AlexNet; no parameters)."""

    __slots__ = ()


def stack_stages(table):
    """The `Downsample` list of a layer table, for `make_inputs`/`check_min_size`."""
    stages, block, conv = [], 1, 0
    for entry in table:
        if isinstance(entry, LRN):
            continue
        if isinstance(entry, Pool):
            stages.append(
                Downsample(f"block{block}_pool", entry.size, entry.strides, entry.padding)
            )
            block, conv = block + 1, 0
        else:
            conv += 1
            padding = entry.padding if isinstance(entry.padding, str) else 2 * entry.padding
            stages.append(
                Downsample(f"block{block}_conv{conv}", entry.kernel, entry.strides, padding)
            )
    return stages


def conv_stack(
    x,
    table,
    *,
    activation="relu",
    norm=None,
    pool_type="max",
    width_multiplier=1.0,
    width_divisor=8,
    data_format=None,
):
    """Applies a plain layer table: each `Conv` is convolution -> `norm` -> `activation`, each
    `Pool` a `pool_type` pooling, each `LRN` a `LocalResponseNormalization` (paper defaults).

    Layers are named like keras.applications' VGG: `block{b}_conv{c}`, `block{b}_pool`.
    With `width_multiplier != 1`, filter counts become `make_divisible(filters * multiplier,
    width_divisor)` (grouped convolutions keep counts divisible by their groups).
    """
    data_format = normalize_data_format(data_format)
    block, conv = 1, 0
    for entry in table:
        if isinstance(entry, LRN):
            x = LocalResponseNormalization(data_format=data_format, name=f"block{block}_lrn")(x)
            continue
        if isinstance(entry, Pool):
            x = make_pool(
                pool_type,
                entry.size,
                entry.strides,
                entry.padding,
                data_format,
                f"block{block}_pool",
            )(x)
            block, conv = block + 1, 0
            continue
        conv += 1
        base = f"block{block}_conv{conv}"
        filters = entry.filters
        if width_multiplier != 1.0:
            divisor = max(width_divisor, entry.groups) // entry.groups * entry.groups
            filters = make_divisible(filters * width_multiplier, divisor)
        padding = entry.padding
        if not isinstance(padding, str):
            x = keras.layers.ZeroPadding2D(padding, data_format=data_format, name=f"{base}_pad")(x)
            padding = "valid"
        # Grouped convolutions through GroupedConv2D: Keras' own runs them in a nested XLA
        # function on CPU, which tf2onnx cannot export.
        conv_cls = GroupedConv2D if entry.groups > 1 else keras.layers.Conv2D
        x = conv_cls(
            filters,
            entry.kernel,
            strides=entry.strides,
            padding=padding,
            groups=entry.groups,
            data_format=data_format,
            name=base,
        )(x)
        x = apply(make_norm(norm, f"{base}_bn", data_format), x)
        x = apply(make_activation(activation, f"{base}_{_act_name(activation)}"), x)
    return x


def _act_name(activation):
    return activation if isinstance(activation, str) else "act"


def check_multiplier(value, name):
    """Validates a positive width/depth multiplier."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"`{name}` must be a positive number. Received: {name}={value!r}")
    return float(value)


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


HEAD_POOLINGS = ("max", "avg", "fractional", "adaptive_avg", "adaptive_max")


def head_pooling_layer(x, head_pooling, *, include_top, data_format=None):
    """Applies the non-global part of a classifier's pooling; returns `(x, top_pooling)`.

    `"avg"`/`"max"` are `classifier_head`'s global poolings and leave `x` as is;
    `"adaptive_avg"`/`"adaptive_max"` pool to 1x1 first (PyTorch's `AdaptiveAvgPool2d(1)` head);
    `"fractional"` applies fractional max pooling by 2 (Graham 2014) before the global average.
    Nothing is applied when `include_top` is false (`pooling` governs the features then).
    """
    if head_pooling not in HEAD_POOLINGS:
        raise ValueError(
            f"`head_pooling` must be one of {HEAD_POOLINGS}. Received: head_pooling={head_pooling!r}"
        )
    if not include_top or head_pooling in ("avg", "max"):
        return x, head_pooling if head_pooling in ("avg", "max") else "avg"
    options = {"pooling_ratio": 2.0} if head_pooling == "fractional" else {"output_size": 1}
    layer = create_pooling(head_pooling, data_format=data_format, name="head_pool", **options)
    return layer(x), "avg"
