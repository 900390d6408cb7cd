"""LocalResponseNormalization: AlexNet's cross-channel normalisation."""

from __future__ import annotations

import keras

from keras_cnn_ext.layers.base import Layer
from keras_cnn_ext.ops.local_response_norm import local_response_normalization
from keras_cnn_ext.utils import check_input_rank, check_int, check_number, normalize_data_format


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class LocalResponseNormalization(Layer):
    """Local response normalisation across neighbouring channels (no weights).

    Krizhevsky, Sutskever and Hinton, "ImageNet Classification with Deep Convolutional Neural
    Networks" (2012), Section 3.3: `b_i = a_i / (bias + alpha * sum_j a_j**2)**beta`, the sum
    over the `2 * depth_radius + 1` channels centred on `i` (clipped at the edges). The
    defaults are the paper's (k=2, n=5, alpha=1e-4, beta=0.75). Same arguments and values as
    `tf.nn.local_response_normalization` (alpha not divided by the window size, unlike
    PyTorch's `LocalResponseNorm`). Keras has no such layer.

    Args:
        depth_radius: half-width of the channel window (int >= 0). Default 2.
        bias: the additive constant k (> 0). Default 2.0.
        alpha: the scale of the sum of squares (>= 0). Default 1e-4.
        beta: the exponent (>= 0). Default 0.75.
        data_format: `"channels_last"` or `"channels_first"`; default Keras' global setting.

    Input shape:
        4D tensor `(batch, height, width, channels)` (or channels first).

    Output shape:
        Same as the input.

    Example:

    >>> layer = LocalResponseNormalization()
    >>> tuple(layer(keras.ops.ones((1, 4, 4, 8))).shape)
    (1, 4, 4, 8)
    """

    def __init__(self, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.depth_radius = check_int(depth_radius, "depth_radius", minimum=0)
        # bias > 0 keeps the denominator positive.
        self.bias = check_number(bias, "bias", minimum=0, min_inclusive=False)
        self.alpha = check_number(alpha, "alpha", minimum=0)
        self.beta = check_number(beta, "beta", minimum=0)
        self.data_format = normalize_data_format(data_format)

    def build(self, input_shape):
        check_input_rank(input_shape, 4)
        self.built = True

    def call(self, inputs):
        return local_response_normalization(
            inputs, self.depth_radius, self.bias, self.alpha, self.beta, self.data_format
        )

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "depth_radius": self.depth_radius,
                "bias": self.bias,
                "alpha": self.alpha,
                "beta": self.beta,
                "data_format": self.data_format,
            }
        )
        return config
