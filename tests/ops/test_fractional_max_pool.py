"""fractional_max_pool2d against tf.nn.fractional_max_pool: sequences, outputs and gradients."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_cnn_ext.ops.fractional_max_pool import (
    fractional_max_pool2d,
    fractional_output_size,
    fractional_pooling_sequence,
)


def _tf_reference(x, ratios, pseudo_random, overlapping, seed, upstream):
    """TF's op (CPU, no XLA) and its registered gradient, through a GradientTape."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out, rows, cols = tf.nn.fractional_max_pool(
            x, [1.0, ratios[0], ratios[1], 1.0], pseudo_random, overlapping, seed=seed
        )
    return out, rows, cols, tape.gradient(out, x, output_gradients=upstream)


def _ours(x, ratios, overlapping, rows, cols, upstream, mode):
    """Our op with TF's sequences: constant sequences, in-graph sequences (compiled), or XLA."""
    x = tf.constant(x)
    if mode == "channels_first":
        x_in = tf.transpose(x, [0, 3, 1, 2])
        upstream = tf.transpose(upstream, [0, 3, 1, 2])
    else:
        x_in = x

    def run(t, r, c):
        with tf.GradientTape() as tape:
            tape.watch(t)
            out = fractional_max_pool2d(
                t,
                ratios,
                overlapping=overlapping,
                row_pooling_sequence=r,
                col_pooling_sequence=c,
                data_format="channels_first" if mode == "channels_first" else "channels_last",
            )[0]
        return out, tape.gradient(out, t, output_gradients=upstream)

    if mode in ("static", "channels_first"):
        out, grad = run(x_in, rows, cols)
    else:
        spec = tf.TensorSpec([None], tf.int64)
        fn = tf.function(run, jit_compile=(mode == "xla"))
        if mode == "dynamic":
            # Sequences and sizes unknown at trace time.
            fn = tf.function(
                run,
                input_signature=[
                    tf.TensorSpec([None, None, None, x.shape[-1]], x.dtype),
                    spec,
                    spec,
                ],
            )
        out, grad = fn(x_in, rows, cols)
    if mode == "channels_first":
        out, grad = tf.transpose(out, [0, 2, 3, 1]), tf.transpose(grad, [0, 2, 3, 1])
    return out, grad


def _check_against_tf(shape, ratios, pseudo_random, overlapping, seed, modes, ties):
    rng = np.random.default_rng(seed)
    if ties:  # small integers: many equal values, the tie-breaking must match TF's
        x = rng.integers(-2, 3, size=shape).astype(np.float64)
    else:
        x = rng.normal(size=shape).astype(np.float32)
    n_out = [fractional_output_size(s, r) for s, r in zip(shape[1:3], ratios, strict=True)]
    upstream = tf.constant(rng.normal(size=(shape[0], *n_out, shape[3])).astype(x.dtype))
    ref, rows, cols, ref_grad = _tf_reference(
        x, ratios, pseudo_random, overlapping, seed + 1, upstream
    )
    assert list(ref.shape[1:3]) == n_out
    for mode in modes:
        out, grad = _ours(x, ratios, overlapping, rows, cols, upstream, mode)
        np.testing.assert_array_equal(out.numpy(), ref.numpy(), err_msg=mode)
        # Bit-identical, summation order included.
        np.testing.assert_array_equal(grad.numpy(), ref_grad.numpy(), err_msg=mode)


GRID = [
    ((2, 16, 16, 3), (1.414, 1.414)),
    ((1, 17, 9, 2), (1.5, 1.2)),
    ((2, 9, 23, 1), (2.2, 1.73)),
    ((1, 25, 14, 2), (3.0, 2.9)),
    ((3, 7, 11, 2), (1.05, 2.5)),
]


@pytest.mark.parametrize("overlapping", [False, True])
@pytest.mark.parametrize("pseudo_random", [True, False])
@pytest.mark.parametrize("shape,ratios", GRID)
def test_matches_tf_op_grid(shape, ratios, pseudo_random, overlapping):
    # Integer data (many ties) with constant and with run-time sequences and sizes, then
    # continuous data.
    _check_against_tf(
        shape, ratios, pseudo_random, overlapping, seed=7, modes=("static", "dynamic"), ties=True
    )
    _check_against_tf(
        shape, ratios, pseudo_random, overlapping, seed=8, modes=("static",), ties=False
    )


@pytest.mark.parametrize("overlapping", [False, True])
def test_matches_tf_op_under_xla_and_channels_first(overlapping):
    _check_against_tf(
        (2, 19, 13, 3),
        (1.414, 1.7),
        True,
        overlapping,
        seed=3,
        modes=("xla", "channels_first"),
        ties=True,
    )


@settings(max_examples=12, deadline=None)
@given(
    h=st.integers(2, 30),
    w=st.integers(2, 30),
    rh=st.floats(1.001, 3.0),
    rw=st.floats(1.001, 3.0),
    pseudo_random=st.booleans(),
    overlapping=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_matches_tf_op_property(h, w, rh, rw, pseudo_random, overlapping, seed):
    if fractional_output_size(h, rh) < 1 or fractional_output_size(w, rw) < 1:
        return
    shape = (2, h, w, 2)
    # TF's gradient kernel refuses sequences with more entries than the input has elements.
    if (fractional_output_size(h, rh) + 1) * (fractional_output_size(w, rw) + 1) > np.prod(shape):
        return
    _check_against_tf(
        shape, (rh, rw), pseudo_random, overlapping, seed, modes=("static",), ties=seed % 2 == 0
    )


@pytest.mark.parametrize("pseudo_random", [True, False])
@pytest.mark.parametrize("size,ratio", [(64, 1.414), (23, 1.7), (10, 2.9), (9, 1.5), (5, 4.9)])
def test_sequences_follow_tf_rules(size, ratio, pseudo_random):
    n = fractional_output_size(size, ratio)
    k = size // n
    seen = set()
    for s in range(40):
        seq = fractional_pooling_sequence(size, n, tf.constant([s, 1]), pseudo_random).numpy()
        assert seq.dtype == np.int64 and seq[0] == 0 and seq[-1] == size and len(seq) == n + 1
        steps = np.diff(seq)
        if pseudo_random:
            assert steps.min() >= k - 1 and steps.max() <= k + 1
            # The interior boundaries follow ceil(alpha * (i + u)) for one u.
            alpha = size / n
            i = np.arange(1, n)
            lo = np.max((seq[1:-1] + 1) / alpha - 1 - i, initial=-np.inf)
            hi = np.min((seq[1:-1] + 1) / alpha - i, initial=np.inf)
            assert lo <= hi + 1e-9
        else:
            assert sorted(set(steps)) <= [k, k + 1]
            assert np.sum(steps == k + 1) == size % n
        seen.add(tuple(seq))
    if (size % n) and (size, ratio) != (5, 4.9):
        assert len(seen) > 1  # randomness reaches the sequence
    again = fractional_pooling_sequence(size, n, tf.constant([0, 1]), pseudo_random)
    first = fractional_pooling_sequence(size, n, tf.constant([0, 1]), pseudo_random)
    np.testing.assert_array_equal(again, first)


def test_pseudo_random_distribution_matches_tf():
    """Same rule, other random numbers: the boundary histograms agree statistically."""
    x = tf.zeros([1, 64, 1, 1])
    tf_rows = np.stack(
        [
            tf.nn.fractional_max_pool(x, [1, 1.414, 1, 1], True, seed=s + 1)[1].numpy()
            for s in range(300)
        ]
    )
    ours = np.stack(
        [fractional_pooling_sequence(64, 45, tf.constant([s, 9]), True).numpy() for s in range(300)]
    )
    # Mean boundary position and the share of 2-steps at each output index.
    np.testing.assert_allclose(ours.mean(0), tf_rows.mean(0), atol=0.12)
    np.testing.assert_allclose(
        (np.diff(ours) == 2).mean(0), (np.diff(tf_rows) == 2).mean(0), atol=0.15
    )


def test_seeded_and_reproducible_with_dynamic_sizes_and_xla():
    x = np.random.default_rng(0).normal(size=(2, 20, 15, 3)).astype(np.float32)
    seed = tf.constant([4, 2])
    eager = fractional_max_pool2d(x, (1.5, 1.3), overlapping=True, seed=seed)
    dynamic = tf.function(
        lambda t: fractional_max_pool2d(t, (1.5, 1.3), overlapping=True, seed=seed),
        input_signature=[tf.TensorSpec([None, None, None, 3])],
    )(x)
    xla = tf.function(
        lambda t: fractional_max_pool2d(t, (1.5, 1.3), overlapping=True, seed=seed),
        jit_compile=True,
    )(x)
    for other in (dynamic, xla):
        for a, b in zip(eager, other, strict=True):
            np.testing.assert_array_equal(a, b)
    assert eager[0].shape == (2, 13, 11, 3)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
def test_dtypes(dtype):
    x32 = np.random.default_rng(1).normal(size=(2, 11, 10, 2)).astype(np.float32)
    x = tf.cast(x32, dtype)
    out32, rows, cols = fractional_max_pool2d(x32, 1.4, seed=1)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = fractional_max_pool2d(x, 1.4, row_pooling_sequence=rows, col_pooling_sequence=cols)[0]
    grad = tape.gradient(out, x)
    assert out.dtype == x.dtype and grad.dtype == x.dtype
    # Rounding is monotonic, so max and cast commute.
    np.testing.assert_array_equal(out.numpy(), tf.cast(out32, dtype).numpy())
    assert float(tf.reduce_sum(tf.cast(grad, tf.float32))) == out.shape.num_elements()


def test_bad_input():
    x = np.zeros((1, 8, 8, 1), np.float32)
    with pytest.raises(ValueError, match="rank-4"):
        fractional_max_pool2d(np.zeros((8, 8, 1), np.float32), 1.5)
    with pytest.raises(TypeError, match="floating-point"):
        fractional_max_pool2d(np.zeros((1, 8, 8, 1), np.int32), 1.5)
    for ratio in (1.0, 0.5, -2.0, float("nan"), (1.5, 1.0)):
        with pytest.raises(ValueError, match="pooling_ratio"):
            fractional_max_pool2d(x, ratio)
    with pytest.raises(ValueError, match=r"pooling_ratio.*\(1, 8\]"):
        fractional_max_pool2d(x, 8.5)
    with pytest.raises(ValueError, match="data_format"):
        fractional_max_pool2d(x, 1.5, data_format="NCHW")
    with pytest.raises(ValueError, match="row_pooling_sequence"):
        fractional_max_pool2d(x, 1.5, row_pooling_sequence=[0, 2, 4, 8])
    with pytest.raises(ValueError, match="col_pooling_sequence"):
        fractional_max_pool2d(x, 1.5, col_pooling_sequence=[0, 2, 2, 4, 6, 8])
    # Sizes known only at run time: a ratio leaving no output fails cleanly, not a crash.
    fn = tf.function(
        lambda t: fractional_max_pool2d(t, 3.0)[0],
        input_signature=[tf.TensorSpec([None, None, None, 1])],
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="pooling_ratio"):
        fn(np.zeros((1, 2, 8, 1), np.float32))
