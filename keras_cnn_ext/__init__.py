"""keras_cnn_ext: convolutional-network extensions for Keras 3 on TensorFlow."""

__version__ = "0.1.0"

from keras_cnn_ext import (
    layers,  # noqa: E402,F401
    ops,  # noqa: E402,F401
)
