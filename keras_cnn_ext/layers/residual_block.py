"""ResidualBlock: the basic and bottleneck blocks of ResNet v1, v1.5 and v2."""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_cnn_ext.layers.attention import create_attention, is_attention_name
from keras_cnn_ext.layers.conv_block_base import ConvBlockBase
from keras_cnn_ext.layers.drop_path import DropPath
from keras_cnn_ext.layers.factories import layer_spec_name
from keras_cnn_ext.layers.group_batch_normalization import GroupBatchNormalization
from keras_cnn_ext.layers.group_conv import GroupConv2D
from keras_cnn_ext.ops.group_conv import check_group, group_order
from keras_cnn_ext.utils import (
    check_choice,
    check_input_rank,
    check_positive_int,
    check_rate,
    check_seed,
)

BLOCK_TYPES = ("basic", "bottleneck")
VERSIONS = ("v1", "v1.5", "v2")
SHORTCUTS = ("auto", "projection", "identity", "zero_pad")


def _subsample(x, stride, channel_axis):
    """Keeps every `stride`-th row and column, as a 1x1 max-pool with that stride does."""
    if stride == 1:
        return x
    if channel_axis == 1:
        return x[:, :, ::stride, ::stride]
    return x[:, ::stride, ::stride, :]


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class ResidualBlock(ConvBlockBase):
    """A ResNet residual block: basic or bottleneck, post- (v1) or pre-activation (v2).

    He et al. 2015 ("Deep residual learning for image recognition") add a shortcut around two
    3x3 convolutions (`"basic"`) or a 1x1-3x3-1x1 bottleneck (`"bottleneck"`, output
    `expansion * filters` channels). `"v1"` is post-activation with the stride in the first 1x1
    convolution (the layout of `keras.applications.ResNet50`, with the same sublayer names, so
    weights map one to one); `"v1.5"` moves the stride to the 3x3 convolution (torchvision);
    `"v2"` is the pre-activation block of He et al. 2016 ("Identity mappings in deep residual
    networks") as in `keras.applications.ResNet50V2`: normalisation and activation come first,
    the projection shortcut reads the pre-activated input and has no normalisation, and there is
    no activation after the addition.

    The shortcut is the identity when the shape is unchanged. Otherwise `shortcut="auto"` uses a
    1x1 projection (option B of the paper); `"zero_pad"` keeps it parameter-free by subsampling
    and zero-padding the new channels (option A, the CIFAR ResNets); `"projection"` always
    projects (keras.applications' `conv_shortcut=True`); `"identity"` never does and subsamples
    when strided (keras.applications v2's `MaxPooling2D(1, strides)`).

    Optional attention (`"se"`, `"eca"`, `"cbam"`, see `create_attention`) is applied to the
    residual branch before the addition (SE-ResNet), and stochastic depth (`DropPath`) drops the
    branch per sample in training.

    Args:
        filters: the width of the block: the channels of every convolution of a basic block, or
            of the bottleneck (the output has `expansion * filters` channels).
        block_type: `"basic"` or `"bottleneck"`. Default `"bottleneck"`.
        version: `"v1"`, `"v1.5"` or `"v2"`. Default `"v1"`.
        strides: the spatial stride of the block. Default 1.
        kernel_size: the (odd) kernel size of the spatial convolutions. Default 3.
        dilation_rate: the dilation of the spatial convolutions (for output stride < 32);
            cannot be combined with a stride on the same convolution. Default 1.
        expansion: the output channels over `filters`; default 4 for a bottleneck, 1 for basic.
        shortcut: `"auto"`, `"projection"`, `"identity"` or `"zero_pad"` (see above).
            Default `"auto"`.
        attention: an attention spec for `create_attention` (`"se"`, `"eca"`, `"cbam"`, a
            layer class, `None`). Default `None`.
        attention_kwargs: a dict of arguments for the attention layer. Default `None`.
        drop_path_rate: the stochastic-depth rate of the residual branch, in [0, 1). Default 0.
        norm: the normalisation, a `create_norm` name or layer class. Default `"batch"`.
        norm_epsilon: the normalisation epsilon; default 1.001e-5 as keras.applications.
        norm_momentum: the batch-normalisation momentum. Default 0.99.
        activation: the activation, a `create_activation` name, callable or class.
            Default `"relu"`.
        use_bias: whether the convolutions have a bias. In v2, convolutions followed by a
            normalisation never have one (keras.applications' layout). Default `False`.
        kernel_initializer: the initializer of the convolution kernels. Default
            `"glorot_uniform"` (Keras' and keras.applications' default).
        data_format: `"channels_last"` or `"channels_first"`; default Keras' global setting.
        seed: int or `None`, the seed of the drop-path masks.
        group: `None` (default), or `"p4"`/`"p4m"` for a group-equivariant block (Cohen &
            Welling 2016): the convolutions are group-to-group `GroupConv2D`s, the norm is
            `GroupBatchNormalization` (only `norm="batch"`), `filters` counts fields (the
            output has `expansion * filters * |G|` channels), zero padding adds whole fields,
            and attention is refused (it mixes group channels). Exactly equivariant when every
            strided map has an odd size (e.g. 33x33 inputs; 32x32 strides an even grid).

    Input shape:
        4D tensor `(batch, height, width, channels)` (or channels first).

    Output shape:
        4D tensor `(batch, ceil(height / strides), ceil(width / strides), expansion * filters)`.

    Example:

    >>> x = keras.random.normal((2, 16, 16, 64))
    >>> y = ResidualBlock(32, strides=2, attention="se")(x)
    >>> tuple(y.shape)
    (2, 8, 8, 128)
    """

    def __init__(
        self,
        filters,
        block_type="bottleneck",
        version="v1",
        strides=1,
        kernel_size=3,
        dilation_rate=1,
        expansion=None,
        shortcut="auto",
        attention=None,
        attention_kwargs=None,
        drop_path_rate=0.0,
        norm="batch",
        norm_epsilon=1.001e-5,
        norm_momentum=0.99,
        activation="relu",
        use_bias=False,
        kernel_initializer="glorot_uniform",
        data_format=None,
        seed=None,
        group=None,
        **kwargs,
    ):
        super().__init__(
            norm=norm,
            norm_epsilon=norm_epsilon,
            norm_momentum=norm_momentum,
            activation=activation,
            kernel_initializer=kernel_initializer,
            data_format=data_format,
            **kwargs,
        )
        self.filters = check_positive_int(filters, "filters")
        self.block_type = check_choice(block_type, "block_type", BLOCK_TYPES)
        self.version = check_choice(version, "version", VERSIONS)
        self.strides = check_positive_int(strides, "strides")
        self.kernel_size = check_positive_int(kernel_size, "kernel_size")
        if self.kernel_size % 2 == 0:
            raise ValueError(
                f"`kernel_size` must be odd (symmetric padding). Received: kernel_size={kernel_size}"
            )
        self.dilation_rate = check_positive_int(dilation_rate, "dilation_rate")
        default_expansion = 4 if self.block_type == "bottleneck" else 1
        self.expansion = check_positive_int(
            default_expansion if expansion is None else expansion, "expansion"
        )
        self.shortcut = check_choice(shortcut, "shortcut", SHORTCUTS)
        self.attention = layer_spec_name(attention)
        self.attention_kwargs = dict(attention_kwargs or {})
        self.drop_path_rate = check_rate(drop_path_rate, "drop_path_rate")
        self.use_bias = bool(use_bias)
        self.seed = check_seed(seed)
        self.group = None if group is None else check_group(group)
        self.order = 1 if self.group is None else group_order(self.group)
        if self.group is not None and (self.attention is not None or self.norm != "batch"):
            raise ValueError(
                "A group-equivariant block (`group` set) takes `norm='batch'` and no "
                f"`attention`. Received: group={group!r}, norm={self.norm!r}, "
                f"attention={self.attention!r}"
            )
        self.out_fields = self.filters * self.expansion
        self.out_channels = self.out_fields * self.order
        preact = self.version == "v2"

        # Where the stride goes: keras.applications' v1 strides the first 1x1 convolution of a
        # bottleneck; v1.5 and v2 stride the 3x3 (a basic block has only 3x3 convolutions).
        if self.block_type == "bottleneck":
            stride_on_1x1 = self.version == "v1"
            units = [
                (self.filters, 1, self.strides if stride_on_1x1 else 1, 1),
                (
                    self.filters,
                    self.kernel_size,
                    1 if stride_on_1x1 else self.strides,
                    self.dilation_rate,
                ),
                (self.out_fields, 1, 1, 1),
            ]
        else:
            units = [
                (self.filters, self.kernel_size, self.strides, self.dilation_rate),
                (self.out_fields, self.kernel_size, 1, self.dilation_rate),
            ]
        for _, kernel, stride, dilation in units:
            if kernel > 1 and stride > 1 and dilation > 1:
                raise ValueError(
                    "`strides` > 1 and `dilation_rate` > 1 cannot both apply to the spatial "
                    f"convolution. Received: strides={strides}, dilation_rate={dilation_rate}"
                )

        name = self.name
        self.preact_norm = self.preact_act = None
        if preact:
            self.preact_norm = self._make_norm(f"{name}_preact_bn")
            self.preact_act = self._make_activation(f"{name}_preact_relu")
        self.pads, self.convs, self.norms, self.acts = [], [], [], []
        last = len(units) - 1
        for i, (channels, kernel, stride, dilation) in enumerate(units):
            index = i + 1
            has_norm = i < last or not preact
            pad = None
            # 1x1 convolutions need no padding: "valid", as keras.applications writes them.
            padding = "valid" if kernel == 1 else "same"
            if kernel > 1 and stride > 1:
                # An explicit symmetric pad before a "valid" strided convolution (torchvision's
                # padding=1, keras.applications v2's `_2_pad`): "same" would pad only the bottom
                # and right of even inputs and shift the sampling grid.
                p = (kernel - 1) // 2
                pad = keras.layers.ZeroPadding2D(
                    p,
                    data_format=self.data_format,
                    dtype=self.dtype_policy,
                    name=f"{name}_{index}_pad",
                )
                padding = "valid"
            self.pads.append(pad)
            self.convs.append(
                self._make_conv(
                    channels,
                    kernel,
                    stride,
                    dilation,
                    padding,
                    use_bias=self.use_bias and not (preact and has_norm),
                    name=f"{name}_{index}_conv",
                )
            )
            self.norms.append(self._make_norm(f"{name}_{index}_bn") if has_norm else None)
            self.acts.append(self._make_activation(f"{name}_{index}_relu") if i < last else None)

        attention_kwargs = dict(self.attention_kwargs)
        attention_kwargs.setdefault("name", f"{name}_attn")
        attention_kwargs.setdefault("dtype", self.dtype_policy)
        if is_attention_name(self.attention):
            attention_kwargs.setdefault("data_format", self.data_format)
        # A class given to __init__ is stored by its registered name (see get_config), which
        # the factory resolves back.
        self.attention_layer = create_attention(
            self.attention, channels=self.out_channels, **attention_kwargs
        )
        self.drop_path = None
        if self.drop_path_rate > 0:
            self.drop_path = DropPath(
                self.drop_path_rate,
                seed=self.seed,
                dtype=self.dtype_policy,
                name=f"{name}_drop_path",
            )
        self.out_act = None if preact else self._make_activation(f"{name}_out")
        self.shortcut_conv = self.shortcut_norm = None

    def _make_conv(self, filters, kernel, stride, dilation, padding, use_bias, name):
        group = {} if self.group is None else {"group": self.group, "lifting": False}
        return (keras.layers.Conv2D if self.group is None else GroupConv2D)(
            filters,
            kernel,
            strides=stride,
            padding=padding,
            dilation_rate=dilation if stride == 1 else 1,
            use_bias=use_bias,
            kernel_initializer=self.kernel_initializer,
            data_format=self.data_format,
            dtype=self.dtype_policy,
            name=name,
            **group,
        )

    def _make_norm(self, name):
        if self.group is None:
            return super()._make_norm(name)
        return GroupBatchNormalization(
            self.group,
            data_format=self.data_format,
            epsilon=self.norm_epsilon,
            momentum=self.norm_momentum,
            dtype=self.dtype_policy,
            name=name,
        )

    def _needs_projection(self, in_channels):
        if self.shortcut == "projection":
            return True
        if self.shortcut == "auto":
            return in_channels != self.out_channels or self.strides != 1
        return False

    def build(self, input_shape):
        input_shape = check_input_rank(input_shape, 4)
        in_channels = self._channels(input_shape)
        if self.shortcut == "identity" and in_channels != self.out_channels:
            raise ValueError(
                "`shortcut='identity'` needs as many input channels as output channels "
                f"({self.out_channels}). Received input shape: {input_shape}"
            )
        if self.shortcut == "zero_pad" and in_channels > self.out_channels:
            raise ValueError(
                "`shortcut='zero_pad'` cannot reduce the channels: the input has more than the "
                f"{self.out_channels} output channels. Received input shape: {input_shape}"
            )
        name = self.name
        if self._needs_projection(in_channels):
            # v2's projection reads the pre-activated input and adds to an un-normalised
            # branch, so it has no normalisation of its own (keras.applications ResNet50V2).
            self.shortcut_conv = self._make_conv(
                self.out_fields, 1, self.strides, 1, "valid", self.use_bias, f"{name}_0_conv"
            )
            if self.version != "v2":
                self.shortcut_norm = self._make_norm(f"{name}_0_bn")
        shape = tuple(input_shape)
        if self.preact_norm is not None:
            self.preact_norm.build(shape)
            self.preact_act.build(shape)
        if self.shortcut_conv is not None:
            self.shortcut_conv.build(shape)
            if self.shortcut_norm is not None:
                self.shortcut_norm.build(self.shortcut_conv.compute_output_shape(shape))
        for pad, conv, norm, act in zip(self.pads, self.convs, self.norms, self.acts, strict=True):
            if pad is not None:
                pad.build(shape)
                shape = pad.compute_output_shape(shape)
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
            for layer in (norm, act):
                if layer is not None:
                    layer.build(shape)
        for layer in (self.attention_layer, self.drop_path, self.out_act):
            if layer is not None:
                layer.build(shape)
        self.built = True

    def call(self, inputs, training=None):
        x = inputs
        if self.preact_norm is not None:
            x = self.preact_act(self.preact_norm(x, training=training))
        if self.shortcut_conv is not None:
            shortcut = self.shortcut_conv(x)
            if self.shortcut_norm is not None:
                shortcut = self.shortcut_norm(shortcut, training=training)
        else:
            # The identity path takes the raw input, also in v2 (keras.applications).
            shortcut = _subsample(inputs, self.strides, self._channel_axis)
            if self.shortcut == "zero_pad":
                extra = self.out_channels - inputs.shape[self._channel_axis]
                if extra:
                    paddings = [[0, 0]] * 4
                    # Whole fields on each side (a group block's channels come |G| a field).
                    before = extra // self.order // 2 * self.order
                    paddings[self._channel_axis] = [before, extra - before]
                    shortcut = tf.pad(shortcut, paddings)
        for pad, conv, norm, act in zip(self.pads, self.convs, self.norms, self.acts, strict=True):
            if pad is not None:
                x = pad(x)
            x = conv(x)
            if norm is not None:
                x = norm(x, training=training)
            if act is not None:
                x = act(x)
        if self.attention_layer is not None:
            x = self.attention_layer(x, training=training)
        if self.drop_path is not None:
            x = self.drop_path(x, training=training)
        x = shortcut + x
        if self.out_act is not None:
            x = self.out_act(x)
        return x

    def compute_output_shape(self, input_shape):
        input_shape = check_input_rank(input_shape, 4)

        def reduce(size):
            return None if size is None else -(-size // self.strides)

        if self.data_format == "channels_first":
            return (
                input_shape[0],
                self.out_channels,
                reduce(input_shape[2]),
                reduce(input_shape[3]),
            )
        return (input_shape[0], reduce(input_shape[1]), reduce(input_shape[2]), self.out_channels)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "block_type": self.block_type,
                "version": self.version,
                "strides": self.strides,
                "kernel_size": self.kernel_size,
                "dilation_rate": self.dilation_rate,
                "expansion": self.expansion,
                "shortcut": self.shortcut,
                "attention": self.attention,
                "attention_kwargs": dict(self.attention_kwargs),
                "drop_path_rate": self.drop_path_rate,
                "use_bias": self.use_bias,
                "seed": self.seed,
                "group": self.group,
            }
        )
        return config
