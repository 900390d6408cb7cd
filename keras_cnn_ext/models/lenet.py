"""LeNet-5 (LeCun et al., 1998), classic and modern forms."""

from __future__ import annotations

from keras_cnn_ext.models.inputs import check_choices
from keras_cnn_ext.models.plain import Conv, Pool, plain_network
from keras_cnn_ext.models.registry import register_builder

# The feature extractor: C1 6@5x5, S2, C3 16@5x5, S4 (full C1-C3 connections, as most modern
# reimplementations; the paper's partial C3 connection table had 1,516 weights in C3, not 2,416).
LENET5_TABLE = (Conv(6, 5, padding="valid"), Pool(2, 2), Conv(16, 5, padding="valid"), Pool(2, 2))
LENET5_FC = (120, 84)
LENET5_VARIANTS = {
    # The paper's squashing function and subsampling (average pooling; the paper's S-layers
    # also had a trainable coefficient and bias, which modern "classic" versions drop).
    "classic": {"activation": "tanh", "pool_type": "avg"},
    "modern": {"activation": "relu", "pool_type": "max"},
}


@register_builder("lenet5", "lenet")
def LeNet5(
    variant="classic",
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    name="lenet5",
    *,
    padding="valid",
    activation=None,
    pool_type=None,
    norm=None,
    width_multiplier=1.0,
    dropout=0.0,
    head_pooling=None,
):
    """Builds LeNet-5: conv 6@5x5 -> pool -> conv 16@5x5 -> pool -> FC120 -> FC84 -> FC`classes`.

    LeCun, Bottou, Bengio and Haffner, "Gradient-based learning applied to document
    recognition" (1998). On its original 32x32x1 input with 10 classes the model has exactly
    **61,706** parameters: C1 156 (5*5*1*6 + 6), C3 2,416 (5*5*6*16 + 16), F5 48,120
    (400*120 + 120), F6 10,164 (120*84 + 84), output 850 (84*10 + 10).

    Args:
        variant: `"classic"` (tanh, average pooling) or `"modern"` (ReLU, max pooling).
        include_top, weights, input_tensor, input_shape, pooling, classes,
            classifier_activation, name: as in `keras.applications`. Default input
            `(32, 32, 1)` with the classifier, `(None, None, 1)` without; 10 classes.
        padding: the first convolution's padding. `"same"` makes a 28x28 (MNIST) input give
            the same 5x5x16 feature map, hence the same 61,706 parameters, as 32x32 with
            `"valid"`. Default `"valid"`.
        activation: overrides the variant's activation (a name, a callable or a layer class).
        pool_type: overrides the variant's pooling (`"max"`, `"avg"` or a layer class).
        norm: normalisation after each convolution (`None` or `"batch"`). Default `None`.
        width_multiplier: scales the convolution filters. Default 1.
        dropout: dropout rate after the hidden dense layers. Default 0.
        head_pooling: `None` (flatten the feature map: needs a static input size), or
            `"adaptive_avg"`/`"adaptive_max"`: adaptive pooling to 5x5 before flattening,
            so any input size gives the same classifier.

    Input shape:
        `(batch, height, width, channels)` (channels last), at least 16x16 with `"valid"`
        padding and 12x12 with `"same"` (an error names the failing stage otherwise).

    Output shape:
        `(batch, classes)` with the top; otherwise the pooled features or the 4D feature map.

    Example:

    >>> model = LeNet5()
    >>> model.count_params()
    61706
    """
    check_choices(variant=(variant, tuple(LENET5_VARIANTS)), padding=(padding, ("valid", "same")))
    config = dict(LENET5_VARIANTS[variant])
    if activation is not None:
        config["activation"] = activation
    if pool_type is not None:
        config["pool_type"] = pool_type
    return plain_network(
        (LENET5_TABLE[0]._replace(padding=padding),) + LENET5_TABLE[1:],
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name,
        default_shape=(32, 32, 1),
        fc_units=LENET5_FC,
        head_size=(5, 5),
        head_pooling=head_pooling,
        dropout=dropout,
        norm=norm,
        width_multiplier=width_multiplier,
        width_divisor=1,
        **config,
    )
