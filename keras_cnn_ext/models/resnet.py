"""ResNet v1, v1.5 and v2 (ImageNet and CIFAR layouts), SE-ResNet: one builder and its tables.

Every depth is a row of a table, as in torchvision's and timm's `resnet.py`: the block type and
the number of blocks per stage. ImageNet depths use the 7x7 stem and the widths 64-512; the CIFAR
depths (6n + 2, He et al. 2015, section 4.2) use a 3x3 stem and the widths 16-64. The blocks are
`keras_cnn_ext.layers.ResidualBlock`, named as in `keras.applications` so that its weights copy
over with `load_keras_applications_weights`.
"""

from __future__ import annotations

import math

import keras

from keras_cnn_ext.layers.group_batch_normalization import GroupBatchNormalization
from keras_cnn_ext.layers.group_conv import GroupConv2D
from keras_cnn_ext.layers.group_pooling import GroupPooling
from keras_cnn_ext.layers.residual_block import ResidualBlock
from keras_cnn_ext.models.builder import finish_model, named_variant
from keras_cnn_ext.models.inputs import (
    Downsample,
    check_multiplier,
    make_inputs,
    validate_builder_args,
)
from keras_cnn_ext.models.parts import apply, make_activation, make_norm
from keras_cnn_ext.models.registry import register_builder
from keras_cnn_ext.models.remat import rematerialize
from keras_cnn_ext.ops.drop_path import drop_path_rates
from keras_cnn_ext.ops.group_conv import check_group, group_order
from keras_cnn_ext.utils import make_divisible, normalize_data_format

# depth: (block type, blocks per stage). Stages are conv2..conv5, widths 64, 128, 256, 512.
RESNET_DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    26: ("bottleneck", (2, 2, 2, 2)),  # timm's resnet26
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
# depth = 6n + 2: n basic blocks in each of three stages of widths 16, 32, 64.
CIFAR_RESNET_DEPTHS = {
    8: ("basic", (1, 1, 1)),  # n = 1: the depth of MLPerf Tiny's image-classification model
    20: ("basic", (3, 3, 3)),
    32: ("basic", (5, 5, 5)),
    44: ("basic", (7, 7, 7)),
    56: ("basic", (9, 9, 9)),
    110: ("basic", (18, 18, 18)),
}
IMAGENET_WIDTHS = (64, 128, 256, 512)
CIFAR_WIDTHS = (16, 32, 64)
VERSIONS = ("v1", "v1.5", "v2")
SE_RATIO = 1 / 16  # Hu et al. 2018 ("Squeeze-and-excitation networks"): reduction r = 16
SHORTCUT_OPTIONS = {"A": "zero_pad", "B": "auto"}


def _accepted_depths():
    return f"{sorted(RESNET_DEPTHS)} (ImageNet) or {sorted(CIFAR_RESNET_DEPTHS)} (CIFAR)"


def _stage_plan(blocks, cifar, version, output_stride):
    """Per stage: (stride, index of the strided block, dilation of the first block, dilation).

    v1/v1.5 and the CIFAR nets stride the first block of stages 2..; keras.applications'
    ResNetV2 strides the *last* block of stages 1..3 instead (same total stride of 32). To reach
    `output_stride`, the last strided stages trade their stride for dilation (DeepLab;
    torchvision's `replace_stride_with_dilation`: the first block keeps the previous dilation).
    """
    num = len(blocks)
    if not cifar and version == "v2":
        strides = [2] * (num - 1) + [1]
        positions = [n - 1 for n in blocks]
    else:
        strides = [1] + [2] * (num - 1)
        positions = [0] * num
    stem_stride = 1 if cifar else 4
    natural = stem_stride
    for s in strides:
        natural *= s
    accepted = sorted({natural // 2**k for k in range(sum(s > 1 for s in strides) + 1)})
    target = natural if output_stride is None else output_stride
    if target not in accepted:
        raise ValueError(
            f"`output_stride` must be one of {accepted} for this network (or None). "
            f"Received: output_stride={output_stride!r}"
        )
    # Walk the stages from the last, turning strides into dilation until the target is met.
    current, dilate = natural, [False] * num
    for i in reversed(range(num)):
        if current == target:
            break
        if strides[i] > 1:
            dilate[i] = True
            current //= strides[i]
    plan, dilation = [], 1
    for i in range(num):
        if dilate[i]:
            previous, dilation = dilation, dilation * strides[i]
            plan.append((1, positions[i], previous, dilation))
        else:
            plan.append((strides[i], positions[i], dilation, dilation))
    return plan


def _downsamples(cifar, plan, blocks, block_type, version):
    """The network's spatial reductions, for `make_inputs`' minimum-size check."""
    stages = []
    if not cifar:
        stages += [Downsample("conv1_conv", 7, 2, 6), Downsample("pool1_pool", 3, 2, 2)]
    for i, (stride, position, _, _) in enumerate(plan):
        if stride > 1:
            kernel = 1 if (block_type == "bottleneck" and version == "v1") else 3
            stages.append(
                Downsample(f"conv{i + 2}_block{position + 1}", kernel, stride, kernel - 1)
            )
    return stages


def ResNet(
    depth=50,
    *,
    version="v1",
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name=None,
    attention=None,
    attention_kwargs=None,
    norm="batch",
    activation="relu",
    drop_path_rate=0.0,
    dropout=0.0,
    width_multiplier=1.0,
    output_stride=None,
    head_pooling="avg",
    shortcut=None,
    use_bias=None,
    kernel_initializer="glorot_uniform",
    seed=None,
    data_format=None,
    remat=False,
    group=None,
):
    """Builds a ResNet of any depth of `RESNET_DEPTHS` (ImageNet) or `CIFAR_RESNET_DEPTHS`.

    He et al. 2015 ("Deep residual learning for image recognition") and 2016 ("Identity mappings
    in deep residual networks"). The ImageNet layout is keras.applications': a padded 7x7/2
    convolution, a 3x3/2 max pooling, four stages of `ResidualBlock`s; `version="v1"` strides the
    first 1x1 convolution of a bottleneck (keras.applications.ResNet50: the same parameter
    count, 25,636,712, and the same layer names, so its weights copy over with
    `load_keras_applications_weights`), `"v1.5"` the 3x3 one (torchvision), and `"v2"` is
    keras.applications' ResNet50V2 (pre-activation, stride in the last block of a stage, a final
    BN-ReLU). Basic-block depths (18, 34) have no convolution biases by default and match
    torchvision's parameter counts (11,689,512 and 21,797,672). CIFAR depths (8, 20, 32, 44,
    56, 110) have a 3x3 stem of 16 channels and three stages of 16, 32, 64 channels, with option-A
    (zero-padded identity, the paper's, 0.27M parameters for ResNet-20) or option-B (projection)
    shortcuts. The `SEResNet*` builders are Hu et al.'s SE-ResNets: `attention="se"` with
    reduction 16 in every block and no convolution biases; `SEResNet50` has 28,088,024
    trainable parameters, the count of Hu et al.'s SE-ResNet-50 and timm's `seresnet50`.

    Args:
        depth: a key of `RESNET_DEPTHS` or `CIFAR_RESNET_DEPTHS`. Default 50.
        version: `"v1"`, `"v1.5"` or `"v2"`. Default `"v1"`.
        include_top, weights, input_tensor, input_shape, pooling, classes,
            classifier_activation, name: as in `keras.applications` (`weights`: None or a
            `.weights.h5`/`.keras` file of this model; for keras.applications' own weights use
            `load_keras_applications_weights`). Default name `[se]resnet{depth}[v2]`.
            The default `input_shape` is `(224, 224, 3)` (CIFAR depths: `(32, 32, 3)`) with
            the classifier and unknown height and width without, as in keras.applications;
            `(None, None, 3)` is accepted with the classifier too (global pooling).
        attention: attention in every block, `"se"`, `"eca"`, `"cbam"` (see
            `create_attention`) or None. Default None.
        attention_kwargs: arguments of the attention layers. With `attention="se"` the
            reduction is the SE paper's 16 (`ratio=1/16`, Hu et al. 2018) unless this sets
            `ratio` or `reduced_channels`. Default None.
        norm: the normalisation (`create_norm` name or class). Default `"batch"`.
        activation: the activation (`create_activation` name, callable or class).
            Default `"relu"`.
        drop_path_rate: the stochastic-depth rate of the last block; block `i` of `N` gets
            `drop_path_rate * i / (N - 1)` (timm's linear schedule). Default 0.
        dropout: dropout before the classifier. Default 0.
        width_multiplier: multiplies every width (rounded to a multiple of 8). Default 1.
        output_stride: the total stride of the features, reached by dilating the last stages
            (e.g. 16 or 8 for segmentation); default the natural one (32, or 4 for CIFAR).
        head_pooling: the classifier's pooling: `"avg"`, `"max"` (global), `"adaptive_avg"`,
            `"adaptive_max"` (to 1x1), or `"fractional"` (fractional max pooling by 2, then
            global average). Default `"avg"`.
        shortcut: `"A"` (zero-padded identity) or `"B"` (projection when the shape changes);
            default `"A"` for the CIFAR depths and `"B"` for ImageNet (v2: keras.applications'
            projection in every first block). Option A needs growing widths.
        use_bias: convolution biases; default True for ImageNet bottleneck depths
            (keras.applications), False otherwise (torchvision, CIFAR).
        kernel_initializer: the convolution kernels' initializer. Default `"glorot_uniform"`.
        seed: the seed of the drop-path masks (block `i` uses `seed + i`). Default None.
        data_format: `"channels_last"` or `"channels_first"`; default Keras' global setting.
        remat: recompute each block's activations in the backward pass instead of keeping
            them (`keras_cnn_ext.training.rematerialize`): less training memory for more
            step time; the same weights and gradients. Default False.
        group: CIFAR depths only: `None` (default), or `"p4"`/`"p4m"` for a group-equivariant
            ResNet (Cohen & Welling 2016, section 8.2): a lifting `GroupConv2D` stem, blocks of
            group-to-group convolutions with `GroupBatchNormalization`, and `GroupPooling`
            (max over the group) before the head, so the features are invariant. Each width is
            divided by sqrt(|G|) (rounded; fields of |G| channels), as in the paper, so the
            parameter count stays about the plain one. Exactly equivariant on odd input sizes
            (e.g. 33x33: every strided map keeps a symmetric grid); at 32x32 the stride-2
            sampling grid is not symmetric and invariance is approximate.

    Returns:
        A functional `keras.Model`.

    Raises:
        ValueError: for an unknown depth (the message lists the accepted ones) or any other
            invalid argument.

    Example:

    >>> model = ResNet(18, input_shape=(64, 64, 3), include_top=False, output_stride=16)
    >>> model.output_shape
    (None, 4, 4, 512)
    """
    if depth in RESNET_DEPTHS:
        cifar = False
        block_type, blocks = RESNET_DEPTHS[depth]
        widths = IMAGENET_WIDTHS
    elif depth in CIFAR_RESNET_DEPTHS:
        cifar = True
        block_type, blocks = CIFAR_RESNET_DEPTHS[depth]
        widths = CIFAR_WIDTHS
    else:
        raise ValueError(f"`depth` must be one of {_accepted_depths()}. Received: depth={depth!r}")
    if group is not None:
        group = check_group(group)
        if not cifar or attention is not None:
            raise ValueError(
                "`group` is supported on the CIFAR depths "
                f"{sorted(CIFAR_RESNET_DEPTHS)} without `attention`. Received: group={group!r}, "
                f"depth={depth!r}, attention={attention!r}"
            )
    validate_builder_args(
        include_top=include_top,
        weights=weights,
        pooling=pooling,
        classes=classes,
        dropout=dropout,
        version=(version, VERSIONS),
        shortcut=(shortcut, (None, *SHORTCUT_OPTIONS)),
    )
    multiplier = check_multiplier(width_multiplier, "width_multiplier")
    data_format = normalize_data_format(data_format)
    if use_bias is None:
        use_bias = block_type == "bottleneck" and not cifar
    if shortcut is None:
        shortcut = "A" if cifar else "B"
    is_se = isinstance(attention, str) and attention.strip().lower() == "se"
    if is_se:
        attention_kwargs = dict(attention_kwargs or {})
        if "reduced_channels" not in attention_kwargs:
            attention_kwargs.setdefault("ratio", SE_RATIO)
    if name is None:
        name = ("se" if is_se else "") + f"resnet{depth}" + ("v2" if version == "v2" else "")

    def width(channels):
        channels = channels if multiplier == 1.0 else make_divisible(channels * multiplier, 8)
        return channels if group is None else max(1, round(channels / math.sqrt(order)))

    order = 1 if group is None else group_order(group)

    def stem_norm(norm_name):
        if group is None:
            return make_norm(norm, norm_name, data_format, epsilon=1.001e-5)
        return GroupBatchNormalization(group, data_format, epsilon=1.001e-5, name=norm_name)

    plan = _stage_plan(blocks, cifar, version, output_stride)
    inputs = make_inputs(
        input_tensor,
        input_shape,
        default_shape=(32, 32, 3) if cifar else (224, 224, 3),
        stages=_downsamples(cifar, plan, blocks, block_type, version),
        include_top=include_top,
        data_format=data_format,
    )
    preact = version == "v2"
    conv_args = dict(
        use_bias=use_bias, kernel_initializer=kernel_initializer, data_format=data_format
    )

    # Stem.
    if cifar and group is not None:
        x = GroupConv2D(width(16), 3, group, padding="same", name="conv1_conv", **conv_args)(inputs)
    elif cifar:
        x = keras.layers.Conv2D(width(16), 3, padding="same", name="conv1_conv", **conv_args)(
            inputs
        )
    else:
        x = keras.layers.ZeroPadding2D(3, data_format=data_format, name="conv1_pad")(inputs)
        x = keras.layers.Conv2D(width(64), 7, strides=2, name="conv1_conv", **conv_args)(x)
    if not preact:
        x = apply(stem_norm("conv1_bn"), x)
        x = apply(make_activation(activation, "conv1_relu"), x)
    if not cifar:
        x = keras.layers.ZeroPadding2D(1, data_format=data_format, name="pool1_pad")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, data_format=data_format, name="pool1_pool")(x)

    # Stages.
    rates = drop_path_rates(drop_path_rate, sum(blocks))
    index = 0
    for stage, (count, channels, (stride, position, first_dilation, dilation)) in enumerate(
        zip(blocks, widths, plan, strict=True)
    ):
        for b in range(count):
            if preact and not cifar:
                # keras.applications ResNetV2: projection in every first block, identity
                # (subsampled when strided) elsewhere.
                block_shortcut = "projection" if b == 0 else "identity"
                if b == 0 and block_type == "basic":
                    block_shortcut = "auto"
            else:
                block_shortcut = SHORTCUT_OPTIONS[shortcut]
            x = ResidualBlock(
                width(channels),
                block_type=block_type,
                version=version,
                strides=stride if b == position else 1,
                dilation_rate=first_dilation if b == 0 else dilation,
                shortcut=block_shortcut,
                attention=attention,
                attention_kwargs=attention_kwargs,
                drop_path_rate=rates[index],
                norm=norm,
                activation=activation,
                use_bias=use_bias,
                kernel_initializer=kernel_initializer,
                data_format=data_format,
                seed=None if seed is None else seed + index,
                group=group,
                name=f"conv{stage + 2}_block{b + 1}",
            )(x)
            index += 1
    if preact:
        x = apply(stem_norm("post_bn"), x)
        x = apply(make_activation(activation, "post_relu"), x)
    if group is not None:
        x = GroupPooling(group, "max", data_format=data_format, name="group_pool")(x)

    model = finish_model(
        inputs,
        x,
        name=name,
        weights=weights,
        include_top=include_top,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        dropout=dropout,
        head_pooling=head_pooling,
        data_format=data_format,
    )
    return rematerialize(model) if remat else model


def _resnet(depth, version="v1", attention=None):
    """The named builder of one table row: `ResNet50`, `ResNet50V2`, `SEResNet50`, `ResNet20`."""
    cifar = depth in CIFAR_RESNET_DEPTHS
    fixed = {"depth": depth} if cifar else {"depth": depth, "version": version}
    defaults = {}
    if cifar:
        summary = f"CIFAR ResNet-{depth} (He et al. 2015: 6n+2 layers, option-A shortcuts)."
    elif attention == "se":
        fixed["attention"] = attention
        # Hu et al.'s SE-ResNets have no convolution biases (a BN follows each convolution).
        defaults["use_bias"] = False
        summary = (
            f"SE-ResNet-{depth} (Hu et al. 2018): squeeze-and-excitation of reduction 16 in "
            "every block, no convolution biases."
        )
    else:
        layout = "ResNetV2 (pre-activation)" if version == "v2" else "ResNet"
        summary = f"ResNet-{depth} {version}, keras.applications' {layout} layout."
    prefix, suffix = ("SE" if attention else ""), ("V2" if version == "v2" else "")
    return named_variant(
        ResNet,
        f"{prefix}ResNet{depth}{suffix}",
        summary,
        fixed=fixed,
        defaults=defaults,
        default_shape=(32, 32, 3) if cifar else (224, 224, 3),
    )


ResNet18 = _resnet(18)
ResNet26 = _resnet(26)
ResNet34 = _resnet(34)
ResNet50 = _resnet(50)
ResNet101 = _resnet(101)
ResNet152 = _resnet(152)
ResNet18V2 = _resnet(18, "v2")
ResNet26V2 = _resnet(26, "v2")
ResNet34V2 = _resnet(34, "v2")
ResNet50V2 = _resnet(50, "v2")
ResNet101V2 = _resnet(101, "v2")
ResNet152V2 = _resnet(152, "v2")
SEResNet18 = _resnet(18, attention="se")
SEResNet26 = _resnet(26, attention="se")
SEResNet34 = _resnet(34, attention="se")
SEResNet50 = _resnet(50, attention="se")
SEResNet101 = _resnet(101, attention="se")
SEResNet152 = _resnet(152, attention="se")
ResNet8 = _resnet(8)
ResNet20 = _resnet(20)
ResNet32 = _resnet(32)
ResNet44 = _resnet(44)
ResNet56 = _resnet(56)
ResNet110 = _resnet(110)
register_builder("resnet")(ResNet)
