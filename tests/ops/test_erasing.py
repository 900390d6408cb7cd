"""Cutout and Random Erasing ops: geometry, probabilities and fills."""

import numpy as np
import pytest
import tensorflow as tf

from keras_cnn_ext.ops.erasing import box_mask, cutout, random_erasing

SEED = tf.constant([5, 11])


def _erased(images, value=0.0):
    """Per-image bool masks of the pixels equal to `value` on every channel (NHWC)."""
    return np.all(np.asarray(images) == value, axis=-1)


def test_box_mask_matches_numpy():
    top = tf.constant([0, -2, 3])
    left = tf.constant([1, 4, -1])
    bh = tf.constant([2, 4, 9])
    bw = tf.constant([3, 9, 2])
    got = box_mask(5, 6, top, left, bh, bw).numpy()
    want = np.zeros((3, 5, 6), bool)
    for i in range(3):
        t, l_ = top[i].numpy(), left[i].numpy()
        want[i, max(t, 0) : max(t + bh[i].numpy(), 0), max(l_, 0) : max(l_ + bw[i].numpy(), 0)] = (
            True
        )
    np.testing.assert_array_equal(got, want)


def test_cutout_holes_are_clipped_squares():
    images = np.ones((400, 12, 12, 2), "float32")
    out = cutout(images, 1, (5, 5), SEED).numpy()
    masks = _erased(out)
    areas = masks.sum(axis=(1, 2))
    for m, area in zip(masks, areas, strict=True):
        rows, cols = np.nonzero(m.any(axis=1))[0], np.nonzero(m.any(axis=0))[0]
        # A single (possibly clipped) rectangle: its bounding box is fully erased.
        assert area == len(rows) * len(cols)
        assert len(rows) <= 5 and len(cols) <= 5
    # Centres are uniform over the image: some holes fit, some are clipped by the border
    # (P(fully inside) = (8/12)^2 here).
    full = np.mean(areas == 25)
    assert 0.35 < full < 0.55
    assert np.all(out[~masks] == 1.0)


def test_cutout_num_holes_and_fill_and_rank3():
    images = np.ones((64, 16, 16, 1), "float32")
    one = _erased(cutout(images, 1, (3, 3), SEED)).sum(axis=(1, 2)).mean()
    four = _erased(cutout(images, 4, (3, 3), SEED)).sum(axis=(1, 2)).mean()
    assert four > 2.5 * one
    filled = cutout(images, 1, (4, 4), SEED, fill_value=-3.0).numpy()
    assert np.all((filled == 1.0) | (filled == -3.0)) and np.any(filled == -3.0)
    single = cutout(images[0], 1, (4, 4), SEED)
    assert single.shape == (16, 16, 1)


def test_cutout_channels_first_and_xla():
    images = np.ones((4, 3, 10, 10), "float32")
    out = cutout(images, 2, (4, 4), SEED, data_format="channels_first").numpy()
    assert np.all(out == out[:, :1])  # same hole on every channel
    xla = tf.function(
        lambda t: cutout(t, 2, (4, 4), SEED, data_format="channels_first"), jit_compile=True
    )
    y = xla(images).numpy()
    assert np.all(y == y[:, :1]) and np.any(y == 0)


@pytest.mark.parametrize("probability", [0.0, 0.5, 1.0])
def test_random_erasing_probability_is_exact(probability):
    images = np.ones((2000, 16, 16, 1), "float32")
    out = random_erasing(images, SEED, probability=probability).numpy()
    erased = _erased(out).any(axis=(1, 2)).mean()
    # Binomial std at p=0.5 with n=2000 is 0.011; at p=0 and p=1 the result is exact.
    assert abs(erased - probability) < 0.035


def test_random_erasing_rectangle_area_and_ratio():
    h = w = 64
    images = np.ones((300, h, w, 1), "float32")
    out = random_erasing(
        images, SEED, probability=1.0, area_range=(0.1, 0.2), aspect_ratio_range=(0.5, 2.0)
    )
    for m in _erased(out.numpy()):
        rows, cols = np.nonzero(m.any(axis=1))[0], np.nonzero(m.any(axis=0))[0]
        assert m.sum() == len(rows) * len(cols)  # one rectangle
        # Rounding of the sides moves area and ratio a little.
        assert 0.08 <= m.sum() / (h * w) <= 0.22
        assert 0.4 <= len(rows) / len(cols) <= 2.5


def test_random_erasing_fallback_still_erases():
    # Area 0.9-1.0 of a 4x40 image: a box of aspect 1 never fits, so the fallback clips it.
    images = np.ones((50, 4, 40, 1), "float32")
    out = random_erasing(
        images, SEED, probability=1.0, area_range=(0.9, 1.0), aspect_ratio_range=(1.0, 1.0)
    )
    assert _erased(out.numpy()).any(axis=(1, 2)).all()


def test_random_erasing_fill_modes():
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (8, 16, 16, 3)).astype("float32")
    mean = random_erasing(images, SEED, probability=1.0, fill_mode="mean").numpy()
    changed = np.any(mean != images, axis=-1)
    channel_mean = images.mean(axis=(1, 2))
    for i in range(8):
        np.testing.assert_allclose(
            mean[i][changed[i]],
            np.broadcast_to(channel_mean[i], mean[i][changed[i]].shape),
            rtol=1e-5,
        )
    uni = random_erasing(
        images, SEED, probability=1.0, fill_mode="random_uniform", value_range=(5.0, 6.0)
    ).numpy()
    new = uni[uni != images]
    assert new.size and np.all((new >= 5.0) & (new < 6.0)) and np.unique(new).size > 10
    normal = random_erasing(images, SEED, probability=1.0, fill_mode="random").numpy()
    new = normal[normal != images]
    assert abs(new.mean()) < 0.2 and abs(new.std() - 1.0) < 0.2
    with pytest.raises(ValueError, match="`fill_mode`"):
        random_erasing(images, SEED, fill_mode="noise")


def test_random_erasing_xla_and_rank3():
    images = np.ones((4, 12, 12, 3), "float32")
    xla = tf.function(lambda t: random_erasing(t, SEED, probability=1.0), jit_compile=True)
    assert np.all(_erased(xla(images).numpy()).any(axis=(1, 2)))
    assert random_erasing(images[0], SEED, probability=1.0).shape == (12, 12, 3)
    with pytest.raises(ValueError, match="`images`"):
        random_erasing(np.ones((12, 12), "float32"), SEED)
