"""Base classes of every attribution method: one constructor, one `attribute` call.

The shape follows Captum's `Attribution` / `GradientAttribution` / `LayerAttribution`: a method is
a small class built once on a model (`Saliency(model)`, `GradCAM(model, layer="base/conv_pw_13")`)
and called as `method.attribute(images, class_index=None)`; wrappers such as `SmoothGrad` take any
method. The base class does what every method shares: it checks the images, turns `class_index`
(an int, one per image, or `None` for the top prediction) into one class per image, runs the
batches through `tf.function`-compiled gradient functions (XLA where it compiles) and reduces the
channel axis of pixel attributions into one map per image.

Gradients are taken of the model's output for the class, as the model returns it (pre-softmax
scores for a model with a linear head, probabilities for a softmax head). Mixed-precision models
run their forward pass in their compute dtype; outputs, activations and gradients are cast to
float32 before any arithmetic, and every map comes back as float32 NumPy.
"""

from __future__ import annotations

import contextlib
import numbers
import warnings
import weakref

import keras
import numpy as np
import tensorflow as tf

from keras_cnn_ext.interpret import _targets
from keras_cnn_ext.utils import normalize_data_format

REDUCTIONS = ("max_abs", "sum", "abs_sum", "none")

# Compiled functions (and target-layer forwards) shared by every method built on the same model:
# `saliency(model, ...)` after `integrated_gradients(model, ...)` reuses the traced gradient.
# Keys are weak and the cached functions reach the model only through weak references, so the
# cache never keeps a model alive.
_SHARED = weakref.WeakKeyDictionary()


def shared(model, key, build):
    """Returns the object cached for `model` under `key`, building it with `build()` once."""
    per_model = _SHARED.setdefault(model, {})
    if key not in per_model:
        per_model[key] = build()
    return per_model[key]


def class_scores(outputs):
    """The model's class scores as float32 `(batch, classes)` (the first output of several)."""
    if isinstance(outputs, (list, tuple)):
        outputs = outputs[0]
    if outputs.shape.rank != 2:
        raise ValueError(
            "The model must return class scores of shape (batch, classes) to be explained. "
            f"Received an output of shape {tuple(outputs.shape)}"
        )
    return tf.cast(outputs, "float32")


def _forward_fn(model_ref):
    def forward(x):
        return class_scores(model_ref()(x, training=False))

    return forward


def _input_gradient_fn(scope):
    def make(model_ref):
        def gradients(x, idx):
            with tf.GradientTape() as tape, scope():
                tape.watch(x)
                outputs = model_ref()(x, training=False)
                scores = tf.gather(class_scores(outputs), idx, axis=1, batch_dims=1)
            return tape.gradient(scores, x), scores

        return gradients

    return make


def _layer_gradient_fn(forward, layout):
    def make(model_ref):
        def gradients(x, idx):
            with tf.GradientTape() as tape:
                activations, outputs = forward(x)
                scores = tf.gather(class_scores(outputs), idx, axis=1, batch_dims=1)
            grads = tape.gradient(scores, activations)
            if activations.shape.rank != 4:
                raise ValueError(
                    f"`layer` {forward.name!r} must have a 4-D output to be explained. "
                    f"Received an output of shape {tuple(activations.shape)}"
                )
            activations, grads = tf.cast(activations, "float32"), tf.cast(grads, "float32")
            if layout == "channels_first":
                activations = tf.transpose(activations, (0, 2, 3, 1))
                grads = tf.transpose(grads, (0, 2, 3, 1))
            return activations, grads, scores

        return gradients

    return make


def default_jit_compile():
    """XLA on GPU/TPU, plain `tf.function` on CPU (where XLA was slower here), like Keras' "auto"."""
    return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


def _check_reduction(reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"`reduction` must be one of {REDUCTIONS}. Received: {reduction!r}")
    return reduction


def _check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer. Received: {value!r}")
    return int(value)


class Attribution:
    """Base of every method: `attribute(images, class_index=None)` returns one map per image.

    Args:
        model: a built `keras.Model` with one image input and a `(batch, classes)` output.
        batch_size: images per compiled call (default 32).
        jit_compile: `True` compiles with XLA, `False` uses `tf.function` alone, `None` (default)
            picks XLA only when a GPU/TPU is visible. If XLA cannot compile the model, the method
            warns once and falls back to `tf.function`.
        data_format: `"channels_last"` or `"channels_first"`; default Keras' image data format.
    """

    # The channel reduction a method applies when the user leaves `reduction` as None.
    default_reduction = "none"

    def __init__(self, model, *, batch_size=32, jit_compile=None, data_format=None):
        self.model = _targets.check_model(model)
        self.batch_size = _check_positive_int(batch_size, "batch_size")
        if jit_compile is not None and not isinstance(jit_compile, bool):
            raise TypeError(f"`jit_compile` must be None, True or False. Received: {jit_compile!r}")
        self.jit_compile = default_jit_compile() if jit_compile is None else jit_compile
        self.data_format = normalize_data_format(data_format)

    @property
    def channel_axis(self):
        return -1 if self.data_format == "channels_last" else 1

    # ---- inputs -------------------------------------------------------------------------------

    def _check_images(self, images):
        if isinstance(images, (list, tuple)):
            images = np.asarray(images)
        if not isinstance(images, (np.ndarray, tf.Tensor)) and not keras.ops.is_tensor(images):
            raise TypeError(
                "`images` must be a NumPy array or tensor of shape (batch, height, width, "
                f"channels). Received: {images!r} of type {type(images)}"
            )
        images = tf.convert_to_tensor(images)
        if images.shape.rank != 4:
            hint = " Add a batch axis, e.g. `images[None]`." if images.shape.rank == 3 else ""
            raise ValueError(
                "`images` must be a batch of images of rank 4 (batch, height, width, channels or "
                f"batch, channels, height, width). Received shape: {tuple(images.shape)}.{hint}"
            )
        if not (images.dtype.is_floating or images.dtype.is_integer):
            raise TypeError(f"`images` must be numeric. Received dtype: {images.dtype.name}")
        expected = self._expected_image_shape()
        if expected is not None:
            got = tuple(images.shape[1:])
            if any(e is not None and e != g for e, g in zip(expected, got, strict=True)):
                raise ValueError(
                    f"`images` must have shape (batch, {', '.join(str(e) for e in expected)}) for "
                    f"model {self.model.name!r}. Received shape: {tuple(images.shape)}"
                )
        if images.shape[0] == 0:
            raise ValueError("`images` must hold at least one image. Received an empty batch.")
        return tf.cast(images, "float32")

    def _expected_image_shape(self):
        io = _targets.graph_io(self.model)
        if io is None:
            return None
        shape = tuple(io[0][0].shape[1:])
        return shape if len(shape) == 3 else None

    def _spatial_shape(self, images):
        shape = images.shape
        return (shape[1], shape[2]) if self.data_format == "channels_last" else (shape[2], shape[3])

    # ---- classes ------------------------------------------------------------------------------

    def num_classes(self, images):
        """The number of classes the model scores (read from its output shape or one forward)."""
        io = _targets.graph_io(self.model)
        if io is not None and io[1][0].shape[-1] is not None:
            return int(io[1][0].shape[-1])
        return int(self.predict(images[:1]).shape[-1])

    def resolve_class_index(self, images, class_index=None):
        """Returns one int32 class per image: `class_index` broadcast, or the top prediction."""
        images = self._check_images(images)
        n = int(images.shape[0])
        if class_index is None:
            return np.concatenate(
                [np.argmax(self.predict(chunk), axis=-1) for chunk in self._chunks(images)]
            ).astype("int32")
        if isinstance(class_index, bool):
            raise TypeError(
                f"`class_index` must be None, an int or a list of ints. Received: {class_index!r}"
            )
        if isinstance(class_index, numbers.Integral):
            indices = np.full((n,), int(class_index), "int64")
        else:
            try:
                indices = np.asarray(class_index)
            except Exception:  # noqa: BLE001 - anything that is not array-like
                indices = None
            if indices is None or indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
                raise TypeError(
                    "`class_index` must be None (top prediction), an int, or a list of one int per "
                    f"image. Received: {class_index!r}"
                )
            if len(indices) != n:
                raise ValueError(
                    f"`class_index` must hold one class per image ({n}). Received {len(indices)} "
                    f"classes: {class_index!r}"
                )
        classes = self.num_classes(images)
        if np.any(indices < 0) or np.any(indices >= classes):
            raise ValueError(
                f"`class_index` entries must be in [0, {classes}) for a model with {classes} "
                f"outputs. Received: {class_index!r}"
            )
        return indices.astype("int32")

    # ---- compiled kernels ---------------------------------------------------------------------

    def _compile(self, key, make):
        """The compiled `make(weakref to model)`, shared per model under `key` and `jit_compile`."""
        model_ref = weakref.ref(self.model)
        jit = self.jit_compile
        return shared(self.model, (key, jit), lambda: _FallbackFunction(make(model_ref), jit))

    def predict(self, images):
        """Model outputs (float32 NumPy) for a batch, through the compiled forward pass."""
        return self._compile("predict", _forward_fn)(tf.cast(images, "float32")).numpy()

    def _chunks(self, *tensors):
        n = int(tensors[0].shape[0])
        for start in range(0, n, self.batch_size):
            chunk = tuple(t[start : start + self.batch_size] for t in tensors)
            yield chunk[0] if len(chunk) == 1 else chunk

    # ---- the public call ----------------------------------------------------------------------

    def attribute(self, images, class_index=None):
        """Returns the attribution maps of `images` for `class_index`.

        Args:
            images: float array of shape `(batch, height, width, channels)` (or channels first).
            class_index: `None` (default) explains each image's top prediction; an int explains
                that class for every image; a list/array holds one class per image.

        Returns:
            float32 NumPy array `(batch, height, width)` (or input-shaped with `reduction="none"`).
        """
        images = self._check_images(images)
        indices = self.resolve_class_index(images, class_index)
        maps = [
            self._attribute_batch(x, tf.constant(idx))
            for x, idx in self._chunks(images, tf.constant(indices))
        ]
        return np.concatenate(maps).astype("float32")

    def _attribute_batch(self, images, indices):  # pragma: no cover - abstract
        raise NotImplementedError

    def _reduce(self, attributions, reduction):
        """Reduces the channel axis of input-shaped attributions into one map per image."""
        axis = self.channel_axis
        if reduction == "none":
            return attributions
        if reduction == "max_abs":
            return np.max(np.abs(attributions), axis=axis)
        if reduction == "abs_sum":
            return np.sum(np.abs(attributions), axis=axis)
        return np.sum(attributions, axis=axis)


class GradientAttribution(Attribution):
    """A method built on `d y_c / d x`: holds the compiled input-gradient function."""

    # A context manager active while the gradient function is traced (see GuidedBackprop).
    _gradient_scope = staticmethod(contextlib.nullcontext)

    def __init__(self, model, *, reduction=None, **kwargs):
        super().__init__(model, **kwargs)
        self.reduction = _check_reduction(
            self.default_reduction if reduction is None else reduction
        )

    def input_gradients(self, images, indices):
        """Returns `(d y_c / d x, y_c)` for a batch as float32 tensors."""
        scope = self._gradient_scope
        compiled = self._compile(("input_gradients", scope), _input_gradient_fn(scope))
        return compiled(images, indices)


class LayerAttribution(Attribution):
    """A method built on the activations of one inner layer (Grad-CAM and its variants).

    Args:
        layer: the target layer: a name, `"outer/inner"` for a layer of a nested model, a layer
            instance, or `None` (default) for the last layer with a 4-D output.
        interpolation: how maps are upsampled to the input size (a `tf.image.resize` method,
            default `"bilinear"`).
    """

    def __init__(self, model, layer=None, *, interpolation="bilinear", **kwargs):
        super().__init__(model, **kwargs)
        methods = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "gaussian")
        if interpolation not in methods:
            raise ValueError(
                f"`interpolation` must be one of {methods}. Received: {interpolation!r}"
            )
        self.interpolation = interpolation
        self._path = _targets.resolve_layer_path(self.model, layer)
        self._forward = None if self._path is None else self._shared_forward()

    def _shared_forward(self):
        path = tuple(self._path)
        return shared(
            self.model, ("forward", path), lambda: _targets.LayerForward(self.model, path)
        )

    @property
    def layer_name(self):
        """The target layer's path (`"base/conv_pw_13"`), or None until a subclassed model ran."""
        return None if self._path is None else _targets.PATH_SEPARATOR.join(self._path)

    def _layer_forward(self, images):
        if self._forward is None:
            self._path = _targets.probe_last_spatial_layer(self.model, images)
            self._forward = self._shared_forward()
        return self._forward

    def layer_gradients(self, images, indices):
        """Returns `(A, d y_c / d A, y_c)` for a batch, `A` channels-last float32."""
        forward = self._layer_forward(images)
        # The target layer's own layout decides where its channels are (a channels-last base can
        # sit behind a channels-first input); layers without one follow the input's.
        layout = getattr(_targets.follow(self.model, self._path), "data_format", None)
        layout = layout if layout in ("channels_first", "channels_last") else self.data_format

        key = ("layer_gradients", tuple(self._path), layout)
        compiled = self._compile(key, _layer_gradient_fn(forward, layout))
        return compiled(images, indices)

    def upsample(self, maps, size):
        """Resizes `(batch, h, w)` maps to `size` = (height, width)."""
        resized = tf.image.resize(tf.convert_to_tensor(maps)[..., None], size, self.interpolation)
        return resized[..., 0].numpy()


class _FallbackFunction:
    """A `tf.function` traced once per input signature with any batch size, XLA when asked.

    The batch axis is left unknown in the signature, so the last, smaller batch of a call and
    the different batch sizes of integrated gradients or occlusion reuse one trace. If XLA
    cannot compile the model, it warns once and falls back to `tf.function` without XLA.
    """

    def __init__(self, fn, jit_compile):
        self._fn = fn
        self._jit = jit_compile
        self._functions = {}

    def _function(self, args):
        specs = tuple(tf.TensorSpec((None, *a.shape[1:]), a.dtype) for a in args)
        if specs not in self._functions:
            self._functions[specs] = tf.function(
                self._fn, input_signature=specs, jit_compile=self._jit
            )
        return self._functions[specs]

    def __call__(self, *args):
        args = tuple(tf.convert_to_tensor(a) for a in args)
        try:
            return self._function(args)(*args)
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as error:
            if not self._jit or "XLA" not in str(error) and "compil" not in str(error):
                raise
            warnings.warn(
                f"XLA could not compile the attribution ({str(error).splitlines()[0][:200]}); "
                "falling back to tf.function without XLA.",
                stacklevel=3,
            )
            self._jit = False
            self._functions = {}
            return self._function(args)(*args)
