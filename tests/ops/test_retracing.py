"""Eager calls of every op on many shapes: no "triggered tf.function retracing" warning.

Some ops run nested `jit_compile=True` functions (the pooling gradients, fractional pooling's
forward pass); traced per input shape, they made TF log "5 out of the last 5 calls to
<function _pool_forward> triggered tf.function retracing" after a few eager calls.
"""

import logging

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.eager.polymorphic_function import polymorphic_function

from keras_cnn_ext import ops
from keras_cnn_ext.ops.adaptive_pool.bins import adaptive_bins

# Eight shapes (batch, height, width, channels): every size changes from one call to the next.
SHAPES = [(1 + i % 2, 9 + i, 8 + 2 * i, 2 + i % 3) for i in range(8)]


@pytest.fixture
def retracing_warnings(monkeypatch):
    """The retracing warnings TF logs while the test runs (with fresh per-function counters).

    TF warns at most twice per function per process, so earlier tests could use them up.
    """
    monkeypatch.setattr(
        polymorphic_function,
        "_frequent_tracing_detector_manager",
        polymorphic_function._FrequentTracingDetectorManager(),
    )
    messages = []

    class Collect(logging.Handler):
        def emit(self, record):
            if "retracing" in record.getMessage():
                messages.append(record.getMessage())

    handler = Collect()
    logger = tf.get_logger()
    logger.addHandler(handler)
    yield messages
    logger.removeHandler(handler)


def _adaptive_reference(x, output_size, mode, dy):
    """NumPy adaptive pooling (torch's bins) and its gradient (first maximum, row-major)."""
    (rs, re), (cs, ce) = (
        adaptive_bins(n, m) for n, m in zip(x.shape[1:3], output_size, strict=True)
    )
    y = np.zeros((x.shape[0], *output_size, x.shape[3]), x.dtype)
    dx = np.zeros_like(x)
    for i in range(output_size[0]):
        for j in range(output_size[1]):
            window = x[:, rs[i] : re[i], cs[j] : ce[j]]
            if mode == "avg":
                y[:, i, j] = window.mean(axis=(1, 2))
                dx[:, rs[i] : re[i], cs[j] : ce[j]] += (
                    dy[:, i : i + 1, j : j + 1] / window[0, ..., 0].size
                )
                continue
            y[:, i, j] = window.max(axis=(1, 2))
            flat = window.reshape(window.shape[0], -1, window.shape[3]).argmax(axis=1)
            for b in range(x.shape[0]):
                for c in range(x.shape[3]):
                    h, w = divmod(int(flat[b, c]), window.shape[2])
                    dx[b, rs[i] + h, cs[j] + w, c] += dy[b, i, j, c]
    return y, dx


def _fractional_reference(x, rows, cols, overlapping, dy):
    """NumPy fractional max pooling over the given sequences, and TF's own gradient kernel."""

    def windows(seq, size):
        return [
            (a, min(b + int(overlapping), size)) for a, b in zip(seq[:-1], seq[1:], strict=True)
        ]

    row_windows, col_windows = windows(rows, x.shape[1]), windows(cols, x.shape[2])
    y = np.stack(
        [
            np.stack([x[:, a:b, c:d].max(axis=(1, 2)) for c, d in col_windows], axis=1)
            for a, b in row_windows
        ],
        axis=1,
    )
    dx = tf.raw_ops.FractionalMaxPoolGrad(
        orig_input=x,
        orig_output=y,
        out_backprop=dy,
        row_pooling_sequence=rows,
        col_pooling_sequence=cols,
        overlapping=overlapping,
    )
    return y, dx.numpy()


def _eager_with_gradient(fn, x, seed):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        outputs = fn(x)
    y = outputs[0] if isinstance(outputs, tuple) else outputs
    dy = tf.constant(np.random.default_rng(seed).standard_normal(y.shape).astype(np.float32))
    return outputs, dy, tape.gradient(y, x, output_gradients=dy).numpy()


@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("output_size", [(3, 4), (1, 1)])
def test_adaptive_pooling_eager_on_many_shapes(retracing_warnings, mode, output_size):
    op = {"avg": ops.adaptive_avg_pool2d, "max": ops.adaptive_max_pool2d}[mode]
    # The last two keep the first one's height and width: the gradient compiled for that size
    # is traced again with batch and channels relaxed, and reused.
    for i, shape in enumerate([*SHAPES, (3, 9, 8, 5), (2, 9, 8, 1)]):
        x = np.random.default_rng(i).standard_normal(shape).astype(np.float32)
        y, dy, dx = _eager_with_gradient(lambda t: op(t, output_size), x, seed=i)
        ref_y, ref_dx = _adaptive_reference(x, output_size, mode, dy.numpy())
        np.testing.assert_allclose(y.numpy(), ref_y, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(dx, ref_dx, rtol=1e-5, atol=1e-6)
    assert retracing_warnings == []


@pytest.mark.parametrize("overlapping", [False, True])
def test_fractional_max_pool_eager_on_many_shapes(retracing_warnings, overlapping):
    for i, shape in enumerate(SHAPES):
        x = np.random.default_rng(i).standard_normal(shape).astype(np.float32)

        def pool(t, seed=i):
            return ops.fractional_max_pool2d(t, 1.5, overlapping=overlapping, seed=seed)

        (y, rows, cols), dy, dx = _eager_with_gradient(pool, x, seed=i)
        ref_y, ref_dx = _fractional_reference(x, rows.numpy(), cols.numpy(), overlapping, dy)
        np.testing.assert_array_equal(y.numpy(), ref_y)
        np.testing.assert_array_equal(dx, ref_dx)
    assert retracing_warnings == []


def _other_ops(x, seed):
    """Every other op of `keras_cnn_ext.ops` on `x`, with weights that fit its channels."""
    channels = x.shape[-1]
    rng = np.random.default_rng(seed)

    def weights(*shape):
        return tf.constant(rng.standard_normal(shape).astype(np.float32))

    return {
        "squeeze_excitation": ops.squeeze_excitation(
            x, weights(channels, 2), weights(2), weights(2, channels), weights(channels)
        ),
        "efficient_channel_attention": ops.efficient_channel_attention(x, weights(3, 1, 1)),
        "spatial_attention": ops.spatial_attention(x, weights(3, 3, 2, 1)),
        "drop_path": ops.drop_path(x, 0.3, tf.constant([seed, 1])),
        "drop_block_2d": ops.drop_block_2d(x, 0.2, 3, tf.constant([seed, 1])),
        "cutout": ops.cutout(x, 1, (3, 3), tf.constant([seed, 1])),
        "random_erasing": ops.random_erasing(x, tf.constant([seed, 1]), probability=1.0),
        "grouped_conv2d": ops.grouped_conv2d(
            x, weights(3, 3, 1, channels), channels, padding="same"
        ),
        "local_response_normalization": ops.local_response_normalization(x, depth_radius=1),
    }


def test_other_ops_eager_on_many_shapes(retracing_warnings):
    for i, shape in enumerate(SHAPES):
        x = tf.constant(np.random.default_rng(i).standard_normal(shape).astype(np.float32))
        for name, y in _other_ops(x, i).items():
            assert y.shape == x.shape[:3] + y.shape[3:], name
            assert np.all(np.isfinite(y.numpy())), name
    assert retracing_warnings == []
