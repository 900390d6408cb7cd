"""`TeacherCache`: the teacher's outputs computed once per dataset, in memory or memory-mapped.

A cached logit must belong to the image the student sees. So the cache owns the pairing: it
stores each sample's teacher outputs beside the sample's index, and its `dataset()` shuffles
indices and gathers images, labels and teacher outputs together. It refuses what would break
the pairing: a source dataset whose elements change between iterations (a shuffle or a random
map inside it), and a random `augment` unless `augment_copies` asks for a fixed number of
augmented copies, each stored with its own teacher outputs.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import tempfile

import keras
import numpy as np
import tensorflow as tf

from keras_cnn_ext.distillation.trainer import LABELS_KEY, TEACHER_KEY
from keras_cnn_ext.utils import check_seed

STORAGES = ("memory", "disk")
_MANIFEST = "teacher_cache.json"


def teacher_fingerprint(distillation):
    """A SHA-256 of the teacher's weights and the feature terms' configs."""
    digest = hashlib.sha256()
    for weights in distillation.teacher.get_weights():
        digest.update(str(weights.shape).encode())
        digest.update(np.ascontiguousarray(weights).tobytes())
    for term in distillation.feature_losses:
        digest.update(json.dumps(term.get_config(), sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _positive_int(value, name, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    return int(value)


def _numpy_tree(value):
    return tf.nest.map_structure(lambda t: np.asarray(t), value)


def _same(a, b):
    flat_a, flat_b = tf.nest.flatten(a), tf.nest.flatten(b)
    return len(flat_a) == len(flat_b) and all(
        np.shape(u) == np.shape(v) and np.array_equal(u, v)
        for u, v in zip(flat_a, flat_b, strict=True)
    )


def _materialize_dataset(dataset, input_rank):
    """`(x, y, sample_weight)` arrays from a finite, deterministic `tf.data.Dataset`."""
    # Two iterations of the same dataset object: a reshuffle or a random map shows up here.
    first = [_numpy_tree(next(iter(dataset))) for _ in range(2)]
    if not _same(first[0], first[1]):
        raise ValueError(
            "`x` is a tf.data.Dataset whose elements change between iterations (a shuffle "
            "or a random augmentation inside it): cached teacher outputs would be paired with "
            "other images than the student sees. Pass the unshuffled, unaugmented data and "
            "let `TeacherCache.dataset(shuffle=True)` shuffle, with `augment=` for augmentation."
        )
    if dataset.cardinality() == tf.data.INFINITE_CARDINALITY:
        raise ValueError("`x` must be a finite dataset; received an infinite (repeated) one.")
    parts = []
    for element in dataset:
        element = element if isinstance(element, tuple) else (element,)
        if len(element) > 3:
            raise ValueError(
                "`x` must yield `(x, y)` or `(x, y, sample_weight)` elements. Received "
                f"elements of {len(element)} parts."
            )
        parts.append([np.asarray(e) for e in element])
    if not parts:
        raise ValueError("`x` is an empty dataset.")
    batched = parts[0][0].ndim == input_rank
    columns = []
    for i in range(len(parts[0])):
        pieces = [p[i] for p in parts]
        columns.append(np.concatenate(pieces) if batched else np.stack(pieces))
    columns += [None] * (3 - len(columns))
    return columns


def _random_layers(augment):
    """Whether `augment` (a Keras layer or model) holds a `keras.random.SeedGenerator`."""
    if not isinstance(augment, keras.layers.Layer):
        return False
    for layer in augment._flatten_layers(include_self=True):
        if any(isinstance(v, keras.random.SeedGenerator) for v in vars(layer).values()):
            return True
    return False


def _apply(augment, x):
    if isinstance(augment, keras.layers.Layer):
        return keras.ops.convert_to_numpy(augment(x, training=True))
    return keras.ops.convert_to_numpy(augment(x))


def is_random_augmentation(augment, sample):
    """Whether `augment` is random: it holds seed generators, or two calls on `sample` differ."""
    if _random_layers(augment):
        return True
    return not np.array_equal(_apply(augment, sample), _apply(augment, sample))


class TeacherCache:
    """The teacher's outputs (logits and feature targets) on a dataset, computed once.

    Build it from arrays (or a finite, deterministic `tf.data.Dataset`), then train with
    `student.fit(cache.dataset(batch_size=...), ...)`: later epochs never run the teacher.
    Its elements are `(x, packed_targets[, sample_weight])`, which the student's distillation
    step (and `evaluate`) unpacks; the packed targets hold the labels and the teacher outputs
    of exactly these images.

    Augmentation: `augment` (a callable or Keras layer applied to a batch of images) is
    applied before the teacher sees the images. A deterministic `augment` is applied once. A
    random one is refused unless `augment_copies=k`: then `k` augmented copies of the data are
    stored, each with its own teacher outputs, and every epoch each sample is drawn from a
    random copy (image and teacher outputs together). Randomness is detected from seed
    generators inside a Keras layer and by calling `augment` twice on the same images.

    Args:
        distillation: the `Distillation` whose teacher and feature terms define the outputs.
        x: images, an array `(samples, ...)`, or a `tf.data.Dataset` of `(x, y[, weight])`
            (batched or not) that yields the same elements on every iteration.
        y: labels, when `x` is an array.
        sample_weight: optional per-sample weights, when `x` is an array.
        batch_size: the batch size of the teacher's passes. Default 256.
        augment: `None` (default), or a callable / Keras layer mapping an image batch to an
            augmented batch.
        augment_copies: `None`, or the number of augmented copies to cache for a random
            `augment`.
        storage: `"memory"` (default; array inputs are referenced, not copied) or `"disk"`:
            images, labels, weights and teacher outputs as memory-mapped `.npy` files in
            `directory` (each written under a temporary name and renamed when complete), with
            a manifest holding the teacher's fingerprint; `TeacherCache.load(directory)` (or
            `from_config`) reopens it in a later run.
        directory: the folder for `storage="disk"`.

    Attributes:
        num_samples: samples per copy. copies: the number of (augmented) copies.
        teacher_samples: how many images the teacher has processed (`num_samples * copies`).

    Example:

    ```python
    cache = TeacherCache(kd, x_train, y_train)        # or kd.cache(x_train, y_train)
    student.fit(cache.dataset(batch_size=64, seed=0), epochs=20)
    ```
    """

    def __init__(
        self,
        distillation,
        x,
        y=None,
        sample_weight=None,
        *,
        batch_size=256,
        augment=None,
        augment_copies=None,
        storage="memory",
        directory=None,
    ):
        if not all(hasattr(distillation, a) for a in ("teacher_function", "teacher_output_spec")):
            raise TypeError(
                "`distillation` must be a keras_cnn_ext Distillation. Received: "
                f"{distillation!r} of type {type(distillation)}"
            )
        if storage not in STORAGES:
            raise ValueError(f"`storage` must be one of {STORAGES}. Received: {storage!r}")
        if storage == "disk" and not directory:
            raise ValueError("`storage='disk'` needs a `directory`. Received: directory=None")
        batch_size = _positive_int(batch_size, "batch_size")
        augment_copies = _positive_int(augment_copies, "augment_copies", allow_none=True)
        if augment is not None and not callable(augment):
            raise TypeError(f"`augment` must be None or callable. Received: {augment!r}")
        if augment is None and augment_copies not in (None, 1):
            raise ValueError(
                "`augment_copies` applies to a random `augment`; without one every copy would "
                f"be the same. Received: augment=None, augment_copies={augment_copies}"
            )
        self.distillation = distillation
        self.storage = storage
        self.directory = directory
        input_rank = len(distillation.teacher.inputs[0].shape)
        if isinstance(x, tf.data.Dataset):
            if y is not None or sample_weight is not None:
                raise ValueError(
                    "With a tf.data.Dataset `x`, labels and weights come from its elements; "
                    "`y` and `sample_weight` must be None."
                )
            x, y, sample_weight = _materialize_dataset(x, input_rank)
        else:
            x = np.asarray(x)
            if x.ndim != input_rank:
                raise ValueError(
                    f"`x` must be a batch of teacher inputs of rank {input_rank} (the teacher's "
                    f"input is {tuple(distillation.teacher.inputs[0].shape)}). Received shape "
                    f"{x.shape}"
                )
        if y is None:
            raise ValueError(
                "`y` is required: the student's compiled (label) loss is part of distillation."
            )
        y = np.asarray(y)
        sample_weight = None if sample_weight is None else np.asarray(sample_weight, "float32")
        for name, value in (("y", y), ("sample_weight", sample_weight)):
            if value is not None and len(value) != len(x):
                raise ValueError(
                    f"`{name}` must have one entry per sample of `x` ({len(x)}). Received "
                    f"{len(value)}"
                )
        self.num_samples = len(x)
        if self.num_samples == 0:
            raise ValueError("`x` holds no samples.")

        copies = 1
        if augment is not None:
            if is_random_augmentation(augment, x[: min(8, len(x))]):
                if augment_copies is None:
                    raise ValueError(
                        "`augment` is random: a cached teacher output would belong to another "
                        "draw of the augmentation than the image the student sees. Pass "
                        "`augment_copies=k` to cache k augmented copies (each with its own "
                        "teacher outputs), or train without the cache (the Distillation then "
                        "runs the teacher on every augmented batch)."
                    )
                copies = augment_copies
        self.copies = copies
        self._y, self._sample_weight = y, sample_weight
        self.teacher_samples = 0
        self._build(x, augment, batch_size)

    # ------------------------------------------------------------------ building

    def _allocate(self, name, shape, dtype):
        if self.storage == "memory":
            return np.empty(shape, dtype)
        os.makedirs(self.directory, exist_ok=True)
        path = os.path.join(self.directory, f"{name}.npy.partial")
        return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)

    def _finish(self, name, array):
        """Flushes a disk array, renames it into place, and reopens it read-only."""
        if self.storage == "memory":
            return array
        array.flush()
        del array
        final = os.path.join(self.directory, f"{name}.npy")
        os.replace(final + ".partial", final)
        return np.load(final, mmap_mode="r")

    def _store(self, name, array):
        """Keeps `array` as it is in memory; on disk, writes it (atomically) and maps it."""
        if self.storage == "memory" or array is None:
            return array
        copy = self._allocate(name, array.shape, array.dtype)
        copy[...] = array
        return self._finish(name, copy)

    def _build(self, x, augment, batch_size):
        spec = self.distillation.teacher_output_spec()
        self.keys = list(spec)
        teacher_fn = self.distillation.teacher_function()
        input_dtype = self.distillation.teacher.inputs[0].dtype
        n, copies = self.num_samples, self.copies
        outputs = {
            key: self._allocate(f"teacher_{key}", (copies, n, *shape), "float32")
            for key, shape in spec.items()
        }
        # Augmented images are stored with their outputs; on disk the images always are, so
        # that the folder alone is the cache (`TeacherCache.load`).
        keep_images = augment is not None or self.storage == "disk"
        images = self._allocate("x", (copies, n, *x.shape[1:]), x.dtype) if keep_images else None
        for copy in range(copies):
            for start in range(0, n, batch_size):
                batch = x[start : start + batch_size]
                if augment is not None:
                    batch = _apply(augment, batch).astype(x.dtype, copy=False)
                if images is not None:
                    images[copy, start : start + len(batch)] = batch
                result = teacher_fn(tf.cast(batch, input_dtype))
                self.teacher_samples += len(batch)
                for key in self.keys:
                    outputs[key][copy, start : start + len(batch)] = result[key].numpy()
        self._teacher = {key: self._finish(f"teacher_{key}", a) for key, a in outputs.items()}
        if images is None:
            self._x, self._x_has_copies = x, False
        else:
            self._x, self._x_has_copies = self._finish("x", images), True
        self._y = self._store("y", self._y)
        self._sample_weight = self._store("sample_weight", self._sample_weight)
        if self.storage == "disk":
            self._write_manifest(spec)

    def _write_manifest(self, spec):
        manifest = {
            "num_samples": self.num_samples,
            "copies": self.copies,
            "teacher_outputs": {key: list(shape) for key, shape in spec.items()},
            "sample_weight": self._sample_weight is not None,
            "fingerprint": teacher_fingerprint(self.distillation),
        }
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".partial")
        with os.fdopen(fd, "w") as f:
            json.dump(manifest, f, indent=1)
        os.replace(tmp, os.path.join(self.directory, _MANIFEST))

    @classmethod
    def load(cls, directory, distillation=None):
        """Reopens a `storage="disk"` cache from its folder (memory-mapped, read-only).

        With `distillation`, the teacher's weights and feature terms must be the ones the
        cache was built with (their fingerprint is in the folder's manifest), else a
        ValueError: outputs of another teacher are never used silently.
        """
        path = os.path.join(directory, _MANIFEST)
        if not os.path.exists(path):
            raise ValueError(
                f"`directory` holds no TeacherCache ({_MANIFEST} is missing). Received: "
                f"{directory!r}"
            )
        with open(path) as f:
            manifest = json.load(f)
        if (
            distillation is not None
            and teacher_fingerprint(distillation) != manifest["fingerprint"]
        ):
            raise ValueError(
                f"The cache in {directory!r} was built by another teacher or other feature "
                "terms than `distillation`'s; build a new cache."
            )
        cache = cls.__new__(cls)
        cache.distillation, cache.storage, cache.directory = distillation, "disk", directory
        cache.num_samples, cache.copies = manifest["num_samples"], manifest["copies"]
        cache.keys = list(manifest["teacher_outputs"])
        cache.teacher_samples = 0

        def mapped(name):
            return np.load(os.path.join(directory, f"{name}.npy"), mmap_mode="r")

        cache._teacher = {key: mapped(f"teacher_{key}") for key in cache.keys}
        cache._x, cache._x_has_copies, cache._y = mapped("x"), True, mapped("y")
        cache._sample_weight = mapped("sample_weight") if manifest["sample_weight"] else None
        return cache

    def get_config(self):
        if self.storage != "disk":
            raise ValueError(
                "A `storage='memory'` TeacherCache is data, not configuration; build it with "
                "`storage='disk'` to reopen it from its folder (`TeacherCache.load`)."
            )
        return {"directory": self.directory}

    @classmethod
    def from_config(cls, config):
        return cls.load(**config)

    # ------------------------------------------------------------------ reading

    def teacher_outputs(self, indices, copy=0):
        """The cached teacher outputs `{key: array}` of samples `indices` in copy `copy`."""
        indices = np.asarray(indices)
        return {key: np.asarray(a[copy, indices]) for key, a in self._teacher.items()}

    def images(self, indices, copy=0):
        """The images (augmented, for copy `copy`) the cached outputs belong to."""
        indices = np.asarray(indices)
        return np.asarray(self._x[copy, indices] if self._x_has_copies else self._x[indices])

    def dataset(self, batch_size=32, shuffle=True, seed=None, drop_remainder=False):
        """A `tf.data.Dataset` of `(x, packed_targets[, sample_weight])` batches for `fit`.

        Args:
            batch_size: the batch size. Default 32.
            shuffle: reshuffle the samples every epoch. Default True.
            seed: seed of the shuffle and of the choice of augmented copy. Default None.
            drop_remainder: drop the last incomplete batch. Default False.
        """
        batch_size = _positive_int(batch_size, "batch_size")
        seed = check_seed(seed)
        rng = np.random.default_rng(seed)
        has_weight = self._sample_weight is not None
        x_shape = self._x.shape[2:] if self._x_has_copies else self._x.shape[1:]
        shapes = [x_shape, self._y.shape[1:]]
        dtypes = [self._x.dtype, self._y.dtype]
        if has_weight:
            shapes.append(self._sample_weight.shape[1:])
            dtypes.append(np.dtype("float32"))
        shapes += [self._teacher[k].shape[2:] for k in self.keys]
        dtypes += [np.dtype("float32")] * len(self.keys)

        def fetch(indices):
            copy = (
                rng.integers(self.copies, size=len(indices))
                if self.copies > 1
                else np.zeros(len(indices), np.int64)
            )
            x = self._x[copy, indices] if self._x_has_copies else self._x[indices]
            values = [np.asarray(x), self._y[indices]]
            if has_weight:
                values.append(self._sample_weight[indices])
            values += [np.asarray(self._teacher[k][copy, indices]) for k in self.keys]
            return values

        def to_element(indices):
            values = tf.numpy_function(fetch, [indices], [tf.as_dtype(d) for d in dtypes])
            for value, shape in zip(values, shapes, strict=True):
                value.set_shape((None, *shape))
            x, y = values[0], values[1]
            teacher = dict(zip(self.keys, values[2 + has_weight :], strict=True))
            targets = {LABELS_KEY: y, TEACHER_KEY: teacher}
            return (x, targets, values[2]) if has_weight else (x, targets)

        indices = tf.data.Dataset.range(self.num_samples)
        if shuffle:
            indices = indices.shuffle(self.num_samples, seed=seed, reshuffle_each_iteration=True)
        batches = indices.batch(batch_size, drop_remainder=drop_remainder)
        return batches.map(to_element).prefetch(tf.data.AUTOTUNE)
