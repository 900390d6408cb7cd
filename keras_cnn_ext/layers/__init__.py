"""Keras 3 layers, each a thin wrapper over `keras_cnn_ext.ops`."""
from keras_cnn_ext.layers.attention import ATTENTION_LAYERS, create_attention  # noqa: E402,F401
from keras_cnn_ext.layers.cbam import CBAM, ChannelAttention, SpatialAttention  # noqa: E402,F401
from keras_cnn_ext.layers.efficient_channel_attention import (  # noqa: E402,F401
    EfficientChannelAttention,
)
from keras_cnn_ext.layers.squeeze_excitation import SqueezeExcitation  # noqa: E402,F401
