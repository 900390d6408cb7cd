"""AlexNet (Krizhevsky, Sutskever and Hinton, 2012) and its one-GPU variant."""

from __future__ import annotations

from keras_cnn_ext.models.inputs import check_choices
from keras_cnn_ext.models.plain import LRN, Conv, Pool, plain_network
from keras_cnn_ext.models.registry import register_builder

ALEXNET_VARIANTS = {
    # The paper's network (Fig. 2): 96-256-384-384-256 filters; conv2, conv4 and conv5 only see
    # the half of their input that lives on the same GPU, i.e. grouped convolutions with 2
    # groups. 60,965,224 parameters on 227x227x3 with 1000 classes.
    "paper": {
        "table": (
            Conv(96, 11, 4, "valid"),
            LRN(),
            Pool(3, 2),
            Conv(256, 5, groups=2),
            LRN(),
            Pool(3, 2),
            Conv(384, 3),
            Conv(384, 3, groups=2),
            Conv(256, 3, groups=2),
            Pool(3, 2),
        ),
        "default_shape": (227, 227, 3),
    },
    # The same layer list on one device (no groups): 62,378,344 parameters.
    "single": {
        "table": (
            Conv(96, 11, 4, "valid"),
            LRN(),
            Pool(3, 2),
            Conv(256, 5),
            LRN(),
            Pool(3, 2),
            Conv(384, 3),
            Conv(384, 3),
            Conv(256, 3),
            Pool(3, 2),
        ),
        "default_shape": (227, 227, 3),
    },
    # Krizhevsky's "One weird trick" (2014) one-GPU network as torchvision's `alexnet`:
    # 64-192-384-256-256 filters, 61,100,840 parameters on 224x224x3 with 1000 classes.
    "torchvision": {
        "table": (
            Conv(64, 11, 4, 2),
            Pool(3, 2),
            Conv(192, 5, 1, 2),
            Pool(3, 2),
            Conv(384, 3, 1, 1),
            Conv(256, 3, 1, 1),
            Conv(256, 3, 1, 1),
            Pool(3, 2),
        ),
        "default_shape": (224, 224, 3),
    },
}
ALEXNET_FC = (4096, 4096)


@register_builder("alexnet")
def AlexNet(
    variant="paper",
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name="alexnet",
    *,
    norm=None,
    lrn=True,
    activation="relu",
    pool_type="max",
    width_multiplier=1.0,
    fc_units=ALEXNET_FC,
    dropout=0.5,
    head_pooling=None,
):
    """Builds AlexNet: five convolutions, three overlapping 3x3/2 max poolings, three dense layers.

    Krizhevsky, Sutskever and Hinton, "ImageNet Classification with Deep Convolutional Neural
    Networks" (NeurIPS 2012). Parameter counts with 1000 classes on the default input:

    - `"paper"` (227x227x3): **60,965,224**: 96@11x11/4 -> pool -> 256@5x5 (2 groups) -> pool
      -> 384@3x3 -> 384@3x3 (2 groups) -> 256@3x3 (2 groups) -> pool -> FC4096 -> FC4096 ->
      FC1000; the groups are the paper's split over two GPUs.
    - `"single"` (227x227x3): **62,378,344**: the same layers without groups.
    - `"torchvision"` (224x224x3): **61,100,840**: 64-192-384-256-256 filters, the one-GPU
      network of Krizhevsky's "One weird trick" (2014) as in torchvision.

    `"paper"` and `"single"` keep the paper's local response normalisation (Section 3.3; k=2,
    n=5, alpha=1e-4, beta=0.75; `keras_cnn_ext.layers.LocalResponseNormalization`, no
    parameters) after the ReLUs of conv1 and conv2, before their poolings (Section 3.5);
    `lrn=False` drops it. torchvision's network has none. `norm="batch"` adds batch
    normalisation after every convolution.

    Args:
        variant: `"paper"` (default), `"single"` or `"torchvision"`.
        include_top, weights, input_tensor, input_shape, pooling, classes,
            classifier_activation, name: as in `keras.applications`. Other input sizes change
            the flattened feature size and so the first dense layer; at least 67x67 (63x63
            for `"torchvision"`).
        norm: normalisation after each convolution (`None` or `"batch"`). Default `None`.
        lrn: keep the variant's local response normalisation layers. Default True.
        activation: activation after convolutions and hidden dense layers. Default ReLU.
        pool_type: `"max"` (default), `"avg"` or a pooling layer class.
        width_multiplier: scales the convolution filters. Default 1.
        fc_units: the hidden dense layers. Default `(4096, 4096)`.
        dropout: dropout after each hidden dense layer. Default 0.5 (the paper's).
        head_pooling: `None` (flatten the feature map: needs a static input size), or
            `"adaptive_avg"`/`"adaptive_max"`: adaptive pooling to 6x6 before flattening (as
            torchvision's AlexNet), so any input size gives the published parameter count.

    Input shape:
        `(batch, height, width, 3)` (channels last).

    Output shape:
        `(batch, classes)` with the top; otherwise the pooled features or the feature map.

    Example:

    >>> model = AlexNet(include_top=False, input_shape=(67, 67, 3), pooling="avg")
    >>> model.output_shape
    (None, 256)
    """
    check_choices(variant=(variant, tuple(ALEXNET_VARIANTS)))
    config = ALEXNET_VARIANTS[variant]
    return plain_network(
        tuple(e for e in config["table"] if lrn or not isinstance(e, LRN)),
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name,
        default_shape=config["default_shape"],
        fc_units=fc_units,
        head_size=(6, 6),
        head_pooling=head_pooling,
        dropout=dropout,
        activation=activation,
        norm=norm,
        pool_type=pool_type,
        width_multiplier=width_multiplier,
    )
