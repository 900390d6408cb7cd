"""Exact resume after a kill: `ExactBackupAndRestore` and the resumable input `ResumableDataset`.

Keras' `BackupAndRestore` saves the weights, the optimizer variables and `{epoch, batch}` but
restores only the epoch: a mid-epoch resume replays the whole epoch, and the SeedGenerator
states, the global random state, the shuffle order and the position in the data are lost, so a
resumed run with Dropout or a reshuffling pipeline ends elsewhere than an uninterrupted one.

`ExactBackupAndRestore` saves, every `save_freq` steps and at each epoch end:

- every model variable, SeedGenerator states included (`model.variables`), and the optimizer's
  variables (its step counter included);
- the global random state: Keras' global SeedGenerator, Python's `random`, NumPy's global
  generator and TensorFlow's global `tf.random.Generator`;
- the position: the number of training batches so far, i.e. the epoch and the step within it.

On restart it restores all of it, makes `fit` start at the saved epoch, and starts the
`ResumableDataset` stream at the saved batch. The stream is endless and `fit` gets
`steps_per_epoch=data.steps_per_epoch`: Keras then keeps one iterator for the whole `fit` and
never runs a step into an exhausted input. (Keras 3.15 runs such a step at the end of each epoch
over a finite dataset of unknown length: it fails inside the compiled step after some stateful
ops have run — `optimizer.iterations` is incremented — and it then fixes the epoch length to the
first epoch's, so a shortened resumed epoch would shorten every later one.) The callback stops
`fit` when the total number of batches is reached. The dataset's
order is a stateless function of `(seed, epoch)` (`tf.random.experimental.index_shuffle`) and
its augmentation a stateless function of `(seed, epoch, element)`, so the resumed run sees the
same batches in the same order with the same augmentation. Keras 3's `fit` does not accept a
`tf.data` iterator, so a checkpointed iterator could not be handed to it; skipping into an
epoch-keyed order does the same job.

Writes are atomic: a checkpoint is written to a temporary folder inside `backup_dir`, renamed
into place, and only then does the `checkpoint.json` pointer move to it (`os.replace`); the
previous checkpoint is deleted after that. A kill at any moment leaves the pointer on a complete
checkpoint. Under `MultiWorkerMirroredStrategy` only the chief writes `backup_dir`; the other
workers write to a temporary folder of their own and delete it, as tf.distribute expects.

Not covered: random ops that keep hidden kernel state (`tf.random.uniform` with an op seed,
`tf.data.Dataset.shuffle`); use stateless ops or Keras' seeded ops, as this package's layers do.
Compiled metrics are not saved: the epoch-mean logs of a resumed epoch cover its own batches.
Bit-exact equality also needs deterministic kernels (`tf.config.experimental.
enable_op_determinism()`, as in `examples/exact_resume.py`).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import uuid
import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_cnn_ext.training.multi_worker import is_chief

POINTER = "checkpoint.json"
FORMAT = "keras_cnn_ext.exact_resume/1"
_TMP_PREFIX = ".tmp-"


def _check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"`{name}` must be a positive integer. Received: {value!r} of type {type(value)}"
        )
    if value < 1:
        raise ValueError(f"`{name}` must be a positive integer. Received: {value!r}")
    return int(value)


class ResumableDataset:
    """In-memory arrays as an endless `tf.data` stream of batches that a resumed run skips into.

    Epoch `e` visits the examples in the order `index_shuffle(i, seed=(seed, e))`, a stateless
    permutation (`tf.random.experimental.index_shuffle`), and `augment(x, y, seed)` gets the
    stateless seed `(seed, e * n + index)` of each example. The stream runs epoch after epoch
    without end; give `fit` `steps_per_epoch=data.steps_per_epoch` so that Keras keeps one
    iterator and never runs a step into an exhausted input (Keras 3.15 counts such a step in
    `optimizer.iterations` and may run its stateless side effects). `set_position(epoch, step)`
    makes the next iterator start at batch `step` of epoch `epoch`; `ExactBackupAndRestore`
    calls it when it restores a checkpoint.

    Args:
        x: the inputs, an array (or a tuple of arrays) with the examples on the first axis.
        y: the targets, or `None`.
        batch_size: the (global) batch size. Default 32.
        shuffle: whether to permute the examples every epoch. Default True.
        seed: the permutation and augmentation seed, a non-negative int. Default 0.
        augment: optional `fn(x, y, seed) -> (x, y)` on one example, with `seed` a `(2,)` int32
            tensor for `tf.random.stateless_*` / `tf.image.stateless_*` ops.
        drop_remainder: drop each epoch's last, smaller batch. Default False.

    Example:

    >>> data = ResumableDataset(np.arange(10.0), np.arange(10), batch_size=4, seed=1)
    >>> data.steps_per_epoch
    3
    >>> data.set_position(epoch=0, step=2)
    >>> [len(b[0]) for b in data.dataset.take(2)]
    [2, 4]
    """

    def __init__(
        self, x, y=None, batch_size=32, shuffle=True, seed=0, augment=None, drop_remainder=False
    ):
        self.batch_size = _check_positive_int(batch_size, "batch_size")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"`seed` must be a non-negative integer. Received: {seed!r}")
        if augment is not None and not callable(augment):
            raise TypeError(f"`augment` must be callable or None. Received: {augment!r}")
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.augment = augment
        self.drop_remainder = bool(drop_remainder)
        lengths = {len(a) for a in tf.nest.flatten((x, y)) if a is not None}
        if len(lengths) != 1:
            raise ValueError(
                "`x` and `y` must hold the same number of examples on their first axis. "
                f"Received lengths: {sorted(lengths)}"
            )
        self.num_examples = lengths.pop()
        if self.num_examples < self.batch_size and self.drop_remainder:
            raise ValueError(
                f"`batch_size` ({self.batch_size}) exceeds the {self.num_examples} examples "
                "with `drop_remainder=True`: every batch would be dropped."
            )
        if self.num_examples < 1:
            raise ValueError("`x` must hold at least one example. Received: 0")
        self._x = tf.nest.map_structure(tf.convert_to_tensor, x)
        self._y = None if y is None else tf.nest.map_structure(tf.convert_to_tensor, y)
        # Read when an iterator starts (after `ExactBackupAndRestore.on_train_begin`).
        self._epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="resume_epoch")
        self._skip = tf.Variable(0, dtype=tf.int64, trainable=False, name="resume_skip")
        self.dataset = self._make_dataset()

    @property
    def steps_per_epoch(self):
        """Batches in one epoch: pass it to `fit(steps_per_epoch=...)`."""
        if self.drop_remainder:
            return self.num_examples // self.batch_size
        return -(-self.num_examples // self.batch_size)

    def set_position(self, epoch, step=0):
        """The next iterator starts at batch `step` of epoch `epoch`."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"`epoch` must be a non-negative integer. Received: {epoch!r}")
        if not 0 <= step < self.steps_per_epoch:
            raise ValueError(
                f"`step` must be in [0, {self.steps_per_epoch}) for this dataset. Received: {step}"
            )
        self._epoch.assign(int(epoch))
        self._skip.assign(int(step))

    def _make_dataset(self):
        n, batch = self.num_examples, self.batch_size
        stop = self.steps_per_epoch * batch

        def epoch_indices(epoch, first_epoch, skip):
            start = tf.where(tf.equal(epoch, first_epoch), skip * batch, tf.constant(0, tf.int64))
            positions = tf.range(start, tf.minimum(stop, n), dtype=tf.int64)
            if self.shuffle:
                key = tf.stack([tf.constant(self.seed, tf.int64), epoch])
                positions = tf.random.experimental.index_shuffle(
                    positions, seed=key, max_index=n - 1
                )
            epochs = tf.fill(tf.shape(positions), epoch)
            return tf.data.Dataset.from_tensor_slices((positions, epochs))

        def example(index, epoch):
            x = tf.nest.map_structure(lambda a: tf.gather(a, index), self._x)
            y = None
            if self._y is not None:
                y = tf.nest.map_structure(lambda a: tf.gather(a, index), self._y)
            if self.augment is not None:
                seed = tf.cast(
                    tf.stack([tf.constant(self.seed, tf.int64), epoch * n + index]), tf.int32
                )
                x, y = self.augment(x, y, seed)
            return x if y is None else (x, y)

        def stream(_):
            first, skip = self._epoch.read_value(), self._skip.read_value()
            # Batched per epoch, so a batch never straddles two epochs.
            return tf.data.Dataset.range(first, tf.int64.max).flat_map(
                lambda e: (
                    epoch_indices(e, first, skip)
                    .map(example)
                    .batch(batch, drop_remainder=self.drop_remainder)
                )
            )

        return tf.data.Dataset.from_tensors(0).flat_map(stream).prefetch(2)


def _fingerprint(variables):
    return [[v.path, list(v.shape), str(v.dtype)] for v in variables]


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _keras_global_seed_generator():
    # The generator behind `keras.random.*(seed=None)`; Keras exposes it only privately.
    from keras.src.random.seed_generator import global_seed_generator

    return global_seed_generator()


def _tf_global_generator():
    """TF's global `tf.random.Generator` if one was created; never creates it.

    (`tf.random.get_global_generator()` would create one, which op determinism forbids.)
    """
    try:
        from tensorflow.python.ops import stateful_random_ops

        return stateful_random_ops.global_generator
    except (ImportError, AttributeError):  # pragma: no cover - a TF that moved it
        return None


def _global_rng_state():
    np_state = np.random.get_state()  # noqa: NPY002 - the legacy global state users seed
    arrays = {"rng/numpy_keys": np_state[1]}
    info = {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    arrays["rng/keras_global"] = np.asarray(_keras_global_seed_generator().state.numpy())
    generator = _tf_global_generator()
    if generator is not None:
        arrays["rng/tf_global"] = generator.state.numpy()
    return info, arrays


def _set_global_rng_state(info, arrays):
    version, internal, gauss = info["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, pos, has_gauss, cached = info["numpy"]
    np.random.set_state((kind, arrays["rng/numpy_keys"], pos, has_gauss, cached))  # noqa: NPY002
    _keras_global_seed_generator().state.assign(arrays["rng/keras_global"])
    if "rng/tf_global" in arrays:
        # Created on demand, as `tf.random.get_global_generator()` would, then restored.
        generator = _tf_global_generator() or tf.random.get_global_generator()
        generator.state.assign(arrays["rng/tf_global"])


class ExactBackupAndRestore(keras.callbacks.Callback):
    """Checkpoints everything a run needs to continue bit-exactly after a kill, and restores it.

    A drop-in for `keras.callbacks.BackupAndRestore` (same `backup_dir`, `save_freq` and
    `delete_checkpoint` arguments) that also resumes mid-epoch, the random state and the data
    position; see this module's docstring for what is saved and how the writes stay atomic.

    Args:
        backup_dir: the folder of the checkpoints (shared storage under multi-worker). A folder
            holding anything else than this callback's checkpoints is refused.
        data: the `ResumableDataset` whose `dataset` is given to `fit` (with
            `steps_per_epoch=data.steps_per_epoch`), or `None`: then only epoch boundaries
            are restored, `save_freq` must be `"epoch"`, and the data order is the caller's.
        save_freq: `"epoch"` (at each epoch end) or an int `N`: every `N` training steps and at
            each epoch end. Default `"epoch"`.
        delete_checkpoint: delete the checkpoints when training ends normally, as Keras does.
            Default True.

    Raises (at the start of `fit`):
        ValueError: if `backup_dir` holds a checkpoint of a model with other variables (names,
            shapes or dtypes), a checkpoint that is incomplete or corrupted, or other files.

    Example:

    >>> import tempfile
    >>> data = ResumableDataset(np.ones((8, 2)), np.zeros(8), batch_size=4)
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> model.compile("sgd", "mse")
    >>> backup = ExactBackupAndRestore(tempfile.mkdtemp(), data=data, save_freq=1)
    >>> history = model.fit(data.dataset, epochs=2, steps_per_epoch=data.steps_per_epoch,
    ...                     callbacks=[backup], verbose=0)
    >>> int(model.optimizer.iterations)
    4

    A resumed run is exact step by step (weights, optimizer, random state, data). Its first
    epoch ends `step` batches early, where the interrupted epoch stopped; each later epoch of
    the resumed `fit` then covers the end of one data epoch and the start of the next, so
    epoch-keyed callbacks (e.g. `LearningRateScheduler`) would see shifted boundaries: use
    step-keyed schedules (`keras.optimizers.schedules`) for exact resumes.
    """

    def __init__(self, backup_dir, data=None, save_freq="epoch", delete_checkpoint=True):
        super().__init__()
        if not isinstance(backup_dir, (str, os.PathLike)) or not str(backup_dir):
            raise TypeError(f"`backup_dir` must be a folder path. Received: {backup_dir!r}")
        if data is not None and not isinstance(data, ResumableDataset):
            raise TypeError(
                f"`data` must be a ResumableDataset or None. Received: {data!r} of type "
                f"{type(data)}"
            )
        if save_freq != "epoch":
            save_freq = _check_positive_int(save_freq, "save_freq")
            if data is None:
                raise ValueError(
                    "`save_freq` in steps needs `data=ResumableDataset(...)` to know the "
                    f"position in the data; without it use 'epoch'. Received: {save_freq!r}"
                )
        self.backup_dir = os.fspath(backup_dir)
        self.data = data
        self.save_freq = save_freq
        self.delete_checkpoint = bool(delete_checkpoint)
        self.resumed_from = None  # (epoch, step) restored by the last `fit`, None if fresh
        self._batches = 0  # training batches since the first run began (saved, restored)
        if save_freq == "epoch":
            # No batch hook: Keras then dispatches batch callbacks asynchronously instead of
            # waiting on every step (10% of a LeNet-5 epoch here). Epochs give the position.
            self.on_train_batch_end = keras.callbacks.Callback.on_train_batch_end.__get__(self)

    # ---- what is saved -------------------------------------------------------------------
    def _state_variables(self):
        model = self.model
        optimizer = model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(model.trainable_variables)
        variables = list(model.variables)
        if optimizer is not None:
            variables += list(optimizer.variables)
        return variables

    # ---- reading -------------------------------------------------------------------------
    def _read_pointer(self):
        """The pointer's content, `None` for a fresh start; raises for a foreign folder."""
        folder = self.backup_dir
        if not os.path.isdir(folder):
            if os.path.exists(folder):
                raise ValueError(f"`backup_dir` must be a folder. Received a file: {folder!r}")
            return None
        entries = sorted(os.listdir(folder))
        pointer = os.path.join(folder, POINTER)
        if not os.path.exists(pointer):
            others = [e for e in entries if not e.startswith(_TMP_PREFIX)]
            if others:
                raise ValueError(
                    f"`backup_dir` {folder!r} holds files that are not an exact-resume checkpoint "
                    f"(no {POINTER}): {others[:5]}. Refusing to start over and overwrite them; "
                    "pass an empty or new folder."
                )
            if entries:
                warnings.warn(
                    f"`backup_dir` {folder!r} holds only unfinished checkpoint writes {entries}: "
                    "no checkpoint was completed, training starts from the beginning.",
                    stacklevel=3,
                )
            return None
        try:
            with open(pointer) as f:
                info = json.load(f)
            if info.get("format") != FORMAT:
                raise ValueError(f"unknown format {info.get('format')!r}")
        except (OSError, ValueError) as error:
            raise ValueError(
                f"The checkpoint pointer {pointer!r} is unreadable or half-written ({error}). "
                "Refusing to start over and overwrite the checkpoint."
            ) from None
        return info

    def _load(self, info):
        folder = os.path.join(self.backup_dir, info["checkpoint"])
        state_path = os.path.join(folder, "state.npz")
        meta_path = os.path.join(folder, "meta.json")
        if not (os.path.isfile(state_path) and os.path.isfile(meta_path)):
            raise ValueError(
                f"The checkpoint {folder!r} named by {POINTER} is incomplete (state.npz or "
                "meta.json missing): half-written or partly deleted. Refusing to start over."
            )
        if _sha256(state_path) != info.get("sha256"):
            raise ValueError(
                f"The checkpoint {state_path!r} does not match the checksum in {POINTER}: it is "
                "half-written or corrupted. Refusing to start over."
            )
        with open(meta_path) as f:
            meta = json.load(f)
        variables = self._state_variables()
        expected = _fingerprint(variables)
        saved = meta["variables"]
        # Names are auto-numbered per process (`conv2d_1`), so shapes and dtypes decide.
        if [s[1:] for s in saved] != [e[1:] for e in expected]:
            diffs = [
                f"{s[0]} {tuple(s[1])} {s[2]} vs {e[0]} {tuple(e[1])} {e[2]}"
                for s, e in zip(saved, expected, strict=False)
                if s[1:] != e[1:]
            ][:3]
            raise ValueError(
                f"The checkpoint in `backup_dir` {self.backup_dir!r} belongs to a different "
                f"model or optimizer: {len(saved)} saved variables against {len(expected)} "
                f"in this model; first differences (saved vs model): {diffs}. Use another "
                "`backup_dir` for another model."
            )
        with np.load(state_path, allow_pickle=False) as arrays:
            arrays = dict(arrays)
        for i, variable in enumerate(variables):
            variable.assign(arrays[f"var/{i}"])
        _set_global_rng_state(meta["rng"], arrays)
        self._batches = int(meta["batches"])
        return meta["epoch"], meta["step"]

    # ---- writing -------------------------------------------------------------------------
    def _write_payload(self, folder, arrays, meta):
        """Writes the checkpoint files into `folder` (a fresh temporary folder)."""
        with open(os.path.join(folder, "state.npz"), "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        with open(os.path.join(folder, "meta.json"), "w") as f:
            json.dump(meta, f)
            f.flush()
            os.fsync(f.fileno())

    def _save(self, epoch):
        if self.data is not None:
            epoch, step = divmod(self._batches, self.data.steps_per_epoch)
        else:
            epoch, step = epoch + 1, 0  # epoch boundaries only
        variables = self._state_variables()
        rng_info, arrays = _global_rng_state()
        for i, v in enumerate(variables):
            arrays[f"var/{i}"] = np.asarray(v.numpy())
        meta = {
            "format": FORMAT,
            "epoch": int(epoch),
            "step": int(step),
            "batches": int(self._batches),
            "iterations": int(self.model.optimizer.iterations.numpy()),
            "variables": _fingerprint(variables),
            "rng": rng_info,
        }
        chief = is_chief(self.model.distribute_strategy)
        if chief:
            root = self.backup_dir
        else:
            # Non-chief workers write to a folder of their own and delete it.
            root = os.path.join(self.backup_dir, f"{_TMP_PREFIX}worker-{uuid.uuid4().hex}")
        os.makedirs(root, exist_ok=True)
        name = f"ckpt-{self._batches:012d}-{epoch}-{step}"
        tmp = os.path.join(root, f"{_TMP_PREFIX}{uuid.uuid4().hex}")
        os.makedirs(tmp)
        self._write_payload(tmp, arrays, meta)
        if not chief:
            shutil.rmtree(root, ignore_errors=True)
            return
        final = os.path.join(root, name)
        if os.path.exists(final):
            shutil.rmtree(final)
        os.rename(tmp, final)
        pointer = {
            "format": FORMAT,
            "checkpoint": name,
            "sha256": _sha256(os.path.join(final, "state.npz")),
            "epoch": int(epoch),
            "step": int(step),
        }
        tmp_pointer = os.path.join(root, f"{_TMP_PREFIX}{uuid.uuid4().hex}.json")
        with open(tmp_pointer, "w") as f:
            json.dump(pointer, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_pointer, os.path.join(root, POINTER))
        for entry in os.listdir(root):
            if entry not in (name, POINTER) and (
                entry.startswith("ckpt-") or entry.startswith(_TMP_PREFIX)
            ):
                path = os.path.join(root, entry)
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.remove(path)

    # ---- callback hooks ------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        if self.data is not None and self.params.get("steps") != self.data.steps_per_epoch:
            raise ValueError(
                "With `data=ResumableDataset(...)`, call `fit(data.dataset, steps_per_epoch="
                f"data.steps_per_epoch)` (= {self.data.steps_per_epoch}). Received: "
                f"steps_per_epoch={self.params.get('steps')!r}"
            )
        info = self._read_pointer()
        self._batches = 0
        self.resumed_from = None
        epoch, step = 0, 0
        if info is not None:
            epoch, step = self._load(info)
            if step and self.save_freq == "epoch":
                raise ValueError(
                    f"The checkpoint in `backup_dir` {self.backup_dir!r} was taken inside epoch "
                    f"{epoch} (step {step}); resuming it needs an integer `save_freq` (steps), "
                    "as the run that wrote it had. Received: save_freq='epoch'"
                )
            self.resumed_from = (epoch, step)
            # `fit` reads `_initial_epoch` right after on_train_begin (as BackupAndRestore uses).
            self.model._initial_epoch = epoch
        if self.data is not None:
            self.data.set_position(epoch, step)

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1
        if self.data is not None and self._batches >= (
            self.params["epochs"] * self.data.steps_per_epoch
        ):
            # A resumed run's last epoch ends where the uninterrupted run's does.
            self.model.stop_training = True
        if self.save_freq != "epoch" and self._batches % self.save_freq == 0:
            self._save(None)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch" and self.data is not None:
            self._batches = (epoch + 1) * self.data.steps_per_epoch  # whole epochs only
        self._save(epoch)

    def on_train_end(self, logs=None):
        # Reached only when `fit` returns normally (an exception or a kill skips it).
        if not self.delete_checkpoint or not is_chief(self.model.distribute_strategy):
            return
        if not os.path.isdir(self.backup_dir):
            return
        for entry in os.listdir(self.backup_dir):
            path = os.path.join(self.backup_dir, entry)
            if entry.startswith("ckpt-") and os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
        pointer = os.path.join(self.backup_dir, POINTER)
        if os.path.exists(pointer):
            os.remove(pointer)
