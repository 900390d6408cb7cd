"""Keras 3 layers, each a thin wrapper over `keras_cnn_ext.ops`."""

from keras_cnn_ext.layers.adaptive_pooling import (  # noqa: E402,F401
    AdaptiveAveragePooling2D,
    AdaptiveMaxPooling2D,
)
from keras_cnn_ext.layers.attention import ATTENTION_LAYERS, create_attention  # noqa: E402,F401
from keras_cnn_ext.layers.augmentation import (  # noqa: E402,F401
    AUGMENTATION_PRESETS,
    augmentation_preset,
)
from keras_cnn_ext.layers.cbam import CBAM, ChannelAttention, SpatialAttention  # noqa: E402,F401
from keras_cnn_ext.layers.cutout import Cutout  # noqa: E402,F401
from keras_cnn_ext.layers.dense_block import DenseBlock, TransitionBlock  # noqa: E402,F401
from keras_cnn_ext.layers.drop_path import DropPath, drop_path_rates  # noqa: E402,F401
from keras_cnn_ext.layers.dropblock import DropBlock2D  # noqa: E402,F401
from keras_cnn_ext.layers.efficient_channel_attention import (  # noqa: E402,F401
    EfficientChannelAttention,
)
from keras_cnn_ext.layers.factories import (  # noqa: E402,F401
    create_activation,
    create_norm,
    create_pooling,
)
from keras_cnn_ext.layers.fractional_max_pooling import FractionalMaxPooling2D  # noqa: E402,F401
from keras_cnn_ext.layers.group_batch_normalization import (  # noqa: E402,F401
    GroupBatchNormalization,
)
from keras_cnn_ext.layers.group_conv import GroupConv2D  # noqa: E402,F401
from keras_cnn_ext.layers.group_pooling import GroupPooling  # noqa: E402,F401
from keras_cnn_ext.layers.grouped_conv2d import GroupedConv2D  # noqa: E402,F401
from keras_cnn_ext.layers.local_response_normalization import (  # noqa: E402,F401
    LocalResponseNormalization,
)
from keras_cnn_ext.layers.random_erasing import RandomErasing  # noqa: E402,F401
from keras_cnn_ext.layers.residual_block import ResidualBlock  # noqa: E402,F401
from keras_cnn_ext.layers.schedules import LinearRateSchedule, RateScheduler  # noqa: E402,F401
from keras_cnn_ext.layers.separable_conv_block import SeparableConvBlock  # noqa: E402,F401
from keras_cnn_ext.layers.spatial_dropout import SpatialDropout2D  # noqa: E402,F401
from keras_cnn_ext.layers.squeeze_excitation import SqueezeExcitation  # noqa: E402,F401
