"""Multi-class segmentation losses (Dice, Jaccard) and focal loss through Keras' own classes.

`keras_cnn_ext.losses` has the binary/pooled forms (`SoftIoULoss`, Keras' `Dice`, which pools
the whole batch and has no smoothing). The losses here are the per-image, per-class forms used
for multi-class segmentation (Milletari et al. 2016, "V-Net", for Dice; Rahman and Wang 2016
for the soft Jaccard/IoU): for each image and class `c`,

    I_c = sum(y_true[..., c] * y_pred[..., c]),  T_c = sum(y_true[..., c]),  P_c = sum(y_pred[..., c])
    dice_c = (2 I_c + smooth) / (T_c + P_c + smooth)
    jaccard_c = (I_c + smooth) / (T_c + P_c - I_c + smooth)

summed over the spatial axes; the loss of an image is `1 - mean_c(score_c)` (optionally
weighted by `class_weights`), and Keras' `reduction` combines the images. `smooth` (default 1,
as in most segmentation code) softens the score of small regions; a class that is absent and
predicted absent scores 1 (not 0/0) even with `smooth=0`. Labels may be one-hot (`sparse=False`) or integer masks (`sparse=True`);
`from_logits=True` applies a softmax over the class axis (a sigmoid for one channel).

Focal loss (Lin et al. 2017) is Keras' own: `focal_loss("binary")` is
`keras.losses.BinaryFocalCrossentropy`, `focal_loss("categorical")`
`keras.losses.CategoricalFocalCrossentropy`, with the paper's defaults (gamma 2, alpha 0.25).
"""

from __future__ import annotations

import numbers

import keras
from keras import ops


def _ratio(numerator, denominator):
    """`numerator / denominator`, and 1 (a perfect score) where both are 0 (`smooth=0`, a class
    absent and predicted absent); the safe denominator keeps the gradient finite there."""
    empty = ops.equal(denominator, 0.0)
    safe = ops.where(empty, ops.ones_like(denominator), denominator)
    return ops.where(empty, ops.ones_like(numerator), numerator / safe)


class _OverlapLoss(keras.losses.Loss):
    """Shared body of the Dice and Jaccard losses: per-image, per-class overlap scores."""

    def __init__(
        self,
        smooth=1.0,
        from_logits=False,
        sparse=False,
        class_weights=None,
        reduction="sum_over_batch_size",
        name=None,
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if isinstance(smooth, bool) or not isinstance(smooth, numbers.Real) or smooth < 0:
            raise ValueError(f"`smooth` must be a number >= 0. Received: smooth={smooth!r}")
        if class_weights is not None:
            class_weights = [float(w) for w in class_weights]
            if not class_weights or min(class_weights) < 0 or sum(class_weights) <= 0:
                raise ValueError(
                    "`class_weights` must be non-negative numbers with a positive sum. "
                    f"Received: {class_weights!r}"
                )
        self.smooth = float(smooth)
        self.from_logits = bool(from_logits)
        self.sparse = bool(sparse)
        self.class_weights = class_weights

    def _score(self, intersection, sum_true, sum_pred):
        raise NotImplementedError

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        classes = y_pred.shape[-1]
        if self.from_logits:
            y_pred = ops.sigmoid(y_pred) if classes == 1 else ops.softmax(y_pred, axis=-1)
        if self.sparse:
            y_true = ops.convert_to_tensor(y_true)
            if len(y_true.shape) == len(y_pred.shape):
                y_true = ops.squeeze(y_true, axis=-1)
            y_true = ops.one_hot(ops.cast(y_true, "int32"), max(classes, 2))
            if classes == 1:
                y_true = y_true[..., 1:]
        y_true = ops.cast(y_true, y_pred.dtype)
        axes = tuple(range(1, len(y_pred.shape) - 1))
        intersection = ops.sum(y_true * y_pred, axis=axes)
        score = self._score(intersection, ops.sum(y_true, axis=axes), ops.sum(y_pred, axis=axes))
        if self.class_weights is None:
            return 1.0 - ops.mean(score, axis=-1)
        if len(self.class_weights) != classes:
            raise ValueError(
                f"`class_weights` has {len(self.class_weights)} entries for {classes} classes."
            )
        weights = ops.convert_to_tensor(self.class_weights, dtype=score.dtype)
        return 1.0 - ops.sum(score * weights, axis=-1) / ops.sum(weights)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "smooth": self.smooth,
                "from_logits": self.from_logits,
                "sparse": self.sparse,
                "class_weights": self.class_weights,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class DiceLoss(_OverlapLoss):
    """Soft Dice loss per image and class: `1 - mean_c (2 I_c + s) / (T_c + P_c + s)`.

    See this module's docstring for the definition (Milletari et al. 2016).

    Args:
        smooth: added to numerator and denominator. Default 1.
        from_logits: apply a softmax (sigmoid for one channel) to `y_pred`. Default False.
        sparse: `y_true` holds integer class masks instead of one-hot. Default False.
        class_weights: optional per-class weights of the mean. Default None (equal).
        reduction, name, dtype: as for Keras losses. Default name `"dice_loss"`.

    Example:

    >>> import numpy as np
    >>> y_true = np.array([[[0, 1], [1, 1]]])  # one 2x2 mask, classes 0/1
    >>> y_pred = np.eye(2)[np.array([[[0, 1], [1, 0]]])]  # one-hot, one pixel wrong
    >>> round(float(DiceLoss(smooth=0.0, sparse=True)(y_true, y_pred)), 4)
    0.2667
    """

    def __init__(self, smooth=1.0, from_logits=False, sparse=False, class_weights=None, **kw):
        kw.setdefault("name", "dice_loss")
        super().__init__(smooth, from_logits, sparse, class_weights, **kw)

    def _score(self, intersection, sum_true, sum_pred):
        return _ratio(2.0 * intersection + self.smooth, sum_true + sum_pred + self.smooth)


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class JaccardLoss(_OverlapLoss):
    """Soft Jaccard (IoU) loss per image and class: `1 - mean_c (I_c + s) / (U_c + s)`.

    `U_c = T_c + P_c - I_c`; see this module's docstring (Rahman and Wang 2016). For one class
    and `smooth` -> 0 it equals `keras_cnn_ext.losses.SoftIoULoss(axis=(1, 2, 3))`.

    Args: as `DiceLoss`. Default name `"jaccard_loss"`.

    Example:

    >>> import numpy as np
    >>> y_true = np.array([[[0, 1], [1, 1]]])
    >>> y_pred = np.eye(2)[np.array([[[0, 1], [1, 0]]])]
    >>> round(float(JaccardLoss(smooth=0.0, sparse=True)(y_true, y_pred)), 4)
    0.4167
    """

    def __init__(self, smooth=1.0, from_logits=False, sparse=False, class_weights=None, **kw):
        kw.setdefault("name", "jaccard_loss")
        super().__init__(smooth, from_logits, sparse, class_weights, **kw)

    def _score(self, intersection, sum_true, sum_pred):
        union = sum_true + sum_pred - intersection
        return _ratio(intersection + self.smooth, union + self.smooth)


FOCAL_KINDS = ("binary", "categorical")


def focal_loss(kind="categorical", gamma=2.0, alpha=0.25, from_logits=False, **kwargs):
    """Keras' own focal loss (Lin et al. 2017) for `kind` `"binary"` or `"categorical"`.

    Returns `keras.losses.BinaryFocalCrossentropy` (with `apply_class_balancing=True`, so that
    `alpha` weighs the positives as in the paper) or `keras.losses.CategoricalFocalCrossentropy`.
    Extra keywords go to the Keras class (`label_smoothing`, `reduction`, ...).
    """
    if kind == "binary":
        return keras.losses.BinaryFocalCrossentropy(
            apply_class_balancing=True, alpha=alpha, gamma=gamma, from_logits=from_logits, **kwargs
        )
    if kind == "categorical":
        return keras.losses.CategoricalFocalCrossentropy(
            alpha=alpha, gamma=gamma, from_logits=from_logits, **kwargs
        )
    raise ValueError(f"`kind` must be one of {FOCAL_KINDS}. Received: {kind!r}")
