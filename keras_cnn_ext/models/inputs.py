"""The input of every builder, and the argument checks `keras.applications` builders share.

- `validate_builder_args`: the checks `keras.applications` does, with clearer errors.
- `make_inputs`: the input tensor from `input_tensor`/`input_shape`/the network's default
  shape, by keras.applications' rule, validated against the network's downsampling
  (`Downsample`, `check_min_size`).
"""

from __future__ import annotations

import collections
import numbers

import keras

from keras_cnn_ext.models.heads import FEATURE_POOLINGS
from keras_cnn_ext.models.weights import check_weights
from keras_cnn_ext.utils import check_rate, normalize_data_format


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

    Returns:
        The minimum input size (an int, the same for height and width).

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


def check_choices(**choices):
    """Checks `name=(value, accepted_values)` pairs of enumerated arguments.

    Raises:
        ValueError: ``"`name` must be one of (...). Received: name=value"``.
    """
    for arg, (value, accepted) in choices.items():
        accepted = tuple(accepted)
        if value not in accepted:
            raise ValueError(f"`{arg}` must be one of {accepted}. Received: {arg}={value!r}")


def check_multiplier(value, name):
    """Validates a positive width/depth multiplier; returns it as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"`{name}` must be a positive number. Received: {name}={value!r}")
    return float(value)


def check_positive_int(value, name, maximum=None):
    """Validates a positive integer (at most `maximum` when given); returns it as an int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"`{name}` must be at most {maximum}. Received: {name}={value!r}")
    return int(value)


def validate_builder_args(
    *, include_top, weights=None, pooling=None, classes=1000, dropout=None, **choices
):
    """Checks the `keras.applications` arguments every builder shares.

    Args:
        include_top: whether the classifier is built.
        weights: `None` (random initialisation) or the path of a readable `.weights.h5` or
            `.keras` file, loaded after the model is built (`check_weights`).
        pooling: `None`, `"avg"` or `"max"` (used when `include_top=False`).
        classes: the number of classes; a positive int when `include_top=True`.
        dropout: optional dropout rate in [0, 1).
        **choices: `name=(value, accepted_values)` pairs for a builder's own enumerated
            arguments (e.g. `variant=("classic", ("classic", "modern"))`).

    Raises:
        ValueError: on any invalid value, naming the argument, what is accepted and what was
            received.
    """
    check_weights(weights)
    if pooling not in FEATURE_POOLINGS:
        raise ValueError(
            f"`pooling` must be one of {FEATURE_POOLINGS}. Received: pooling={pooling!r}"
        )
    if include_top and (
        isinstance(classes, bool) or not isinstance(classes, numbers.Integral) or classes <= 0
    ):
        raise ValueError(
            "`classes` must be a positive integer when `include_top=True`. "
            f"Received: classes={classes!r}"
        )
    if dropout is not None:
        check_rate(dropout, "dropout")
    check_choices(**choices)


def default_input_shape(default_shape, *, include_top, data_format=None):
    """The input shape a builder uses when given neither `input_shape` nor `input_tensor`.

    keras.applications' rule (`imagenet_utils.obtain_input_shape` with `weights=None`): the
    network's usual size when the classifier is built, unknown height and width otherwise.

    Args:
        default_shape: the network's usual `(height, width, channels)`, e.g. `(224, 224, 3)`.
        include_top: whether the classifier is built.
        data_format: the layout of the returned shape; default Keras' global setting.
    """
    height, width, channels = default_shape
    if not include_top:
        height = width = None
    if normalize_data_format(data_format) == "channels_first":
        return (channels, height, width)
    return (height, width, channels)


def make_inputs(
    input_tensor=None,
    input_shape=None,
    default_shape=(224, 224, 3),
    stages=(),
    require_static=False,
    data_format=None,
    *,
    include_top=False,
):
    """Returns the model's input Keras tensor, validated like `keras.applications` does.

    Args:
        input_tensor: optional Keras tensor (e.g. `keras.Input(...)` or another model's output)
            to build the model on.
        input_shape: optional shape without the batch axis, e.g. `(32, 32, 3)`. Default: the
            shape of `input_tensor` if given, else `default_input_shape(default_shape)`:
            `default_shape` when `include_top` or `require_static`, else its channels with
            unknown height and width.
        default_shape: the network's usual input `(height, width, channels)`, in this order
            whatever the `data_format`.
        stages: the network's spatial reductions (`Downsample`), checked by `check_min_size`.
        require_static: whether the spatial size must be known (a `Flatten` classifier).
        data_format: `"channels_last"` or `"channels_first"`; default Keras' global setting.
        include_top: whether the classifier is built (it decides the default shape).

    Raises:
        ValueError: if `input_tensor` is not a Keras tensor, `input_shape` is not three
            dimensions or disagrees with `input_tensor`, or the input is too small.

    Example:

    >>> make_inputs(default_shape=(224, 224, 3), include_top=True).shape
    (None, 224, 224, 3)
    >>> make_inputs(default_shape=(224, 224, 3), include_top=False).shape
    (None, None, None, 3)
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
        input_shape = default_input_shape(
            default_shape, include_top=include_top or require_static, data_format=data_format
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
