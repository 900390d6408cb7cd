"""Segmentation losses usable directly in `model.compile(loss=...)`.

- Dice: Keras already has it, `keras.losses.Dice` (re-exported here as `Dice`, and `dice`):
  `1 - 2 * sum(y_true * y_pred) / (sum(y_true) + sum(y_pred))` over `axis`; pass
  `axis=(1, 2, 3)` for one value per image (Keras' default `axis=None` pools the whole batch).
  It has no smoothing term: an empty mask predicted empty gives 0/0.
- Soft IoU (Jaccard): `SoftIoULoss` / `soft_iou_loss`, added here.
"""

from __future__ import annotations

import keras
from keras import ops

# Keras' own Dice loss, re-exported so segmentation users find both losses in one place.
Dice = keras.losses.Dice
dice = keras.losses.dice


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
def soft_iou_loss(y_true, y_pred, axis=None, smooth=1e-6):
    """Soft IoU (Jaccard) loss: `1 - (I + smooth) / (U + smooth)`.

    With `I = sum(y_true * y_pred)` and `U = sum(y_true) + sum(y_pred) - I` over `axis`
    (Rahman and Wang, "Optimizing Intersection-Over-Union in Deep Neural Networks for Image
    Segmentation", 2016). For binary `y_true` and `y_pred` it is one minus the IoU; for
    probabilities it is differentiable. `smooth` keeps empty-versus-empty at loss 0 instead
    of 0/0.

    Args:
        y_true: ground-truth masks (binary or one-hot, the shape of `y_pred`).
        y_pred: predicted probabilities (after a sigmoid or softmax).
        axis: the axes summed over. Default `None`: all axes, one value for the batch, as
            `keras.losses.dice`; `(1, 2, 3)` gives one value per image.
        smooth: added to the intersection and the union. Default 1e-6.

    Returns:
        The loss, with the `axis` dimensions reduced.

    Example:

    >>> float(soft_iou_loss([[1.0, 1.0, 0.0]], [[1.0, 0.0, 1.0]], smooth=0.0))
    0.6666666...
    """
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.cast(y_true, y_pred.dtype)
    intersection = ops.sum(y_true * y_pred, axis=axis)
    union = ops.sum(y_true, axis=axis) + ops.sum(y_pred, axis=axis) - intersection
    return 1.0 - (intersection + smooth) / (union + smooth)


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class SoftIoULoss(keras.losses.Loss):
    """Soft IoU (Jaccard) loss, `1 - (I + smooth) / (U + smooth)`; see `soft_iou_loss`.

    Args:
        axis: the axes summed over per loss value. Default `None` (all axes; one value for
            the batch, as `keras.losses.Dice`); `(1, 2, 3)` gives one value per image, which
            `reduction` and `sample_weight` then combine.
        smooth: added to the intersection and the union. Default 1e-6.
        reduction: as for Keras losses. Default `"sum_over_batch_size"`.
        name: the loss's name. Default `"soft_iou"`.
        dtype: the dtype of the computation. Default `keras.backend.floatx()`.

    Example:

    >>> loss = SoftIoULoss(axis=(1, 2, 3), reduction=None)
    >>> y_true = np.ones((2, 4, 4, 1)); y_pred = np.full((2, 4, 4, 1), 0.5)
    >>> np.round(loss(y_true, y_pred), 4)
    array([0.5, 0.5], dtype=float32)
    """

    def __init__(
        self, axis=None, smooth=1e-6, reduction="sum_over_batch_size", name="soft_iou", dtype=None
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if isinstance(smooth, bool) or not isinstance(smooth, (int, float)) or smooth < 0:
            raise ValueError(f"`smooth` must be a non-negative number. Received: smooth={smooth!r}")
        self.axis = tuple(axis) if isinstance(axis, list) else axis
        self.smooth = float(smooth)

    def call(self, y_true, y_pred):
        return soft_iou_loss(y_true, y_pred, axis=self.axis, smooth=self.smooth)

    def get_config(self):
        config = super().get_config()
        config.update({"axis": self.axis, "smooth": self.smooth})
        return config
