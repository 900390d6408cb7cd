"""Gradient attributions on the input: saliency, integrated gradients, guided backprop, SmoothGrad."""

from __future__ import annotations

import contextlib
import numbers

import keras
import numpy as np
import tensorflow as tf

from keras_cnn_ext.interpret.attribution import Attribution, GradientAttribution
from keras_cnn_ext.utils import check_seed

INTEGRATION_METHODS = (
    "gausslegendre",
    "riemann_left",
    "riemann_right",
    "riemann_middle",
    "riemann_trapezoid",
)
NOISE_KINDS = ("smoothgrad", "smoothgrad_sq", "vargrad")


class Saliency(GradientAttribution):
    """Vanilla gradient saliency (Simonyan et al. 2014): `max_c |d y_c / d x|` per pixel.

    Args:
        model: a built `keras.Model` returning `(batch, classes)` scores.
        reduction: how the channel axis is reduced: `"max_abs"` (default, the paper's map),
            `"abs_sum"`, `"sum"`, or `"none"` for the raw input-shaped gradient.
        batch_size, jit_compile, data_format: see `Attribution`.

    Example:

    >>> model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3),
    ...                           keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    >>> Saliency(model).attribute(np.ones((2, 8, 8, 1), "float32"), class_index=1).shape
    (2, 8, 8)
    """

    default_reduction = "max_abs"

    def _attribute_batch(self, images, indices):
        grads, _ = self.input_gradients(images, indices)
        return self._reduce(grads.numpy(), self.reduction)


class IntegratedGradients(GradientAttribution):
    """Integrated gradients (Sundararajan et al. 2017): `(x - x') * ∫ d y_c/dx (x' + t (x - x')) dt`.

    The integral is approximated with `steps` points: Gauss-Legendre nodes (default, exact for
    polynomials of degree `2 * steps - 1`) or a Riemann sum (`"riemann_left"`, `"riemann_right"`,
    `"riemann_middle"`, `"riemann_trapezoid"`). Completeness says the attributions of an image sum
    to `y_c(x) - y_c(x')`; `attribute(..., return_convergence_delta=True)` also returns the
    error of that sum per image, which shrinks as `steps` grows.

    Args:
        model: a built `keras.Model` returning `(batch, classes)` scores.
        steps: integration points (default 50).
        integration: the quadrature rule, one of `INTEGRATION_METHODS` (default
            `"gausslegendre"`).
        reduction: `"sum"` (default: the map still sums to the score difference), `"abs_sum"`,
            `"max_abs"` or `"none"` (input-shaped).
        batch_size: interpolated images per compiled call (default 32).
        jit_compile, data_format: see `Attribution`.

    Example:

    >>> model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3),
    ...                           keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    >>> maps, delta = IntegratedGradients(model, steps=8).attribute(
    ...     np.ones((2, 8, 8, 1), "float32"), class_index=0, return_convergence_delta=True)
    >>> maps.shape, bool(np.all(np.abs(delta) < 1e-4))
    ((2, 8, 8), True)
    """

    default_reduction = "sum"

    def __init__(self, model, *, steps=50, integration="gausslegendre", **kwargs):
        super().__init__(model, **kwargs)
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
            raise ValueError(f"`steps` must be a positive integer. Received: {steps!r}")
        if integration not in INTEGRATION_METHODS:
            raise ValueError(
                f"`integration` must be one of {INTEGRATION_METHODS}. Received: {integration!r}"
            )
        self.steps = int(steps)
        self.integration = integration
        self.alphas, self.weights = integration_points(self.steps, integration)

    def attribute(self, images, class_index=None, baseline=None, return_convergence_delta=False):
        """Returns the maps, and with `return_convergence_delta` also the completeness error.

        Args:
            images: a batch of images.
            class_index: `None` (top prediction), an int, or one int per image.
            baseline: the reference image `x'`: `None` (default, all zeros), a number, one image
                (broadcast to the batch) or one baseline per image.
            return_convergence_delta: when True, returns `(maps, delta)` where
                `delta[i] = sum(attributions[i]) - (y_c(x_i) - y_c(x'_i))`.
        """
        images = self._check_images(images)
        baselines = self._baselines(images, baseline)
        indices = self.resolve_class_index(images, class_index)
        maps, deltas = [], []
        for x, base, idx in self._chunks(images, baselines, tf.constant(indices)):
            attributions = self._integrate(x, base, idx)
            start = self.predict(x)[np.arange(len(idx)), idx.numpy()]
            origin = self.predict(base)[np.arange(len(idx)), idx.numpy()]
            deltas.append(attributions.reshape(len(idx), -1).sum(axis=1) - (start - origin))
            maps.append(self._reduce(attributions, self.reduction))
        maps = np.concatenate(maps).astype("float32")
        if return_convergence_delta:
            return maps, np.concatenate(deltas).astype("float32")
        return maps

    def _baselines(self, images, baseline):
        if baseline is None:
            return tf.zeros_like(images)
        if isinstance(baseline, numbers.Real) and not isinstance(baseline, bool):
            return tf.fill(tf.shape(images), tf.constant(float(baseline), "float32"))
        base = tf.cast(tf.convert_to_tensor(baseline), "float32")
        if base.shape.rank == 3:
            base = base[None]
        if (
            base.shape.rank != 4
            or tuple(base.shape[1:]) != tuple(images.shape[1:])
            or base.shape[0] not in (1, images.shape[0])
        ):
            raise ValueError(
                "`baseline` must be None, a number, one image of shape "
                f"{tuple(images.shape[1:])} or one per image. Received shape: {tuple(base.shape)}"
            )
        return tf.broadcast_to(base, tf.shape(images))

    def _integrate(self, images, baselines, indices):
        n = int(images.shape[0])
        diff = images - baselines
        alphas = tf.constant(np.repeat(self.alphas, n), "float32")
        weights = np.repeat(self.weights, n).astype("float32")
        total = np.zeros(images.shape, "float32")
        # Row r of the path is step r // n of image r % n, built `batch_size` rows at a time.
        rows = self.steps * n
        for start in range(0, rows, self.batch_size):
            row = tf.range(start, min(start + self.batch_size, rows))
            image = row % n
            alpha = tf.gather(alphas, row)[:, None, None, None]
            points = tf.gather(baselines, image) + alpha * tf.gather(diff, image)
            grads, _ = self.input_gradients(points, tf.gather(indices, image))
            weighted = grads.numpy() * weights[row.numpy(), None, None, None]
            np.add.at(total, image.numpy(), weighted)
        return total * diff.numpy()


def integration_points(steps, method):
    """Nodes in [0, 1] and weights (summing to 1) of a quadrature rule with `steps` points."""
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (nodes + 1) / 2, weights / 2
    if method == "riemann_trapezoid":
        if steps == 1:
            return np.array([0.5]), np.array([1.0])
        nodes = np.linspace(0, 1, steps)
        weights = np.full(steps, 1.0 / (steps - 1))
        weights[[0, -1]] /= 2
        return nodes, weights
    offset = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}[method]
    return (np.arange(steps) + offset) / steps, np.full(steps, 1.0 / steps)


def _guided(forward, passes):
    """Wraps a ReLU-type TF function with the guided backward pass of Springenberg et al. 2015."""

    @tf.custom_gradient
    def guided(x):
        def backward(dy):
            # Only positive gradients flow back, and only into units whose input passed.
            return tf.where(tf.logical_and(dy > 0, passes(x)), dy, tf.zeros_like(dy))

        return forward(x), backward

    def replacement(features, name=None):
        return guided(tf.convert_to_tensor(features))

    return replacement


@contextlib.contextmanager
def guided_relu_scope():
    """While active, `tf.nn.relu` and `tf.nn.relu6` carry the guided-backprop gradient.

    Keras 3's TensorFlow backend computes every ReLU (the `relu` activation of Conv2D/Dense,
    `layers.ReLU`, ReLU6 in MobileNet) through these two functions, looked up at call time, so the
    override reaches all of them while a graph is traced and is undone on exit: no layer, weight
    or activation of the model is touched, and graphs traced outside the scope keep the ordinary
    gradient. The scope is process-wide while it lasts; do not trace other models in other
    threads at the same time.
    """
    relu, relu6 = tf.nn.relu, tf.nn.relu6
    tf.nn.relu = _guided(relu, lambda x: x > 0)
    tf.nn.relu6 = _guided(relu6, lambda x: tf.logical_and(x > 0, x < 6))
    try:
        yield
    finally:
        tf.nn.relu, tf.nn.relu6 = relu, relu6


class GuidedBackprop(GradientAttribution):
    """Guided backpropagation (Springenberg et al. 2015).

    The backward pass through every ReLU (and ReLU6) passes only positive gradients to positive
    inputs. The override is scoped to the graph this method traces (`guided_relu_scope`): the
    model, its layers and their activations are untouched, and the model's own gradients
    everywhere else stay the ordinary ones. Other activations (sigmoid, swish, leaky ReLU, ...)
    keep their ordinary gradients.

    Args:
        model: a built `keras.Model` returning `(batch, classes)` scores.
        reduction: `"max_abs"` (default), `"abs_sum"`, `"sum"`, or `"none"` (input-shaped).
        batch_size, jit_compile, data_format: see `Attribution`.

    Example:

    >>> model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3, activation="relu"),
    ...                           keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    >>> GuidedBackprop(model).attribute(np.ones((1, 8, 8, 1), "float32")).shape
    (1, 8, 8)
    """

    default_reduction = "max_abs"
    _gradient_scope = staticmethod(guided_relu_scope)

    def _attribute_batch(self, images, indices):
        grads, _ = self.input_gradients(images, indices)
        return self._reduce(grads.numpy(), self.reduction)


class SmoothGrad(Attribution):
    """A noise tunnel over any method (Smilkov et al. 2017; Adebayo et al. 2018 for VarGrad).

    Each image is explained `samples` times with Gaussian noise of standard deviation
    `noise_level * (max(x) - min(x))` added, and the maps are averaged (`"smoothgrad"`), their
    squares averaged (`"smoothgrad_sq"`) or their variance taken (`"vargrad"`). The class of an
    image is fixed on the clean image first, so the noise never changes which class is explained.

    Args:
        method: the attribution to smooth: an `Attribution` instance (any method of this module or
            Grad-CAM) or the name of a method in `keras_cnn_ext.interpret.METHODS`.
        samples: noisy copies per image (default 25).
        noise_level: noise standard deviation relative to each image's value range (default 0.15).
        kind: `"smoothgrad"` (default), `"smoothgrad_sq"` or `"vargrad"`.
        seed: seed of the noise (None draws a fresh one).
        model: needed only when `method` is a name; `**method_kwargs` then go to that method.

    Example:

    >>> model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3),
    ...                           keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    >>> SmoothGrad(Saliency(model), samples=4, seed=0).attribute(np.ones((2, 8, 8, 1))).shape
    (2, 8, 8)
    """

    def __init__(
        self,
        method,
        *,
        samples=25,
        noise_level=0.15,
        kind="smoothgrad",
        seed=None,
        model=None,
        **method_kwargs,
    ):
        if isinstance(method, str):
            from keras_cnn_ext.interpret.methods import get_method

            if model is None:
                raise ValueError(
                    f"`model` is required when `method` is a name. Received method={method!r}"
                )
            method = get_method(method)(model, **method_kwargs)
        elif method_kwargs:
            raise TypeError(
                f"Unexpected arguments for an instance `method`: {sorted(method_kwargs)}"
            )
        if not isinstance(method, Attribution) or isinstance(method, SmoothGrad):
            raise TypeError(
                "`method` must be an attribution (Saliency(model), GradCAM(model), ...) or a method "
                f"name. Received: {method!r} of type {type(method)}"
            )
        if isinstance(samples, bool) or not isinstance(samples, numbers.Integral) or samples < 1:
            raise ValueError(f"`samples` must be a positive integer. Received: {samples!r}")
        if (
            isinstance(noise_level, bool)
            or not isinstance(noise_level, numbers.Real)
            or noise_level < 0
        ):
            raise ValueError(f"`noise_level` must be a number >= 0. Received: {noise_level!r}")
        if kind not in NOISE_KINDS:
            raise ValueError(f"`kind` must be one of {NOISE_KINDS}. Received: {kind!r}")
        self.method = method
        self.model = method.model
        self.batch_size = method.batch_size
        self.jit_compile = method.jit_compile
        self.data_format = method.data_format
        self.samples = int(samples)
        self.noise_level = float(noise_level)
        self.kind = kind
        self.seed = check_seed(seed)

    def _expected_image_shape(self):
        return self.method._expected_image_shape()

    def attribute(self, images, class_index=None):
        """Returns the smoothed maps, shaped like the wrapped method's."""
        images = self._check_images(images)
        indices = self.resolve_class_index(images, class_index)
        axes = tuple(range(1, images.shape.rank))
        spread = tf.reduce_max(images, axis=axes, keepdims=True) - tf.reduce_min(
            images, axis=axes, keepdims=True
        )
        sigma = self.noise_level * tf.where(spread > 0, spread, tf.ones_like(spread))
        generator = keras.random.SeedGenerator(self.seed)
        total = total_sq = None
        for _ in range(self.samples):
            noise = keras.random.normal(tf.shape(images), seed=generator)
            maps = self.method.attribute(images + sigma * noise, indices).astype("float64")
            total = maps if total is None else total + maps
            total_sq = maps**2 if total_sq is None else total_sq + maps**2
        mean = total / self.samples
        if self.kind == "smoothgrad":
            return mean.astype("float32")
        if self.kind == "smoothgrad_sq":
            return (total_sq / self.samples).astype("float32")
        return np.maximum(total_sq / self.samples - mean**2, 0).astype("float32")
