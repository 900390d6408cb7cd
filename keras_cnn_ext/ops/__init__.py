"""Pure TensorFlow ops: XLA-safe, no Keras state."""

from keras_cnn_ext.ops.adaptive_pool import adaptive_avg_pool2d, adaptive_max_pool2d  # noqa: F401
from keras_cnn_ext.ops.attention import (  # noqa: F401
    channel_attention,
    eca_kernel_size,
    efficient_channel_attention,
    reduced_channels,
    spatial_attention,
    squeeze_excitation,
)
from keras_cnn_ext.ops.drop_path import drop_path, drop_path_rates  # noqa: F401
from keras_cnn_ext.ops.dropblock import drop_block_2d, dropblock_gamma  # noqa: F401
from keras_cnn_ext.ops.erasing import box_mask, cutout, random_erasing  # noqa: F401
from keras_cnn_ext.ops.fractional_max_pool import (  # noqa: F401
    fractional_max_pool2d,
    fractional_output_size,
    fractional_pooling_sequence,
)
from keras_cnn_ext.ops.group_conv import (  # noqa: F401
    expand_filter_bank,
    group_conv2d,
    group_pool,
    transform_group_map,
    transform_image,
)
from keras_cnn_ext.ops.grouped_conv import grouped_conv2d  # noqa: F401
from keras_cnn_ext.ops.local_response_norm import local_response_normalization  # noqa: F401
