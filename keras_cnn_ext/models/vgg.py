"""VGG-11/13/16/19 (Simonyan and Zisserman, 2014), with and without batch normalisation."""

from __future__ import annotations

from keras_cnn_ext.models.builder import named_variant
from keras_cnn_ext.models.inputs import check_choices
from keras_cnn_ext.models.plain import Conv, Pool, plain_network

# Configurations A, B, D and E of the paper's Table 1: an int is a 3x3 "same" convolution with
# that many filters, "M" a 2x2 max pooling with stride 2.
VGG_CONFIGS = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (
        64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
        512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
    ),
}  # fmt: skip
VGG_FC = (4096, 4096)


def vgg_table(depth):
    """The layer table (`Conv`/`Pool` entries) of VGG-`depth`."""
    return tuple(Pool(2, 2) if v == "M" else Conv(v, 3) for v in VGG_CONFIGS[depth])


def VGG(
    depth=16,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name=None,
    *,
    batch_norm=False,
    norm=None,
    activation="relu",
    pool_type="max",
    width_multiplier=1.0,
    fc_units=VGG_FC,
    dropout=0.5,
    head_pooling=None,
):
    """Builds a VGG network of the given depth (11, 13, 16 or 19 weight layers).

    Simonyan and Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
    Recognition" (ICLR 2015), configurations A, B, D, E. Without batch normalisation the layers
    and their order are keras.applications' (`VGG16`: 138,357,544 parameters; `VGG19`:
    143,667,240), so `copy_weights(keras.applications.VGG16(...), VGG16(...))` gives the same
    outputs. With `batch_norm=True` a `BatchNormalization` follows every convolution (bias
    kept, as torchvision's `vgg16_bn`: 138,365,992 trainable parameters).

    Args:
        depth: 11, 13, 16 or 19.
        include_top, weights, input_tensor, input_shape, pooling, classes,
            classifier_activation, name: as in `keras.applications`. Default input
            `(224, 224, 3)` with the classifier, `(None, None, 3)` without; at least 32x32.
        batch_norm: add batch normalisation after each convolution. Default False.
        norm: another normalisation by name or layer class (overrides `batch_norm`).
        activation: the activation after convolutions and hidden dense layers. Default ReLU.
        pool_type: the downsampling pooling, `"max"` (default), `"avg"` or a layer class.
        width_multiplier: scales the convolution filters (rounded to multiples of 8).
        fc_units: the hidden dense layers of the classifier. Default `(4096, 4096)`.
        dropout: dropout rate after the hidden dense layers (the paper's 0.5; inactive at
            inference, so outputs match keras.applications').
        head_pooling: `None` (flatten the feature map: needs a static input size), or
            `"adaptive_avg"`/`"adaptive_max"`: adaptive pooling to 7x7 before flattening (as
            torchvision's VGG), so any input size gives the full-size classifier.

    Input shape:
        `(batch, height, width, 3)` (channels last).

    Output shape:
        `(batch, classes)` with the top; otherwise the pooled features or the feature map.

    Example:

    >>> model = VGG(11, include_top=False, input_shape=(32, 32, 3), pooling="avg")
    >>> model.output_shape
    (None, 512)
    """
    check_choices(depth=(depth, tuple(VGG_CONFIGS)))
    if norm is None and batch_norm:
        norm = "batch"
    if name is None:
        name = f"vgg{depth}_bn" if norm is not None else f"vgg{depth}"
    return plain_network(
        vgg_table(depth),
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name,
        default_shape=(224, 224, 3),
        fc_units=fc_units,
        head_size=(7, 7),
        head_pooling=head_pooling,
        dropout=dropout,
        activation=activation,
        norm=norm,
        pool_type=pool_type,
        width_multiplier=width_multiplier,
    )


def _vgg(depth, configuration):
    return named_variant(
        VGG,
        f"VGG{depth}",
        f"VGG-{depth}: configuration {configuration} of Simonyan and Zisserman (2014).",
        fixed={"depth": depth},
    )


VGG11 = _vgg(11, "A")
VGG13 = _vgg(13, "B")
VGG16 = _vgg(16, "D")
VGG19 = _vgg(19, "E")
