"""Occlusion (Zeiler & Fergus 2014): a gradient-free attribution by sliding a grey patch."""

from __future__ import annotations

import numbers

import numpy as np
import tensorflow as tf

from keras_cnn_ext.interpret.attribution import Attribution
from keras_cnn_ext.utils import normalize_tuple


class Occlusion(Attribution):
    """Score drop when a window of the image is replaced by `baseline`, averaged per pixel.

    Every window position (all channels at once) gives `y_c(x) - y_c(x with the window occluded)`;
    each pixel gets the mean drop over the windows that covered it. Needs no gradients, so it
    checks the gradient methods on any model, and works where gradients are zero or unreliable.

    Args:
        model: a built `keras.Model` returning `(batch, classes)` scores.
        window: window height and width (an int or a pair, default 8).
        strides: steps between windows (default half the window).
        baseline: the value written into the window (default 0.0).
        batch_size, jit_compile, data_format: see `Attribution` (`batch_size` counts occluded
            copies per compiled call).

    Example:

    >>> model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3),
    ...                           keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    >>> Occlusion(model, window=4).attribute(np.ones((2, 8, 8, 1), "float32")).shape
    (2, 8, 8)
    """

    def __init__(self, model, *, window=8, strides=None, baseline=0.0, **kwargs):
        super().__init__(model, **kwargs)
        self.window = normalize_tuple(window, 2, "window", minimum=1)
        self.strides = (
            tuple(max(1, w // 2) for w in self.window)
            if strides is None
            else normalize_tuple(strides, 2, "strides", minimum=1)
        )
        if isinstance(baseline, bool) or not isinstance(baseline, numbers.Real):
            raise TypeError(f"`baseline` must be a number. Received: {baseline!r}")
        self.baseline = float(baseline)

    def _masks(self, height, width):
        """One (height, width) 0/1 mask per window position; windows always fit inside."""
        wh, ww = min(self.window[0], height), min(self.window[1], width)

        def starts(size, window, stride):
            last = size - window
            values = list(range(0, last + 1, stride))
            return values if values[-1] == last else [*values, last]

        masks = []
        for top in starts(height, wh, self.strides[0]):
            for left in starts(width, ww, self.strides[1]):
                mask = np.zeros((height, width), "float32")
                mask[top : top + wh, left : left + ww] = 1
                masks.append(mask)
        return np.stack(masks)

    def _attribute_batch(self, images, indices):
        height, width = self._spatial_shape(images)
        masks = self._masks(height, width)
        coverage = masks.sum(axis=0)
        expand = (slice(None), slice(None), slice(None), None)
        if self.data_format == "channels_first":
            expand = (slice(None), None)
        masks_t = tf.constant(masks[expand])
        reference = self.predict(images)
        maps = []
        for i in range(int(images.shape[0])):
            c = int(indices[i])
            occluded = images[i][None] * (1.0 - masks_t) + self.baseline * masks_t
            scores = np.concatenate([self.predict(chunk)[:, c] for chunk in self._chunks(occluded)])
            drops = reference[i, c] - scores
            maps.append(np.tensordot(drops, masks, axes=1) / coverage)
        return np.stack(maps)
