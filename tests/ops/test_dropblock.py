"""DropBlock op: checked against a NumPy re-computation of the paper's algorithm."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_cnn_ext.ops.dropblock import drop_block_2d, dropblock_gamma

SEED = tf.constant([3, 7])


def _numpy_dropblock(x, rate, block_size, seed, shared_channels=False):
    """The paper's algorithm written out with explicit loops over seeds (NHWC)."""
    n, h, w, c = x.shape
    mc = 1 if shared_channels else c
    # One draw per valid centre, i.e. per top-left corner of an in-map block.
    noise = tf.random.stateless_uniform(
        (n, h - block_size + 1, w - block_size + 1, mc), seed=seed, alg="philox"
    ).numpy()
    valid = (h - block_size + 1) * (w - block_size + 1)
    gamma = min(rate * h * w / (block_size**2 * valid), 1.0)
    dropped = np.zeros((n, h, w, mc), bool)
    for b, top, left, ch in zip(*np.nonzero(noise < gamma), strict=True):
        dropped[b, top : top + block_size, left : left + block_size, ch] = True
    keep = (~dropped).astype(np.float64)
    scale = keep.size / keep.sum() if keep.sum() else 0.0
    return x * keep * scale


@pytest.mark.parametrize("block_size", [1, 2, 3, 4])
@pytest.mark.parametrize("shared_channels", [False, True])
def test_matches_numpy_reference(block_size, shared_channels):
    x = np.random.default_rng(0).uniform(-1, 1, (2, 9, 7, 3)).astype("float32")
    got = drop_block_2d(x, 0.3, block_size, SEED, shared_channels=shared_channels)
    want = _numpy_dropblock(x, 0.3, block_size, SEED, shared_channels)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)
    assert np.any(got.numpy() == 0)  # the test is not vacuous


def test_gamma_formula():
    # Hand computation: p=0.1, 16x16 map, block 5 -> 0.1 * 256 / (25 * 12 * 12).
    assert float(dropblock_gamma(0.1, 5, 16, 16)) == pytest.approx(0.1 * 256 / (25 * 144))
    assert float(dropblock_gamma(0.3, 7, 7, 7)) == pytest.approx(0.3)  # one valid centre
    assert float(dropblock_gamma(0.3, 8, 7, 7)) == 0.0  # map smaller than the block
    assert float(dropblock_gamma(0.9, 3, 3, 30)) == pytest.approx(min(1.0, 0.9 * 90 / (9 * 28)))


def test_block_size_of_map_is_spatial_dropout():
    x = np.ones((200, 5, 5, 4), "float32")
    y = drop_block_2d(x, 0.3, 5, SEED).numpy()
    maps = y.transpose(0, 3, 1, 2).reshape(-1, 25)
    # Every channel map is kept whole (one common positive scale) or dropped whole.
    assert np.all((maps == maps[:, :1]).all(axis=1))
    dropped = np.mean(maps[:, 0] == 0)
    assert abs(dropped - 0.3) < 0.04  # 800 maps: 3 standard deviations is about 0.05
    kept_value = maps[maps[:, 0] > 0, 0]
    np.testing.assert_allclose(kept_value, 1.0 / (1.0 - dropped), rtol=1e-5)


def test_sum_preserved_and_rate_zero_is_identity():
    x = np.ones((4, 12, 12, 2), "float32")
    y = drop_block_2d(x, 0.2, 3, SEED).numpy()
    assert y.sum() == pytest.approx(x.sum(), rel=1e-5)
    x = np.random.default_rng(1).normal(size=(2, 6, 6, 3)).astype("float32")
    np.testing.assert_array_equal(drop_block_2d(x, 0.0, 3, SEED).numpy(), x)


def test_everything_dropped_gives_zeros_not_nan():
    y = drop_block_2d(np.ones((2, 4, 4, 1), "float32"), 1.0, 4, SEED).numpy()
    np.testing.assert_array_equal(y, 0.0)


def test_channels_first_matches_channels_last():
    x = np.random.default_rng(2).normal(size=(2, 8, 6, 3)).astype("float32")
    last = drop_block_2d(x, 0.3, 3, SEED, "channels_last").numpy()
    first = drop_block_2d(x.transpose(0, 3, 1, 2), 0.3, 3, SEED, "channels_first").numpy()
    np.testing.assert_allclose(first.transpose(0, 2, 3, 1), last, rtol=1e-6)


def test_masks_differ_between_samples_and_xla_runs():
    x = np.ones((2, 10, 10, 1), "float32")
    eager = drop_block_2d(x, 0.3, 3, SEED).numpy()
    assert not np.array_equal(eager[0], eager[1])
    # XLA's stateless RNG is not bit-identical to the TF kernels', so compare properties:
    # reproducible, sum preserved, whole 3x3 blocks dropped.
    xla = tf.function(lambda t, s: drop_block_2d(t, 0.3, 3, s), jit_compile=True)
    y = xla(tf.constant(x), SEED).numpy()
    np.testing.assert_array_equal(xla(tf.constant(x), SEED).numpy(), y)
    assert y.sum() == pytest.approx(x.sum(), rel=1e-5) and np.any(y == 0)
    # Every dropped unit lies in a fully dropped 3x3 block: a morphological opening (erode,
    # then dilate) by a 3x3 square leaves the dropped set unchanged.
    dropped = (y == 0).astype("float32")
    eroded = -tf.nn.max_pool2d(-dropped, 3, 1, "SAME")
    opened = tf.nn.max_pool2d(eroded, 3, 1, "SAME").numpy()
    np.testing.assert_array_equal(opened, dropped)


def test_bad_block_size():
    with pytest.raises(ValueError, match="`block_size`"):
        drop_block_2d(np.ones((1, 4, 4, 1), "float32"), 0.1, 0, SEED)


@settings(max_examples=15, deadline=None)
@given(
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    block_size=st.integers(1, 9),
)
def test_blocks_stay_inside_map(h, w, block_size):
    # A rate of block_size**2 (outside the layer's range, accepted by the op) drives gamma to
    # its clip value 1: every valid centre seeds a block. The dropped area is then the union of
    # all in-map blocks: everything when the block fits, else nothing (no NaN either way).
    x = np.ones((1, h, w, 1), "float32")
    y = drop_block_2d(x, float(block_size**2), block_size, SEED).numpy()
    fits = block_size <= h and block_size <= w
    assert y.shape == x.shape
    assert np.all(y == 0) if fits else np.all(y == 1)
