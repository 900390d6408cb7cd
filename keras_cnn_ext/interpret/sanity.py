"""Sanity and faithfulness checks a user can run on their own model and maps.

- `model_randomization_test` (Adebayo et al. 2018, "Sanity Checks for Saliency Maps"): the top
  layers of a copy of the model are re-initialised one after another (cascading) and the maps'
  Spearman rank correlation with the trained model's maps is reported. A method whose maps stay
  the same when the weights they should explain are destroyed is not explaining the model.
- `deletion_insertion_curves` (Petsiuk et al. 2018, RISE): pixels are deleted from the image (or
  inserted into a blurred copy) in the order of the map, most important first, and the class
  probability is recorded. A faithful map makes the deletion curve fall fast (low area under the
  curve) and the insertion curve rise fast (high area).
"""

from __future__ import annotations

import numbers

import keras
import numpy as np
import tensorflow as tf

from keras_cnn_ext.interpret import _targets
from keras_cnn_ext.interpret.attribution import Attribution
from keras_cnn_ext.interpret.methods import get_method
from keras_cnn_ext.utils import check_seed


def rank_correlation(a, b):
    """Spearman rank correlation of two maps (ties share their mean rank); 0 when one is constant."""
    ra, rb = _ranks(np.ravel(a)), _ranks(np.ravel(b))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    norm = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / norm) if norm > 0 else 0.0


def _ranks(values):
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    mean_rank = upper - (counts - 1) / 2.0
    return mean_rank[inverse.ravel()]


def _weighted_layers(model, prefix=""):
    """(path, layer) of every layer with weights, nested models flattened, in topological order."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.extend(_weighted_layers(layer, prefix + layer.name + _targets.PATH_SEPARATOR))
        elif layer.weights:
            found.append((prefix + layer.name, layer))
    return found


def _reinitialise(layer, rng):
    """Draws new weights from the layer's own initialisers (a scaled normal where it has none)."""
    values = []
    for variable in layer.weights:
        shape = tuple(variable.shape)
        name = variable.name.split("/")[-1]
        names = [f"{name}_initializer"]
        if name.endswith("_kernel"):  # depthwise_kernel -> depthwise_initializer
            names.append(name[: -len("_kernel")] + "_initializer")
        if len(shape) >= 2:
            names.append("kernel_initializer")
        found = [getattr(layer, n) for n in names if getattr(layer, n, None) is not None]
        if found and hasattr(found[0], "get_config"):
            config = found[0].get_config()
            if "seed" in config:
                config["seed"] = int(rng.integers(0, 2**31 - 1))
            fresh = found[0].__class__.from_config(config)
            values.append(np.asarray(fresh(shape, dtype=variable.dtype)))
        else:
            fan_in = (
                int(np.prod(shape[:-1])) if len(shape) > 1 else max(1, shape[0] if shape else 1)
            )
            values.append(rng.normal(0, 1 / np.sqrt(fan_in), shape).astype(variable.dtype))
    layer.set_weights(values)


def model_randomization_test(
    model,
    images,
    method="grad_cam",
    class_index=None,
    num_layers=3,
    layers=None,
    cascading=True,
    seed=0,
    **method_options,
):
    """The model-parameter randomisation test of Adebayo et al. 2018.

    A copy of `model` (`keras.models.clone_model`, the user's model is not touched) has its top
    weighted layers re-initialised, from the output down; after each layer the maps of `method`
    are recomputed and compared with the trained model's maps by Spearman rank correlation.

    Args:
        model: a built Sequential or Functional `keras.Model` (nested models are cloned whole).
        images: the batch to explain.
        method: a method name from `METHODS` (default `"grad_cam"`).
        class_index: the classes explained, fixed from the trained model for every step (None:
            the trained model's top predictions).
        num_layers: how many weighted layers from the top to re-initialise (default 3).
        layers: explicit layer paths to re-initialise in that order (overrides `num_layers`).
        cascading: True (default) keeps earlier re-initialisations (the paper's cascade); False
            re-initialises each layer alone on a fresh copy.
        seed: seed of the new weights.
        **method_options: passed to the method's constructor (e.g. `layer=`, `steps=`).

    Returns:
        A dict with `"layers"` (paths in the order re-initialised), `"rank_correlation"` (mean
        over images after each step), `"per_image"` (steps x batch) and `"maps"` (the trained
        model's maps).
    """
    rng = np.random.default_rng(check_seed(seed))
    cls = get_method(method)

    def fresh_copy():
        if _targets.graph_io(model) is None:
            raise ValueError(
                "`model` must be a Sequential or Functional model for the randomisation test (it "
                f"is cloned with keras.models.clone_model). Received subclassed model {model.name!r}"
            )
        clone = keras.models.clone_model(model, recursive=True)
        clone.set_weights(model.get_weights())
        return clone

    clone = fresh_copy()
    by_path = dict(_weighted_layers(clone))
    if layers is None:
        if (
            isinstance(num_layers, bool)
            or not isinstance(num_layers, numbers.Integral)
            or not (1 <= num_layers <= len(by_path))
        ):
            raise ValueError(
                f"`num_layers` must be an integer in [1, {len(by_path)}] for this model. "
                f"Received: {num_layers!r}"
            )
        order = list(by_path)[::-1][: int(num_layers)]
    else:
        order = [layers] if isinstance(layers, str) else list(layers)
        unknown = [p for p in order if p not in by_path]
        if unknown or not order:
            raise ValueError(
                f"`layers` must name one or more layers with weights. Received {order}; "
                f"candidates: {list(by_path)}"
            )
    trained = cls(model, **method_options)
    indices = trained.resolve_class_index(images, class_index)
    reference = trained.attribute(images, indices)
    per_image = []
    for path in order:
        if not cascading:
            clone = fresh_copy()
            by_path = dict(_weighted_layers(clone))
        _reinitialise(by_path[path], rng)
        maps = cls(clone, **method_options).attribute(images, indices)
        per_image.append([rank_correlation(r, m) for r, m in zip(reference, maps, strict=True)])
    per_image = np.asarray(per_image, "float64")
    return {
        "layers": order,
        "rank_correlation": per_image.mean(axis=1),
        "per_image": per_image,
        "maps": reference,
    }


def _gaussian_blur(images, sigma):
    radius = max(1, int(3 * sigma))
    grid = np.arange(-radius, radius + 1, dtype="float32")
    kernel = np.exp(-(grid**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    channels = int(images.shape[-1])
    x = tf.convert_to_tensor(images, "float32")
    for k in (kernel[:, None], kernel[None, :]):
        filt = tf.constant(np.tile(k[:, :, None, None], (1, 1, channels, 1)))
        pad = [[0, 0], [radius, radius] if k.shape[0] > 1 else [0, 0]]
        pad += [[radius, radius] if k.shape[1] > 1 else [0, 0], [0, 0]]
        x = tf.nn.depthwise_conv2d(tf.pad(x, pad, mode="SYMMETRIC"), filt, [1, 1, 1, 1], "VALID")
    return x.numpy()


def deletion_insertion_curves(
    model,
    images,
    heatmaps,
    class_index=None,
    steps=20,
    deletion_baseline=0.0,
    insertion_baseline="blur",
    softmax="auto",
    batch_size=32,
):
    """Deletion and insertion curves and their areas (Petsiuk et al. 2018).

    Pixels (all channels at once) are ranked by `heatmaps`, highest first. Step k of `steps`
    replaces the top `k / steps` of the pixels with `deletion_baseline` (deletion) or copies them
    from the image into `insertion_baseline` (insertion), and records the class probability.

    Args:
        model: the model the maps explain (channels-last images).
        images: `(batch, height, width, channels)`.
        heatmaps: `(batch, height, width)` maps, higher = more important.
        class_index: None (top prediction), an int, or one per image.
        steps: points of each curve after the start (default 20).
        deletion_baseline: a number or `"blur"` (default 0.0, as in the paper).
        insertion_baseline: a number or `"blur"` (default: a Gaussian blur, sigma = 1/16 of the
            image side, as the paper's blurred canvas).
        softmax: `"auto"` (default) applies a softmax when the outputs are not probabilities;
            True/False force it.
        batch_size: images per forward pass.

    Returns:
        A dict with `"fractions"` (steps + 1), `"deletion"` and `"insertion"` (batch x (steps + 1)
        probabilities), and `"deletion_auc"`, `"insertion_auc"` (batch,), areas over [0, 1].
    """
    runner = Attribution(model, batch_size=batch_size, data_format="channels_last")
    x = runner._check_images(images).numpy()
    maps = np.asarray(heatmaps, "float32")
    if maps.shape != x.shape[:3]:
        raise ValueError(
            f"`heatmaps` must have shape {x.shape[:3]} (one map per image). Received: {maps.shape}"
        )
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"`steps` must be a positive integer. Received: {steps!r}")
    if softmax not in ("auto", True, False):
        raise ValueError(f"`softmax` must be 'auto', True or False. Received: {softmax!r}")
    indices = runner.resolve_class_index(x, class_index)
    outputs = runner.predict(x)
    if softmax == "auto":
        softmax = not (
            outputs.min() >= 0 and outputs.max() <= 1 and np.allclose(outputs.sum(-1), 1, atol=1e-3)
        )

    def probabilities(batch, c):
        scores = np.concatenate(
            [runner.predict(chunk) for chunk in runner._chunks(tf.constant(batch))]
        )
        if softmax:
            scores = tf.nn.softmax(scores).numpy()
        return scores[:, c]

    def canvas(kind, image):
        if isinstance(kind, str):
            if kind != "blur":
                raise ValueError(f"A baseline must be a number or 'blur'. Received: {kind!r}")
            return _gaussian_blur(image[None], max(1.0, image.shape[0] / 16))[0]
        return np.full_like(image, float(kind))

    height, width = x.shape[1:3]
    counts = np.round(np.linspace(0, 1, steps + 1) * height * width).astype(int)
    deletion, insertion = [], []
    for image, heatmap, c in zip(x, maps, indices, strict=True):
        order = np.argsort(-heatmap.ravel(), kind="stable")
        masks = np.zeros((steps + 1, height * width), "float32")
        for k, n in enumerate(counts):
            masks[k, order[:n]] = 1
        masks = masks.reshape(steps + 1, height, width, 1)
        removed, background = canvas(deletion_baseline, image), canvas(insertion_baseline, image)
        deletion.append(probabilities(image * (1 - masks) + removed * masks, c))
        insertion.append(probabilities(background * (1 - masks) + image * masks, c))
    fractions = counts / (height * width)
    deletion, insertion = np.asarray(deletion), np.asarray(insertion)
    return {
        "fractions": fractions,
        "deletion": deletion,
        "insertion": insertion,
        "deletion_auc": np.trapezoid(deletion, fractions, axis=1),
        "insertion_auc": np.trapezoid(insertion, fractions, axis=1),
    }
