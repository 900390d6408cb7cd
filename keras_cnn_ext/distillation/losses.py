"""Distillation losses: numerically stable logits distillation, feature distillation, attention
transfer.

The classes extend Keras' own `keras.distillation.DistillationLoss` family, so each one also
drops into `keras.distillation.Distiller`; `Distillation` (in `trainer.py`) plugs the same
objects into the student's own `fit`. Every loss reduces per sample first, then like a Keras
loss with `reduction="sum_over_batch_size"`: `sample_weight` multiplies the per-sample values,
the sum is divided by the batch size, and under `tf.distribute` the result is divided by the
number of replicas (so that summing replica gradients gives the global mean, as Keras' losses
do).
"""

from __future__ import annotations

import numbers

import keras
import tensorflow as tf
from keras import ops

from keras_cnn_ext.utils import normalize_data_format

INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area")


def _positive_number(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"`{name}` must be a positive number. Received: {name}={value!r}")
    return float(value)


def _non_negative_number(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
        raise ValueError(f"`{name}` must be a non-negative number. Received: {name}={value!r}")
    return float(value)


def _layer_name(value, name):
    if not isinstance(value, str) or not value:
        raise ValueError(
            f"`{name}` must be the name of a layer of the model (a non-empty string). "
            f"Received: {name}={value!r}"
        )
    return value


def _interpolation(value):
    if value not in INTERPOLATIONS:
        raise ValueError(f"`interpolation` must be one of {INTERPOLATIONS}. Received: {value!r}")
    return value


def _float32(x):
    return ops.cast(x, "float32")


def reduce_per_sample(values, sample_weight=None):
    """Reduces per-sample loss values `(batch,)` like a Keras loss (`"sum_over_batch_size"`).

    `sample_weight` (shape `(batch,)` or `(batch, 1)`) multiplies the values; the weighted sum
    is divided by the batch size, and under `tf.distribute` by the number of replicas in sync.
    """
    values = _float32(values)
    if sample_weight is not None:
        weights = ops.reshape(_float32(sample_weight), (-1,))
        values = values * weights
    batch = ops.cast(ops.shape(values)[0], "float32")
    loss = ops.divide_no_nan(ops.sum(values), batch)
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas > 1:
        loss = loss / float(replicas)
    return loss


def distillation_kl_divergence(teacher_logits, student_logits, temperature=1.0):
    """Per-sample `tau^2 * KL(softmax(z_t / tau) || softmax(z_s / tau))` over the last axis.

    Computed from log-softmax in float32 (also for float16/bfloat16 logits), so that logits of
    +-1e4 at `tau = 0.5` give finite values and gradients: a probability that underflows to 0
    multiplies a finite log-ratio instead of `log(0)`. The `tau^2` factor keeps the gradient
    scale independent of the temperature (Hinton, Vinyals and Dean, "Distilling the Knowledge
    in a Neural Network", 2015).

    Args:
        teacher_logits: the teacher's logits, `(..., classes)`.
        student_logits: the student's logits, the same shape.
        temperature: a positive number or scalar tensor, `tau`.

    Returns:
        A float32 tensor of the leading shape (one value per sample).

    Example:

    >>> z = np.array([[1e4, -1e4, 0.0]])
    >>> value = distillation_kl_divergence(z, -z, temperature=0.5)
    >>> tuple(value.shape), bool(np.isfinite(value).all() and value[0] > 0)
    ((1,), True)
    """
    tau = _float32(temperature)
    log_p_teacher = ops.log_softmax(_float32(teacher_logits) / tau, axis=-1)
    log_p_student = ops.log_softmax(_float32(student_logits) / tau, axis=-1)
    kl = ops.sum(ops.exp(log_p_teacher) * (log_p_teacher - log_p_student), axis=-1)
    return tau * tau * kl


def _cross_entropy(y_true, logits):
    """Per-sample cross-entropy from logits: integer labels, or one-hot/probability targets."""
    log_p = ops.log_softmax(_float32(logits), axis=-1)
    y_true = ops.convert_to_tensor(y_true)
    if len(y_true.shape) == len(log_p.shape):
        if y_true.shape[-1] == 1 and log_p.shape[-1] != 1:
            y_true = ops.squeeze(y_true, axis=-1)
        else:
            return -ops.sum(_float32(y_true) * log_p, axis=-1)
    labels = ops.expand_dims(ops.cast(y_true, "int32"), -1)
    return -ops.squeeze(ops.take_along_axis(log_p, labels, axis=-1), -1)


def knowledge_distillation_loss(
    y_true, student_logits, teacher_logits, alpha=0.5, temperature=4.0, sample_weight=None
):
    """`alpha * CE(y, z_s) + (1 - alpha) * tau^2 * KL(softmax(z_t/tau) || softmax(z_s/tau))`.

    The cross-entropy uses the student's logits at temperature 1; both terms come from
    log-softmax (stable for any finite logits). The result is reduced like a Keras loss; see
    `reduce_per_sample`.

    Args:
        y_true: integer labels `(batch,)` (or `(batch, 1)`), or one-hot / probability targets
            `(batch, classes)`.
        student_logits: `(batch, classes)`.
        teacher_logits: `(batch, classes)`.
        alpha: weight of the label term, in [0, 1]. Default 0.5.
        temperature: `tau > 0`. Default 4.
        sample_weight: optional `(batch,)` weights.

    Returns:
        A float32 scalar.

    Example:

    >>> y = np.array([0, 1]); z_s = np.zeros((2, 3)); z_t = np.zeros((2, 3))
    >>> round(float(knowledge_distillation_loss(y, z_s, z_t, alpha=1.0)), 4)  # log(3)
    1.0986
    """
    values = alpha * _cross_entropy(y_true, student_logits) + (
        1.0 - alpha
    ) * distillation_kl_divergence(teacher_logits, student_logits, temperature)
    return reduce_per_sample(values, sample_weight)


def attention_map(features, p=2, data_format=None):
    """Spatial attention `mean_c |A_c|^p` of a feature map, `(batch, height, width)`, float32.

    Zagoruyko and Komodakis, "Paying More Attention to Attention", ICLR 2017 (their code takes
    the mean over channels of the squared activations, `p = 2`).
    """
    data_format = normalize_data_format(data_format)
    axis = -1 if data_format == "channels_last" else 1
    return ops.mean(ops.power(ops.abs(_float32(features)), p), axis=axis)


def _l2_normalize_map(maps):
    flat = ops.reshape(maps, (ops.shape(maps)[0], -1))
    norm = ops.sqrt(ops.maximum(ops.sum(flat * flat, axis=-1, keepdims=True), 1e-24))
    return ops.reshape(flat / norm, ops.shape(maps))


def _spatial_shape(shape, data_format):
    return tuple(shape[1:3]) if data_format == "channels_last" else tuple(shape[2:4])


def _channels(shape, data_format):
    return shape[-1] if data_format == "channels_last" else shape[1]


def _resize(images, size, interpolation, data_format):
    """Resizes a rank-4 map to `size` when it differs (gradients flow through the resize)."""
    current = _spatial_shape(images.shape, data_format)
    if tuple(current) == tuple(size):
        return images
    return ops.image.resize(
        images, size, interpolation=interpolation, antialias=False, data_format=data_format
    )


def _unreduced(loss_fn, y_true, y_pred):
    """Per-sample values of a Keras loss: the loss's `call`, then a mean over non-batch axes."""
    fn = loss_fn.call if isinstance(loss_fn, keras.losses.Loss) else loss_fn
    values = _float32(fn(y_true, y_pred))
    if len(values.shape) > 1:
        values = ops.mean(ops.reshape(values, (ops.shape(values)[0], -1)), axis=-1)
    return values


def find_layer(model, name, role):
    """`model.get_layer(name)`, or a ValueError naming `{role}_layer_name` and the layers."""
    try:
        return model.get_layer(name=name)
    except ValueError:
        names = [layer.name for layer in model.layers]
        raise ValueError(
            f"`{role}_layer_name` must name a layer of the {role}. Received: {name!r}; the "
            f"{role} has {names}"
        ) from None


class _LayerPairMixin:
    """Shared parts of the losses that compare one teacher layer with one student layer."""

    def validate_model_compatibility(self, teacher, student):
        find_layer(teacher, self.teacher_layer_name, "teacher")
        find_layer(student, self.student_layer_name, "student")

    def _check_feature_shape(self, shape, role):
        if len(shape) != 4:
            raise ValueError(
                f"{type(self).__name__} compares rank-4 feature maps; the {role} layer "
                f"{getattr(self, role + '_layer_name')!r} outputs shape {tuple(shape)}"
            )

    def build_adapter(self, student_shape, teacher_shape):
        """The trainable layer applied to the student's feature first, or `None`."""
        return None

    def student_target(self, features, adapter, teacher_target_shape):
        raise NotImplementedError

    def teacher_target(self, features):
        raise NotImplementedError

    def teacher_target_shape(self, teacher_shape):
        raise NotImplementedError


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class LogitsDistillation(keras.distillation.LogitsDistillation):
    """Logits distillation, `tau^2 * KL(softmax(z_t / tau) || softmax(z_s / tau))`, stable.

    A drop-in replacement for `keras.distillation.LogitsDistillation(loss="kl_divergence")`:
    the same value where Keras' is accurate, but computed from log-softmax, so that large
    logits (or a low temperature) give no NaN (Keras clips probabilities at 1e-7 instead), and
    with `sample_weight` respected. `teacher_classes` lets a student with fewer classes learn
    from a subset of the teacher's outputs.

    Args:
        temperature: `tau > 0`. Default 3 (Keras' default).
        teacher_classes: `None` (teacher and student have the same classes), or a list of
            teacher output indices, one per student class, in the student's class order.

    Example:

    >>> loss = LogitsDistillation(temperature=2.0)
    >>> z = np.array([[2.0, 0.0, -1.0]])
    >>> round(float(loss.compute_loss(z, z)), 6)
    0.0
    """

    def __init__(self, temperature=3.0, teacher_classes=None):
        temperature = _positive_number(temperature, "temperature")
        super().__init__(temperature=temperature, loss="kl_divergence")
        if teacher_classes is not None:
            if isinstance(teacher_classes, (str, bytes)) or not all(
                isinstance(i, numbers.Integral) and not isinstance(i, bool) and i >= 0
                for i in teacher_classes
            ):
                raise ValueError(
                    "`teacher_classes` must be None or a list of non-negative teacher output "
                    f"indices, one per student class. Received: {teacher_classes!r}"
                )
            teacher_classes = [int(i) for i in teacher_classes]
            if not teacher_classes:
                raise ValueError("`teacher_classes` must not be empty. Received: []")
        self.teacher_classes = teacher_classes

    def validate_outputs(self, teacher_outputs, student_outputs):
        teacher_classes = teacher_outputs.shape[-1]
        student_classes = student_outputs.shape[-1]
        expected = teacher_classes if self.teacher_classes is None else len(self.teacher_classes)
        if None not in (expected, student_classes) and expected != student_classes:
            raise ValueError(
                f"The student has {student_classes} classes and the teacher {teacher_classes}: "
                "pass `teacher_classes` (a teacher output index for each student class) to "
                f"distil from a subset. Received: teacher_classes={self.teacher_classes!r}"
            )
        if self.teacher_classes is not None and teacher_classes is not None:
            if max(self.teacher_classes) >= teacher_classes:
                raise ValueError(
                    f"`teacher_classes` indices must be < {teacher_classes} (the teacher's "
                    f"classes). Received: {self.teacher_classes!r}"
                )

    def select_teacher_classes(self, teacher_logits):
        if self.teacher_classes is None:
            return teacher_logits
        return ops.take(teacher_logits, self.teacher_classes, axis=-1)

    def compute_loss(
        self, teacher_outputs, student_outputs, sample_weight=None, temperature=None, **kwargs
    ):
        """The reduced loss; `temperature` (a tensor) overrides the configured one."""
        temperature = self.temperature if temperature is None else temperature
        teacher_logits = self.select_teacher_classes(teacher_outputs)
        values = distillation_kl_divergence(teacher_logits, student_outputs, temperature)
        return reduce_per_sample(values, sample_weight)

    def get_config(self):
        return {"temperature": self.temperature, "teacher_classes": self.teacher_classes}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class FeatureDistillation(_LayerPairMixin, keras.distillation.FeatureDistillation):
    """Feature distillation between CNN feature maps (FitNets' hint loss), with adaptation.

    Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015: the student's feature map
    goes through a trainable 1x1 convolution to the teacher's channel count, and the loss (MSE
    by default) compares it with the teacher's. Here the 1x1 projector is added automatically
    when the channel counts differ (`projection="auto"`), and the student's map is resized to
    the teacher's height and width when those differ. Keras' `FeatureDistillation` has neither
    (its features must have equal shapes, checked only at fit time).

    Args:
        loss: a Keras loss identifier or instance comparing `(teacher, student)` features.
            Default `"mse"`.
        teacher_layer_name: name of the teacher layer whose output is the target.
        student_layer_name: name of the student layer whose output is matched.
        weight: the term's weight in the total loss. Default 1.
        projection: `"auto"` (a 1x1 convolution without bias when channels differ), `"always"`,
            or `None` (channel counts must then be equal).
        interpolation: how the student's map is resized, one of `"bilinear"` (default),
            `"nearest"`, `"bicubic"`, `"area"`.
        data_format: `"channels_last"` or `"channels_first"`; default Keras' image data format.

    Example:

    >>> term = FeatureDistillation(teacher_layer_name="t_conv2", student_layer_name="s_conv2")
    >>> term.weight
    1.0
    """

    PROJECTIONS = ("auto", "always", None)

    def __init__(
        self,
        loss="mse",
        teacher_layer_name=None,
        student_layer_name=None,
        weight=1.0,
        projection="auto",
        interpolation="bilinear",
        data_format=None,
    ):
        super().__init__(
            loss=loss,
            teacher_layer_name=_layer_name(teacher_layer_name, "teacher_layer_name"),
            student_layer_name=_layer_name(student_layer_name, "student_layer_name"),
        )
        if isinstance(self.loss, (list, tuple, dict)):
            raise ValueError(
                f"`loss` must be one Keras loss for one pair of feature maps. Received: {loss!r}"
            )
        self._loss_config = loss if isinstance(loss, str) else keras.losses.serialize(loss)
        self.weight = _non_negative_number(weight, "weight")
        if projection not in self.PROJECTIONS:
            raise ValueError(
                f"`projection` must be one of {self.PROJECTIONS}. Received: {projection!r}"
            )
        self.projection = projection
        self.interpolation = _interpolation(interpolation)
        self.data_format = normalize_data_format(data_format)

    def build_adapter(self, student_shape, teacher_shape):
        self._check_feature_shape(student_shape, "student")
        self._check_feature_shape(teacher_shape, "teacher")
        s_channels = _channels(student_shape, self.data_format)
        t_channels = _channels(teacher_shape, self.data_format)
        if self.projection == "always" or (self.projection == "auto" and s_channels != t_channels):
            return keras.layers.Conv2D(
                t_channels,
                1,
                use_bias=False,
                data_format=self.data_format,
                name=f"projector_{self.student_layer_name}_to_{self.teacher_layer_name}",
            )
        if s_channels != t_channels:
            raise ValueError(
                f"The student layer {self.student_layer_name!r} has {s_channels} channels and "
                f"the teacher layer {self.teacher_layer_name!r} {t_channels}; with "
                "`projection=None` they must be equal. Use `projection='auto'`."
            )
        return None

    def teacher_target(self, features):
        return _float32(features)

    def teacher_target_shape(self, teacher_shape):
        return tuple(teacher_shape[1:])

    def student_target(self, features, adapter, teacher_target_shape):
        if adapter is not None:
            features = adapter(features)
        size = (
            teacher_target_shape[0:2]
            if self.data_format == "channels_last"
            else teacher_target_shape[1:3]
        )
        return _resize(_float32(features), size, self.interpolation, self.data_format)

    def compute_loss(self, teacher_outputs, student_outputs, sample_weight=None, **kwargs):
        """The reduced loss between the teacher's and the (adapted) student's features."""
        values = _unreduced(self.loss, _float32(teacher_outputs), _float32(student_outputs))
        return reduce_per_sample(values, sample_weight)

    def get_config(self):
        return {
            "loss": self._loss_config,
            "teacher_layer_name": self.teacher_layer_name,
            "student_layer_name": self.student_layer_name,
            "weight": self.weight,
            "projection": self.projection,
            "interpolation": self.interpolation,
            "data_format": self.data_format,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if not isinstance(config["loss"], str):
            config["loss"] = keras.losses.deserialize(config["loss"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class AttentionTransfer(_LayerPairMixin, keras.distillation.DistillationLoss):
    """Activation-based attention transfer (Zagoruyko and Komodakis, ICLR 2017).

    Each feature map becomes a spatial attention map `Q = mean_c |A_c|^p`, flattened and
    L2-normalised per sample; the term is the mean over positions of `(Q_s - Q_t)^2`, as in
    the paper's code (`at_loss`), which weights the sum of such terms by `beta / 2` with
    `beta = 1000`, the default `weight` here. Channel counts may differ (the map averages over
    channels); when the spatial sizes differ, the student's map is resized to the teacher's
    before normalisation.

    Args:
        teacher_layer_name: name of the teacher layer.
        student_layer_name: name of the student layer.
        weight: the term's weight in the total loss. Default 500 (`beta / 2`).
        p: the power in `|A|^p`. Default 2.
        interpolation: how the student's map is resized, one of `"bilinear"` (default),
            `"nearest"`, `"bicubic"`, `"area"`.
        data_format: `"channels_last"` or `"channels_first"`; default Keras' image data format.

    Example:

    >>> term = AttentionTransfer("t_conv2", "s_conv2")
    >>> maps = term.teacher_target(np.ones((1, 4, 4, 3)))
    >>> tuple(maps.shape), round(float(np.sum(np.square(maps))), 4)
    ((1, 4, 4), 1.0)
    """

    def __init__(
        self,
        teacher_layer_name=None,
        student_layer_name=None,
        weight=500.0,
        p=2,
        interpolation="bilinear",
        data_format=None,
    ):
        self.teacher_layer_name = _layer_name(teacher_layer_name, "teacher_layer_name")
        self.student_layer_name = _layer_name(student_layer_name, "student_layer_name")
        self.weight = _non_negative_number(weight, "weight")
        self.p = _positive_number(p, "p")
        self.interpolation = _interpolation(interpolation)
        self.data_format = normalize_data_format(data_format)

    def build_adapter(self, student_shape, teacher_shape):
        self._check_feature_shape(student_shape, "student")
        self._check_feature_shape(teacher_shape, "teacher")
        return None

    def teacher_target(self, features):
        return _l2_normalize_map(attention_map(features, self.p, self.data_format))

    def teacher_target_shape(self, teacher_shape):
        return _spatial_shape(teacher_shape, self.data_format)

    def student_target(self, features, adapter, teacher_target_shape):
        maps = attention_map(features, self.p, self.data_format)[..., None]
        maps = _resize(maps, tuple(teacher_target_shape), self.interpolation, "channels_last")
        return _l2_normalize_map(maps[..., 0])

    def compute_loss(self, teacher_outputs, student_outputs, sample_weight=None, **kwargs):
        """The reduced loss between two (normalised) attention maps."""
        if len(teacher_outputs.shape) == 4:  # raw feature maps, e.g. from keras' Distiller
            teacher_outputs = self.teacher_target(teacher_outputs)
            student_outputs = self.student_target(
                student_outputs, None, tuple(teacher_outputs.shape[1:3])
            )
        diff = _float32(student_outputs) - _float32(teacher_outputs)
        values = ops.mean(ops.reshape(diff * diff, (ops.shape(diff)[0], -1)), axis=-1)
        return reduce_per_sample(values, sample_weight)

    def get_config(self):
        return {
            "teacher_layer_name": self.teacher_layer_name,
            "student_layer_name": self.student_layer_name,
            "weight": self.weight,
            "p": self.p,
            "interpolation": self.interpolation,
            "data_format": self.data_format,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
