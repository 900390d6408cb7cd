"""Adaptive average and max pooling layers (PyTorch's bins) that work for every size."""

from __future__ import annotations

import keras

from keras_cnn_ext.layers.base import Layer
from keras_cnn_ext.ops.adaptive_pool import adaptive_avg_pool2d, adaptive_max_pool2d
from keras_cnn_ext.utils import check_input_rank, normalize_data_format, normalize_tuple

_ARGS_AND_SHAPES = """\
    Args:
        output_size: int or tuple `(height, width)` of the output; a `None` entry keeps that
            input size (as in torch).
        data_format: `"channels_last"` or `"channels_first"`. Defaults to Keras'
            `image_data_format()` (usually `"channels_last"`).

    Input shape:
        4D tensor `(batch, height, width, channels)` (channels_last) or
        `(batch, channels, height, width)` (channels_first); height/width may be `None`.

    Output shape:
        `(batch, out_height, out_width, channels)` or `(batch, channels, out_height, out_width)`.
"""


class BaseAdaptivePooling2D(Layer):
    """Shared argument handling of the adaptive 2-D pooling layers; subclasses set `_pool`."""

    _pool = None

    def __init__(self, output_size, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.output_size = normalize_tuple(
            output_size, 2, "output_size", minimum=1, allow_none=True
        )
        self.data_format = normalize_data_format(data_format)

    def _spatial_axes(self):
        return (1, 2) if self.data_format == "channels_last" else (2, 3)

    def build(self, input_shape):
        check_input_rank(input_shape, 4)
        for axis in self._spatial_axes():
            if input_shape[axis] == 0:
                raise ValueError(
                    "The height and width of the input of adaptive pooling must be positive. "
                    f"Received input shape: {tuple(input_shape)}"
                )

    def call(self, inputs):
        return self._pool(inputs, self.output_size, data_format=self.data_format)

    def compute_output_shape(self, input_shape):
        shape = list(check_input_rank(input_shape, 4))
        for axis, size in zip(self._spatial_axes(), self.output_size, strict=True):
            if size is not None:
                shape[axis] = size
        return tuple(shape)

    def get_config(self):
        return {
            **super().get_config(),
            "output_size": self.output_size,
            "data_format": self.data_format,
        }


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class AdaptiveAveragePooling2D(BaseAdaptivePooling2D):
    __doc__ = f"""Adaptive average pooling to a fixed spatial size, for any input size.

    Each output cell averages one bin of PyTorch's adaptive pooling: along an axis of length `n`
    pooled to `m`, bin `i` spans `[floor(i * n / m), ceil((i + 1) * n / m))`, so bins may overlap
    and `m > n` repeats inputs. Matches `torch.nn.AdaptiveAvgPool2d` and, where it works,
    `keras.layers.AdaptiveAveragePooling2D`; unlike the latter it also works for `(1, 1)` inside
    `tf.function`, for inputs whose height/width is unknown until run time, and under XLA.

{_ARGS_AND_SHAPES}
    Example:

    >>> import numpy as np
    >>> layer = AdaptiveAveragePooling2D((3, 2))
    >>> layer(np.ones((1, 10, 7, 4), "float32")).shape
    TensorShape([1, 3, 2, 4])
    """

    _pool = staticmethod(adaptive_avg_pool2d)


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class AdaptiveMaxPooling2D(BaseAdaptivePooling2D):
    __doc__ = f"""Adaptive max pooling to a fixed spatial size, for any input size.

    Each output cell is the maximum of one bin of PyTorch's adaptive pooling: along an axis of
    length `n` pooled to `m`, bin `i` spans `[floor(i * n / m), ceil((i + 1) * n / m))`. Matches
    `torch.nn.AdaptiveMaxPool2d` (values, and gradients that go to one maximum per bin); unlike
    Keras 3.15's `AdaptiveMaxPooling2D` it works for `(1, 1)` (which crashes there), for
    inputs whose height/width is unknown until run time, and under XLA.

{_ARGS_AND_SHAPES}
    Example:

    >>> import numpy as np
    >>> layer = AdaptiveMaxPooling2D(1)
    >>> layer(np.arange(8, dtype="float32").reshape(1, 2, 4, 1)).numpy().ravel()
    array([7.], dtype=float32)
    """

    _pool = staticmethod(adaptive_max_pool2d)
