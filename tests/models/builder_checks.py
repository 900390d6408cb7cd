"""Checks every architecture builder passes (imported by the tests in this folder).

`run_builder_check(check, build, x, y, loss)` builds a fresh model with the zero-argument
`build` callable, so checks do not share state, and runs one of `BUILDER_CHECKS`:

- `train_xla`: one `fit` step compiled with `jit_compile=True`; loss finite, weights change.
  (`train`: the same step as a plain `tf.function`, for variants whose layers the XLA check of
  another variant and the layer contract already cover: XLA-compiling a whole training step
  takes 15-30 s a model on 2 cores.)
- `mixed_precision`: the same architecture under `mixed_float16` with the float32 model's
  weights gives finite float32 outputs close to the float32 model's.
- `saving`: `.keras` round trip, identical outputs.

Exports are not checked here: tests/export/test_coverage.py converts every registered builder
and every variant these files check (`VARIANT_CASES`) to TFLite and ONNX in one combined model.
"""

from __future__ import annotations

import os
import tempfile
from unittest import mock

import keras
import numpy as np

from keras_cnn_ext.models import copy_weights

BUILDER_CHECKS = ("train_xla", "mixed_precision", "saving")


def _predict(model, x):
    return np.asarray(model(x, training=False))


def _check_train_xla(build, x, y, loss, jit_compile=True):
    keras.utils.set_random_seed(0)
    model = build()
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=loss, jit_compile=jit_compile)
    before = [np.array(w) for w in model.trainable_weights]
    history = model.fit(x, y, batch_size=len(x), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0]), history.history
    changed = [
        not np.array_equal(b, np.array(w))
        for b, w in zip(before, model.trainable_weights, strict=True)
    ]
    assert all(changed), f"{changed.count(False)} trainable weights did not change in one step"


def _check_train(build, x, y, loss):
    _check_train_xla(build, x, y, loss, jit_compile=False)


def _check_mixed_precision(build, x, y, loss):
    keras.utils.set_random_seed(0)
    reference = build()
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = build()
    finally:
        keras.config.set_dtype_policy(previous)
    assert any(layer.compute_dtype == "float16" for layer in model.layers)
    copy_weights(reference, model)
    out = model(x, training=False)
    assert keras.backend.standardize_dtype(out.dtype) == "float32", out.dtype  # float32 head
    out = np.asarray(out)
    assert np.all(np.isfinite(out))
    expected = _predict(reference, x)
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(out, expected, atol=5e-2 * scale)


def _check_saving(build, x, y, loss):
    model = build()
    expected = _predict(model, x)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        restored = keras.saving.load_model(path)
    np.testing.assert_allclose(_predict(restored, x), expected, atol=1e-6)
    assert restored.count_params() == model.count_params()


def run_builder_check(check, build, x, y, loss):
    """Runs one of `BUILDER_CHECKS` on a model made by `build()`."""
    return {
        "train_xla": _check_train_xla,
        "train": _check_train,
        "mixed_precision": _check_mixed_precision,
        "saving": _check_saving,
    }[check](build, x, y, loss)


def with_depth_row(table, depth, row, build):
    """`build`, run with `table[depth]` patched to `row` (e.g. one block per stage).

    The block code is the same at every depth; a shallower row checks it in less time.
    """

    def patched():
        with mock.patch.dict(table, {depth: row}):
            return build()

    return patched


def classification_data(shape, classes, batch=2, seed=0):
    """Small fixed inputs and one-hot labels."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, *shape)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, classes, size=batch), classes)
    return x, y
