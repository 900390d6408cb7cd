"""P4-CNN and P4M-CNN: Cohen & Welling's (2016) rotated-MNIST network on group convolutions."""

from __future__ import annotations

import keras

from keras_cnn_ext.layers.group_batch_normalization import GroupBatchNormalization
from keras_cnn_ext.layers.group_conv import GroupConv2D
from keras_cnn_ext.layers.group_pooling import GroupPooling
from keras_cnn_ext.models.builder import finalize_model, named_variant
from keras_cnn_ext.models.inputs import Downsample, make_inputs, validate_builder_args
from keras_cnn_ext.ops.group_conv import check_group
from keras_cnn_ext.utils import check_positive_int, check_rate, normalize_data_format

# Cohen & Welling (2016), section 8.1: seven layers of 3x3 convolutions (the last 4x4) with
# "valid" padding, max pooling after layer 2, batch normalisation + ReLU after each but the last,
# dropout 0.3. A 28x28 digit gives 26, 24 -> 12 (pool), 10, 8, 6, 4 -> 1 (4x4): every map keeps
# an odd/even-symmetric grid, so the logits are exactly invariant to 90-degree rotations.
GROUP_CNN_TABLE = (("conv", 3), ("conv", 3), ("pool", 2), *(("conv", 3),) * 4)
GROUP_CNN_HEAD_KERNEL = 4
# Fields per layer: 10 for p4 (the paper's P4CNN); p4m doubles the group, so 7 fields keep the
# group-to-group weights (|G| * 9 * F^2: 3,600 for p4, 3,528 for p4m) about the same.
GROUP_CNN_FILTERS = {"p4": 10, "p4m": 7}


def _stages():
    stages = [
        Downsample(f"layer{i + 1}", k, k if kind == "pool" else 1)
        for i, (kind, k) in enumerate(GROUP_CNN_TABLE)
    ]
    return [*stages, Downsample("head", GROUP_CNN_HEAD_KERNEL, 1)]


def GroupCNN(
    group="p4",
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    name=None,
    *,
    filters=None,
    dropout=0.3,
    data_format=None,
):
    """Builds a group-equivariant CNN for small images (Cohen & Welling, 2016, P4CNN).

    Layers: a lifting `GroupConv2D(filters, 3)`, then six group-to-group layers (3x3, the
    last 4x4 with `classes` fields when `include_top`), each but the last followed by
    `GroupBatchNormalization`, ReLU and dropout, max pooling 2x2 after the second layer; the
    classifier pools over the group (`GroupPooling("max")`) and globally over space. All
    convolutions use `"valid"` padding, so on a 28x28 input (MNIST) the logits are exactly
    the same for the four 90-degree rotations of an image (p4m: and its mirror images). On
    other sizes invariance holds when every map keeps a symmetric grid (sizes where the 2x2
    pooling sees an even map: 28, 32, 36, ...).

    Args:
        group: `"p4"` (default) or `"p4m"`.
        include_top, weights, input_tensor, input_shape, pooling, classes,
            classifier_activation, name: as in `keras.applications`; default input
            `(28, 28, 1)`. Without the top the features are the group-pooled (invariant) maps
            of the sixth layer, pooled by `pooling` (`None`, `"avg"`, `"max"`).
        filters: fields per layer; default 10 for p4 (the paper), 7 for p4m (about the same
            number of weights).
        dropout: dropout rate after each hidden layer; default 0.3 (the paper).
        data_format: `"channels_last"` or `"channels_first"`; default Keras' global setting.

    Example:

    >>> model = GroupCNN("p4")
    >>> model.output_shape
    (None, 10)
    >>> model.count_params()
    24740
    """
    group = check_group(group)
    validate_builder_args(
        include_top=include_top, weights=weights, pooling=pooling, classes=classes
    )
    filters = check_positive_int(
        GROUP_CNN_FILTERS[group] if filters is None else filters, "filters"
    )
    dropout = check_rate(dropout, "dropout")
    data_format = normalize_data_format(data_format)
    name = name or f"{group}cnn"
    inputs = make_inputs(
        input_tensor,
        input_shape,
        default_shape=(28, 28, 1),
        stages=_stages(),
        data_format=data_format,
        include_top=include_top,
    )
    x, lifting = inputs, True
    for i, (kind, k) in enumerate(GROUP_CNN_TABLE):
        prefix = f"layer{i + 1}"
        if kind == "pool":
            x = keras.layers.MaxPooling2D(k, data_format=data_format, name=f"{prefix}_pool")(x)
            continue
        x = GroupConv2D(
            filters,
            k,
            group=group,
            lifting=lifting,
            use_bias=False,
            data_format=data_format,
            name=f"{prefix}_conv",
        )(x)
        x = GroupBatchNormalization(group, data_format=data_format, name=f"{prefix}_bn")(x)
        x = keras.layers.ReLU(name=f"{prefix}_relu")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"{prefix}_dropout")(x)
        lifting = False
    global_pools = {
        "avg": keras.layers.GlobalAveragePooling2D,
        "max": keras.layers.GlobalMaxPooling2D,
    }
    if include_top:
        x = GroupConv2D(
            classes,
            GROUP_CNN_HEAD_KERNEL,
            group=group,
            lifting=False,
            data_format=data_format,
            name="head_conv",
        )(x)
        x = GroupPooling(group, "max", data_format=data_format, name="group_pool")(x)
        x = keras.layers.GlobalAveragePooling2D(data_format=data_format, name="avg_pool")(x)
        x = keras.layers.Activation(classifier_activation, dtype="float32", name="predictions")(x)
    else:
        x = GroupPooling(group, "max", data_format=data_format, name="group_pool")(x)
        if pooling is not None:
            x = global_pools[pooling](data_format=data_format, name=f"{pooling}_pool")(x)
    return finalize_model(inputs, x, name=name, weights=weights)


P4CNN = named_variant(
    GroupCNN,
    "P4CNN",
    "Builds Cohen & Welling's P4-CNN (rotated MNIST): exactly invariant to 90-degree rotations.",
    fixed={"group": "p4"},
    default_shape=(28, 28, 1),
    default_name="p4cnn",
)
P4MCNN = named_variant(
    GroupCNN,
    "P4MCNN",
    "Builds a P4M-CNN: Cohen & Welling's rotated-MNIST net, invariant to rotations and flips.",
    fixed={"group": "p4m"},
    default_shape=(28, 28, 1),
    default_name="p4mcnn",
)
