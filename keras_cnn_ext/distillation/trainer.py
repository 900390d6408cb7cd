"""`Distillation`: knowledge distillation inside the student's own `compile`/`fit`.

`Distillation.attach(student)` replaces only the student's training step (an attribute of
that model object, removed again by `detach`): the student keeps its optimizer, compiled
loss and metrics, callbacks and `fit` arguments, runs forward once per step (its chosen
feature maps come out of the same pass), and `student.save()` or `ModelCheckpoint` still
write the student alone. The teacher's outputs come either from the teacher in the step or
from a `TeacherCache` (computed once per dataset).
"""

from __future__ import annotations

import inspect
import numbers
import weakref

import keras
import tensorflow as tf
from keras import ops

from keras_cnn_ext.distillation.losses import (
    AttentionTransfer,
    FeatureDistillation,
    LogitsDistillation,
    find_layer,
)

# Keys of the packed targets that a `TeacherCache` dataset yields in place of `y`.
LABELS_KEY = "_distillation_labels"
TEACHER_KEY = "_distillation_teacher_outputs"
LOGITS_KEY = "logits"

_ATTACHED = weakref.WeakKeyDictionary()  # student -> Distillation


def attached_distillation(model):
    """The `Distillation` attached to `model`, or `None`."""
    return _ATTACHED.get(model)


def split_packed_targets(y):
    """`(labels, teacher_outputs)` from a packed target, or `(y, None)` for a plain one."""
    if isinstance(y, dict) and set(y) == {LABELS_KEY, TEACHER_KEY}:
        return y[LABELS_KEY], y[TEACHER_KEY]
    return y, None


def _check_alpha(alpha):
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 <= alpha <= 1:
        raise ValueError(f"`alpha` must be a number in [0, 1]. Received: alpha={alpha!r}")
    return float(alpha)


def _check_temperature(temperature):
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, numbers.Real)
        or not temperature > 0
    ):
        raise ValueError(
            f"`temperature` must be a positive number. Received: temperature={temperature!r}"
        )
    return float(temperature)


def _single_output(model, role):
    outputs = getattr(model, "outputs", None)
    if outputs is None:
        raise ValueError(
            f"The {role} must be a built Functional or Sequential model (with symbolic inputs "
            f"and outputs); received {type(model).__name__} without `outputs`. Call it on an "
            "`keras.Input` first, or build it as a Functional model."
        )
    if len(outputs) != 1:
        raise ValueError(
            f"Distillation needs a {role} with one output (the class logits). The {role} "
            f"has {len(outputs)} outputs."
        )
    return outputs[0]


def _outputs_probabilities(model):
    """Whether the model's last layer ends in a softmax (then it does not output logits)."""
    layer = model.layers[-1] if model.layers else None
    if isinstance(layer, keras.layers.Softmax):
        return True
    activation = getattr(layer, "activation", None)
    return activation in (keras.activations.softmax, "softmax")


def _clone_optimizer(optimizer):
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    return inner.__class__.from_config(inner.get_config())


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class Distillation:
    """Knowledge distillation that plugs into the student's own `model.fit`.

    The loss of a training step is

    `alpha * L_labels + (1 - alpha) * tau^2 * KL(softmax(z_t / tau) || softmax(z_s / tau))
    + sum_j weight_j * L_j + regularization`

    where `L_labels` is the loss the student was compiled with (with its `sample_weight`),
    `z_t`, `z_s` are the teacher's and student's logits and `L_j` the feature terms
    (`FeatureDistillation`, `AttentionTransfer`). `alpha` and `tau` are variables: the
    `AlphaScheduler` and `TemperatureScheduler` callbacks change them during `fit` without
    retracing. The logs of `fit` gain `student_loss` (`L_labels`), `distillation_loss` (the
    `tau^2 KL` term) and one entry per feature term (unweighted, epoch means).

    Feature terms take their student maps from the same forward pass that gives the logits
    (one student forward per step; `keras.distillation.Distiller` runs the student twice).
    Trainable 1x1 projectors (for channel mismatches) are trained by a copy of the student's
    optimizer and are not part of the student: `student.save()` and `ModelCheckpoint` write
    the student only.

    Args:
        teacher: a trained Functional or Sequential Keras model that outputs logits. It is
            only run in inference mode (`training=False`) and never updated.
        alpha: weight of the student's own (label) loss, in [0, 1]. Default 0.5.
        temperature: the softmax temperature `tau > 0`. Default 4.
        feature_losses: a list of `FeatureDistillation` / `AttentionTransfer` terms (or other
            objects with their interface). Default none.
        teacher_classes: `None`, or one teacher output index per student class, for a student
            that predicts a subset of the teacher's classes.
        projector_optimizer: optimizer (or identifier) for the projectors; default a copy of
            the student's optimizer configuration.

    Example:

    ```python
    kd = Distillation(teacher, alpha=0.1, temperature=4.0)
    student.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(
        from_logits=True), metrics=["accuracy"])
    kd.attach(student)
    cache = kd.cache(x_train, y_train)          # the teacher runs once per image
    student.fit(cache.dataset(batch_size=64), epochs=10, validation_data=(x_val, y_val))
    kd.detach(student)                          # or keep it attached for more fits
    ```
    """

    def __init__(
        self,
        teacher,
        alpha=0.5,
        temperature=4.0,
        feature_losses=None,
        teacher_classes=None,
        projector_optimizer=None,
    ):
        if not isinstance(teacher, keras.Model):
            raise TypeError(
                f"`teacher` must be a keras.Model. Received: {teacher!r} of type {type(teacher)}"
            )
        _single_output(teacher, "teacher")
        if _outputs_probabilities(teacher):
            raise ValueError(
                "`teacher` must output logits, but its last layer applies a softmax. Build the "
                "teacher without the final softmax (e.g. `classifier_activation=None`)."
            )
        self.teacher = teacher
        self.logits_loss = LogitsDistillation(
            temperature=_check_temperature(temperature), teacher_classes=teacher_classes
        )
        if feature_losses is None:
            feature_losses = []
        if not isinstance(feature_losses, (list, tuple)):
            feature_losses = [feature_losses]
        for term in feature_losses:
            if not all(hasattr(term, a) for a in ("teacher_target", "student_target", "weight")):
                raise TypeError(
                    "`feature_losses` must hold FeatureDistillation or AttentionTransfer terms. "
                    f"Received: {term!r} of type {type(term)}"
                )
        self.feature_losses = list(feature_losses)
        self.projector_optimizer = projector_optimizer
        self.alpha = tf.Variable(
            _check_alpha(alpha), trainable=False, dtype="float32", name="alpha"
        )
        self.temperature = tf.Variable(
            self.logits_loss.temperature, trainable=False, dtype="float32", name="temperature"
        )
        self._teacher_extractor = self._extractor(
            teacher, [term.teacher_layer_name for term in self.feature_losses], "teacher"
        )
        self._teacher_function = None
        self.student = None
        self.projectors = {}
        self._saved_methods = {}

    # ------------------------------------------------------------------ teacher side

    @staticmethod
    def _extractor(model, layer_names, role):
        """A Functional model giving `[logits, *features]` in one pass, sharing `model`'s layers."""
        if not layer_names:
            return None
        output = _single_output(model, role)
        features = [find_layer(model, name, role).output for name in layer_names]
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
        return keras.Model(inputs, [output, *features], name=f"{model.name}_features")

    def teacher_outputs(self, x):
        """The teacher's targets for a batch: `{"logits": ..., "<term key>": ...}` (float32).

        Feature terms store what they compare against (the feature map, or the normalised
        attention map); a `TeacherCache` stores exactly this dictionary per sample.
        """
        if self._teacher_extractor is None:
            outputs = [self.teacher(x, training=False)]
        else:
            outputs = self._teacher_extractor(x, training=False)
        result = {LOGITS_KEY: ops.cast(outputs[0], "float32")}
        for key, term, features in zip(
            self.term_keys, self.feature_losses, outputs[1:], strict=True
        ):
            result[key] = term.teacher_target(features)
        return {k: tf.stop_gradient(v) for k, v in result.items()}

    @property
    def term_keys(self):
        """The names of the feature terms in logs and teacher outputs (unique per term)."""
        keys, seen = [], {}
        for term in self.feature_losses:
            if isinstance(term, AttentionTransfer):
                base = "attention_transfer_loss"
            elif isinstance(term, FeatureDistillation):
                base = "feature_loss"
            else:
                base = f"{type(term).__name__.lower()}_loss"
            seen[base] = seen.get(base, 0) + 1
            keys.append(base if seen[base] == 1 else f"{base}_{seen[base]}")
        return keys

    def teacher_function(self):
        """A `tf.function` computing `teacher_outputs` (traced once, for any batch size)."""
        if self._teacher_function is None:
            inputs = self.teacher.inputs
            signature = None
            if len(inputs) == 1:
                spec = tf.TensorSpec((None, *inputs[0].shape[1:]), inputs[0].dtype)
                signature = [spec]
            self._teacher_function = tf.function(
                self.teacher_outputs,
                autograph=False,
                input_signature=signature,
                reduce_retracing=signature is None,
            )
        return self._teacher_function

    def teacher_output_spec(self):
        """`{key: per-sample shape}` of `teacher_outputs`, from the teacher's symbolic shapes."""
        logits_shape = tuple(self.teacher.outputs[0].shape[1:])
        spec = {LOGITS_KEY: logits_shape}
        for key, term in zip(self.term_keys, self.feature_losses, strict=True):
            layer = self.teacher.get_layer(name=term.teacher_layer_name)
            spec[key] = tuple(term.teacher_target_shape(tuple(layer.output.shape)))
        return spec

    # ------------------------------------------------------------------ attach / detach

    def attach(self, student):
        """Makes `student.fit` distil from the teacher; returns `student`.

        Call after `student.compile(...)` (the compiled loss is the label term; compiling
        again keeps the attachment). Only the training step changes: `evaluate`, `predict`,
        `save` and the student's config are untouched.
        """
        if not isinstance(student, keras.Model):
            raise TypeError(
                f"`student` must be a keras.Model. Received: {student!r} of type {type(student)}"
            )
        if self.student is not None and self.student is not student:
            raise ValueError(
                "This Distillation is already attached to another student; detach it first "
                f"or make a new one. Attached: {self.student.name!r}, received: {student.name!r}"
            )
        if attached_distillation(student) not in (None, self):
            raise ValueError(f"Another Distillation is already attached to {student.name!r}.")
        if not student.compiled or student.optimizer is None:
            raise ValueError(
                "Compile the student first (`student.compile(optimizer, loss, metrics)`): its "
                "compiled loss is the label term of distillation and its optimizer trains it."
            )
        if getattr(student, "_compile_loss", None) is None:
            raise ValueError(
                "The student was compiled without a `loss`; distillation needs the label loss "
                "(e.g. `SparseCategoricalCrossentropy(from_logits=True)`)."
            )
        # A subclassed student (no symbolic outputs) can distil logits; its shapes are then
        # checked when the step is traced. Feature terms need its layers' symbolic outputs.
        if self.feature_losses or getattr(student, "outputs", None) is not None:
            output = _single_output(student, "student")
            self.logits_loss.validate_outputs(self.teacher.outputs[0], output)
        if _outputs_probabilities(student):
            raise ValueError(
                "`student` must output logits, but its last layer applies a softmax; build it "
                "without the softmax and compile with a `from_logits=True` loss."
            )
        for term in self.feature_losses:
            term.validate_model_compatibility(self.teacher, student)
        self._student_extractor = self._extractor(
            student, [term.student_layer_name for term in self.feature_losses], "student"
        )
        with student.distribute_strategy.scope():
            self._build_projectors(student)
            self._trackers = {
                name: keras.metrics.Mean(name=name)
                for name in ["student_loss", "distillation_loss", *self.term_keys]
            }
        self.student = student
        self._install(student)
        _ATTACHED[student] = self
        return student

    def _build_projectors(self, student):
        self.projectors = {}
        projector_vars = []
        for key, term in zip(self.term_keys, self.feature_losses, strict=True):
            s_shape = tuple(student.get_layer(name=term.student_layer_name).output.shape)
            t_shape = tuple(self.teacher.get_layer(name=term.teacher_layer_name).output.shape)
            adapter = term.build_adapter(s_shape, t_shape)
            if adapter is not None:
                adapter.build(s_shape)
                self.projectors[key] = adapter
                projector_vars.extend(adapter.trainable_variables)
        self._projector_variables = projector_vars
        self._projector_optimizer = None
        if projector_vars:
            optimizer = self.projector_optimizer
            if optimizer is None:
                optimizer = _clone_optimizer(student.optimizer)
            else:
                optimizer = keras.optimizers.get(optimizer)
            optimizer.build(projector_vars)
            self._projector_optimizer = optimizer

    def _install(self, student):
        """Sets the training step and wrappers as attributes of this model object only."""

        def unpacking(method):
            signature = inspect.signature(method)

            def wrapper(*args, **kwargs):
                bound = signature.bind(*args, **kwargs)
                if "y" in bound.arguments:
                    bound.arguments["y"] = split_packed_targets(bound.arguments["y"])[0]
                return method(*bound.args, **bound.kwargs)

            return wrapper

        reset_metrics = student.reset_metrics

        def reset_all_metrics():
            reset_metrics()
            for tracker in self._trackers.values():
                tracker.reset_state()

        self._saved_methods = {
            # A packed target (from a TeacherCache) also reaches these outside the training
            # step: in Keras' symbolic build under a strategy, and in `evaluate`.
            "compute_loss": unpacking(student.compute_loss),
            "compute_metrics": unpacking(student.compute_metrics),
            "reset_metrics": reset_all_metrics,
            "train_step": self.train_step,
        }
        for name, method in self._saved_methods.items():
            setattr(student, name, method)
        student.train_function = None  # rebuilt by the next `fit` around the new step

    def detach(self, student=None):
        """Restores the student's own training step; returns the student."""
        student = self.student if student is None else student
        if student is None or student is not self.student:
            raise ValueError("`student` is not attached to this Distillation.")
        for name in self._saved_methods:
            if name in student.__dict__:
                delattr(student, name)
        student.train_function = None
        _ATTACHED.pop(student, None)
        self.student = None
        self._saved_methods = {}
        return student

    # ------------------------------------------------------------------ the training step

    def _student_forward(self, x):
        student = self.student
        if self._student_extractor is None:
            if student._call_has_training_arg:
                return student(x, training=True), []
            return student(x), []
        outputs = self._student_extractor(x, training=True)
        return outputs[0], list(outputs[1:])

    def compute_loss_parts(self, x, y, y_pred, features, teacher, sample_weight=None):
        """`(total, {name: unweighted term})` for one batch, as the training step computes it.

        The terms are already divided by the number of replicas under `tf.distribute` (as
        Keras' losses are).
        """
        student = self.student
        labels_loss = student._compile_loss(y, y_pred, sample_weight)
        parts = {
            "student_loss": ops.cast(labels_loss, "float32"),
            "distillation_loss": self.logits_loss.compute_loss(
                teacher[LOGITS_KEY], y_pred, sample_weight, temperature=self.temperature
            ),
        }
        alpha = ops.cast(self.alpha, "float32")
        total = alpha * parts["student_loss"] + (1.0 - alpha) * parts["distillation_loss"]
        for key, term, feature in zip(self.term_keys, self.feature_losses, features, strict=True):
            target = teacher[key]
            adapted = term.student_target(feature, self.projectors.get(key), target.shape[1:])
            parts[key] = term.compute_loss(target, adapted, sample_weight=sample_weight)
            total = total + term.weight * parts[key]
        for loss in student.losses:  # regularization: not weighted by alpha
            total = total + ops.cast(student._aggregate_additional_loss(loss), "float32")
        return total, parts

    def train_step(self, data):
        """One distillation step (Keras' TensorFlow `train_step` with the loss above)."""
        student = self.student
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y, teacher = split_packed_targets(y)
        if teacher is None:
            teacher = self.teacher_outputs(x)
        with tf.GradientTape() as tape:
            y_pred, features = self._student_forward(x)
            total, parts = self.compute_loss_parts(x, y, y_pred, features, teacher, sample_weight)
            scaled = student.optimizer.scale_loss(total)
        student_vars = student.trainable_weights
        gradients = tape.gradient(scaled, student_vars + self._projector_variables)
        if self._projector_variables:
            n = len(student_vars)
            # The projectors' optimizer has no loss scale of its own: undo the student's
            # (mixed precision) and skip non-finite steps by zeroing their gradients.
            scale = ops.cast(student.optimizer.scale_loss(ops.ones((), "float32")), "float32")
            projector_grads = [g / scale for g in gradients[n:]]
            finite = ops.all(ops.stack([ops.all(ops.isfinite(g)) for g in projector_grads]))
            projector_grads = [ops.where(finite, g, ops.zeros_like(g)) for g in projector_grads]
            self._projector_optimizer.apply_gradients(
                zip(projector_grads, self._projector_variables, strict=True)
            )
            gradients = gradients[:n]
        student.optimizer.apply_gradients(zip(gradients, student_vars, strict=True))
        replicas = float(tf.distribute.get_strategy().num_replicas_in_sync)
        batch = tf.shape(next(i for i in tf.nest.flatten(x) if i is not None))[0]
        student._loss_tracker.update_state(total * replicas, sample_weight=batch)
        for name, value in parts.items():
            self._trackers[name].update_state(value * replicas, sample_weight=batch)
        logs = student.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        logs.update({name: tracker.result() for name, tracker in self._trackers.items()})
        return logs

    # ------------------------------------------------------------------ cache, config

    def cache(self, x, y=None, sample_weight=None, **kwargs):
        """A `TeacherCache` of this teacher's outputs on the data; see `TeacherCache`."""
        from keras_cnn_ext.distillation.cache import TeacherCache

        return TeacherCache(self, x, y, sample_weight, **kwargs)

    def get_config(self):
        optimizer = self.projector_optimizer
        if optimizer is not None and not isinstance(optimizer, str):
            optimizer = keras.optimizers.serialize(optimizer)
        return {
            "teacher": keras.saving.serialize_keras_object(self.teacher),
            "alpha": float(self.alpha.numpy()),
            "temperature": float(self.temperature.numpy()),
            "feature_losses": [
                keras.saving.serialize_keras_object(term) for term in self.feature_losses
            ],
            "teacher_classes": self.logits_loss.teacher_classes,
            "projector_optimizer": optimizer,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["teacher"] = keras.saving.deserialize_keras_object(config["teacher"])
        config["feature_losses"] = [
            keras.saving.deserialize_keras_object(term) for term in config["feature_losses"]
        ]
        if isinstance(config.get("projector_optimizer"), dict):
            config["projector_optimizer"] = keras.optimizers.deserialize(
                config["projector_optimizer"]
            )
        return cls(**config)


def distill(
    teacher,
    student,
    x,
    y,
    *,
    alpha=0.5,
    temperature=4.0,
    feature_losses=None,
    teacher_classes=None,
    epochs=10,
    batch_size=32,
    cache="memory",
    directory=None,
    validation_data=None,
    callbacks=None,
    seed=None,
    verbose="auto",
):
    """One call: attach a `Distillation`, fit the compiled `student` on `(x, y)`, detach.

    The student must be compiled (optimizer, label loss, metrics); it is trained in place and
    keeps its own `fit` afterwards. With `cache="memory"` or `"disk"` the teacher runs once
    per image (a `TeacherCache`, on disk in `directory`); with `cache=None` it runs in every
    step.

    Args:
        teacher, student: Keras models (see `Distillation`).
        x, y: training images and labels (arrays).
        alpha, temperature, feature_losses, teacher_classes: as in `Distillation`.
        epochs, batch_size, validation_data, callbacks, verbose: as in `fit`.
        cache: `"memory"` (default), `"disk"` or `None`.
        directory: the folder of a disk cache.
        seed: seed of the shuffle (and of the choice of augmented copy). Default None.

    Returns:
        The `History` of `student.fit`.
    """
    if cache not in ("memory", "disk", None):
        raise ValueError(f"`cache` must be 'memory', 'disk' or None. Received: {cache!r}")
    kd = Distillation(
        teacher,
        alpha=alpha,
        temperature=temperature,
        feature_losses=feature_losses,
        teacher_classes=teacher_classes,
    )
    kd.attach(student)
    try:
        if cache is None:
            data = tf.data.Dataset.from_tensor_slices((x, y))
            data = data.shuffle(len(x), seed=seed).batch(batch_size)
        else:
            stored = kd.cache(x, y, storage=cache, directory=directory)
            data = stored.dataset(batch_size=batch_size, seed=seed)
        return student.fit(
            data,
            epochs=epochs,
            validation_data=validation_data,
            callbacks=callbacks,
            shuffle=False,  # the dataset shuffles itself (Keras warns about shuffle=True on one)
            verbose=verbose,
        )
    finally:
        kd.detach(student)
