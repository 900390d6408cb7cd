"""DenseNet (ImageNet: 121/169/201/264) and the CIFAR DenseNet-BC: one builder and its table.

Huang et al. 2017 ("Densely connected convolutional networks"). The blocks are
`keras_cnn_ext.layers.DenseBlock` and `TransitionBlock`, named as in `keras.applications`, so
that its DenseNet weights copy over with `load_keras_applications_weights`.
"""

from __future__ import annotations

from collections.abc import Callable

import keras

from keras_cnn_ext.layers.dense_block import DenseBlock, TransitionBlock
from keras_cnn_ext.models.builder import finish_model, named_variant
from keras_cnn_ext.models.inputs import Downsample, make_inputs, validate_builder_args
from keras_cnn_ext.models.parts import apply, make_activation, make_norm
from keras_cnn_ext.models.registry import register_builder
from keras_cnn_ext.models.remat import rematerialize
from keras_cnn_ext.utils import check_rate, normalize_data_format

# depth: layers per dense block (growth rate 32, 7x7 stem of 64 channels, 4 blocks).
DENSENET_DEPTHS = {
    121: (6, 12, 24, 16),
    169: (6, 12, 32, 32),
    201: (6, 12, 48, 32),
    264: (6, 12, 64, 48),
}
LAYOUTS = ("imagenet", "cifar")


def _cifar_blocks(depth, bottleneck):
    """Three equal blocks: depth = 3 * n * (2 if bottleneck else 1) + 4 (stem, 2 transitions,
    classifier), Huang et al. section 3."""
    per_layer = 2 if bottleneck else 1
    if (
        isinstance(depth, bool)
        or not isinstance(depth, int)
        or depth < 3 * per_layer + 4
        or (depth - 4) % (3 * per_layer)
    ):
        raise ValueError(
            f"`depth` of a CIFAR DenseNet{'-BC' if bottleneck else ''} must be "
            f"{3 * per_layer}n + 4 for an integer n >= 1 (e.g. 40, 100, 190, 250 with "
            f"bottlenecks). Received: depth={depth!r}"
        )
    return ((depth - 4) // (3 * per_layer),) * 3


def DenseNet(
    depth=121,
    *,
    layout="imagenet",
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name=None,
    growth_rate=None,
    compression=0.5,
    bottleneck=True,
    dropout_rate=0.0,
    dropout=0.0,
    norm="batch",
    activation="relu",
    head_pooling="avg",
    seed=None,
    data_format=None,
    remat=False,
):
    """Builds a DenseNet from `DENSENET_DEPTHS` (ImageNet) or a CIFAR DenseNet(-BC) of any depth.

    The ImageNet layout is keras.applications': a padded 7x7/2 convolution of 64 channels,
    BN-ReLU, a 3x3/2 max pooling, four `DenseBlock`s (growth rate 32, bottleneck) joined by
    `TransitionBlock`s (compression 0.5), a final BN-ReLU; DenseNet-121/169/201 have exactly
    keras.applications' parameter counts (8,062,504 / 14,307,880 / 20,242,984) and layer names.
    The CIFAR layout (Huang et al. section 3, "DenseNet-BC") has a 3x3 stem of `2 * growth_rate`
    channels (16 without bottlenecks) and three equal dense blocks; DenseNet-BC with depth 100
    and growth rate 12 has 0.8M parameters.

    Args:
        depth: a key of `DENSENET_DEPTHS` for `layout="imagenet"`; for `"cifar"` any
            `6n + 4` (bottleneck) or `3n + 4`. Default 121.
        layout: `"imagenet"` or `"cifar"`. Default `"imagenet"`.
        include_top, weights, input_tensor, input_shape, pooling, classes,
            classifier_activation, name: as in `keras.applications` (`weights`: None or a
            `.weights.h5`/`.keras` file of this model; keras.applications' own weights copy with
            `load_keras_applications_weights`). Default name `densenet{depth}`. The default
            `input_shape` is `(224, 224, 3)` (CIFAR layout: `(32, 32, 3)`) with the classifier
            and unknown height and width without, as in keras.applications.
        growth_rate: `k`; default 32 (ImageNet) or 12 (CIFAR).
        compression: theta of the transitions, in (0, 1]. Default 0.5.
        bottleneck: 1x1 bottleneck convolutions in the dense layers. Default True.
        dropout_rate: dropout after each dense-layer convolution (the paper uses 0.2 on CIFAR
            without augmentation). Default 0.
        dropout: dropout before the classifier. Default 0.
        norm: the normalisation (`create_norm` name or class). Default `"batch"`.
        activation: the activation (`create_activation` name, callable or class).
            Default `"relu"`.
        head_pooling: the classifier's pooling, as in `ResNet`. Default `"avg"`.
        seed: the seed of the dropout masks (block `i` uses `seed + i`). Default None.
        data_format: `"channels_last"` or `"channels_first"`; default Keras' global setting.
        remat: recompute each block's activations in the backward pass instead of keeping
            them (`keras_cnn_ext.training.rematerialize`): less training memory for more
            step time; the same weights and gradients. Default False.

    Returns:
        A functional `keras.Model`.

    Raises:
        ValueError: for an unknown depth (the message lists the accepted ones) or any other
            invalid argument.

    Example:

    >>> model = DenseNet(100, layout="cifar", input_shape=(32, 32, 3), classes=10)
    >>> model.output_shape
    (None, 10)
    """
    validate_builder_args(
        include_top=include_top,
        weights=weights,
        pooling=pooling,
        classes=classes,
        dropout=dropout,
        layout=(layout, LAYOUTS),
    )
    check_rate(dropout_rate, "dropout_rate")
    cifar = layout == "cifar"
    if cifar:
        blocks = _cifar_blocks(depth, bottleneck)
        growth_rate = 12 if growth_rate is None else growth_rate
    else:
        if depth not in DENSENET_DEPTHS:
            raise ValueError(
                f"`depth` must be one of {sorted(DENSENET_DEPTHS)} for `layout='imagenet'` "
                f"(or use `layout='cifar'`). Received: depth={depth!r}"
            )
        blocks = DENSENET_DEPTHS[depth]
        growth_rate = 32 if growth_rate is None else growth_rate
    data_format = normalize_data_format(data_format)
    name = f"densenet{depth}" if name is None else name
    transitions = [f"pool{i + 2}" for i in range(len(blocks) - 1)]
    stages = [Downsample(t, 2, 2) for t in transitions]
    if not cifar:
        stages = [Downsample("conv1_conv", 7, 2, 6), Downsample("pool1", 3, 2, 2)] + stages
    inputs = make_inputs(
        input_tensor,
        input_shape,
        default_shape=(32, 32, 3) if cifar else (224, 224, 3),
        stages=stages,
        include_top=include_top,
        data_format=data_format,
    )
    parts = dict(norm=norm, activation=activation, data_format=data_format)
    if cifar:
        stem = 2 * growth_rate if bottleneck else 16
        x = keras.layers.Conv2D(
            stem, 3, padding="same", use_bias=False, data_format=data_format, name="conv1_conv"
        )(inputs)
    else:
        x = keras.layers.ZeroPadding2D(3, data_format=data_format, name="conv1_pad")(inputs)
        x = keras.layers.Conv2D(
            64, 7, strides=2, use_bias=False, data_format=data_format, name="conv1_conv"
        )(x)
        x = apply(make_norm(norm, "conv1_bn", data_format, epsilon=1.001e-5), x)
        x = apply(make_activation(activation, "conv1_relu"), x)
        x = keras.layers.ZeroPadding2D(1, data_format=data_format, name="pool1_pad")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, data_format=data_format, name="pool1")(x)
    for i, count in enumerate(blocks):
        x = DenseBlock(
            count,
            growth_rate=growth_rate,
            bottleneck=bottleneck,
            dropout_rate=dropout_rate,
            seed=None if seed is None else seed + i,
            name=f"conv{i + 2}",
            **parts,
        )(x)
        if i < len(transitions):
            x = TransitionBlock(compression, name=transitions[i], **parts)(x)
    x = apply(make_norm(norm, "bn", data_format, epsilon=1.001e-5), x)
    x = apply(make_activation(activation, "relu"), x)
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


def _densenet(depth, summary):
    return named_variant(DenseNet, f"DenseNet{depth}", summary, fixed={"depth": depth})


DenseNet121 = _densenet(121, "DenseNet-121 (Huang et al. 2017), keras.applications' layout.")
DenseNet169 = _densenet(169, "DenseNet-169 (Huang et al. 2017), keras.applications' layout.")
DenseNet201 = _densenet(201, "DenseNet-201 (Huang et al. 2017), keras.applications' layout.")
DenseNet264 = _densenet(264, "DenseNet-264, Huang et al.'s (2017) deepest ImageNet DenseNet.")
# Annotated: `named_variant`'s static type drops the family's first parameter, which this
# variant keeps (`DenseNetBC(190, growth_rate=40)`).
DenseNetBC: Callable[..., keras.Model] = named_variant(
    DenseNet,
    "DenseNetBC",
    "The CIFAR DenseNet-BC (Huang et al. 2017): depth 100 and growth rate 12 by default.",
    fixed={"layout": "cifar"},
    defaults={"depth": 100},
    default_shape=(32, 32, 3),
    default_name="densenet{depth}",
)
register_builder("densenet")(DenseNet)
