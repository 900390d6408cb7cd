"""Occlusion, the model-randomisation test and deletion/insertion curves on the square task."""

import keras
import numpy as np
import pytest

from keras_cnn_ext import interpret


def test_occlusion_peak_inside_the_square(square_model, square_positives):
    images, masks = square_positives
    images, masks = images[:12], masks[:12]
    maps = interpret.occlusion(square_model, images, class_index=1, window=8, strides=4)
    hits = [k.ravel()[np.argmax(m)] for m, k in zip(maps, masks, strict=True)]
    assert np.mean(hits) >= 0.9, np.mean(hits)


def test_occlusion_equals_a_hand_loop():
    keras.utils.set_random_seed(5)
    model = keras.Sequential(
        [keras.Input((6, 6, 1)), keras.layers.Flatten(), keras.layers.Dense(2, use_bias=False)]
    )
    x = np.random.default_rng(5).uniform(size=(1, 6, 6, 1)).astype("float32")
    maps = interpret.Occlusion(model, window=3, strides=3, baseline=0.5).attribute(x, 0)
    w = model.layers[-1].kernel.numpy()[:, 0].reshape(6, 6)
    # Linear model, disjoint windows: the drop of each window spread evenly over its pixels.
    expected = np.zeros((6, 6))
    for top in (0, 3):
        for left in (0, 3):
            region = (slice(top, top + 3), slice(left, left + 3))
            expected[region] = ((x[0, ..., 0][region] - 0.5) * w[region]).sum()
    np.testing.assert_allclose(maps[0], expected, rtol=1e-5, atol=1e-6)


def test_rank_correlation():
    a = np.arange(16.0).reshape(4, 4)
    assert interpret.rank_correlation(a, a**3) == pytest.approx(1.0)
    assert interpret.rank_correlation(a, -a) == pytest.approx(-1.0)
    assert interpret.rank_correlation(a, np.zeros_like(a)) == 0.0
    ties = np.array([0, 0, 1, 2.0])
    assert interpret.rank_correlation(ties, ties) == pytest.approx(1.0)


@pytest.mark.parametrize("method", ["grad_cam", "saliency"])
def test_randomisation_drops_rank_correlation(square_model, square_positives, method):
    images = square_positives[0][:8]
    weights = [w.copy() for w in square_model.get_weights()]
    result = interpret.model_randomization_test(square_model, images, method, class_index=1)
    assert result["layers"] == ["logits", "conv3", "conv2"]
    assert result["per_image"].shape == (3, 8)
    assert result["rank_correlation"][-1] < 0.5, result["rank_correlation"]
    # The user's model is untouched (the test re-initialises a clone).
    for before, after in zip(weights, square_model.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)


def test_randomisation_bad_arguments(square_model, square_positives):
    images = square_positives[0][:2]
    with pytest.raises(ValueError, match="num_layers"):
        interpret.model_randomization_test(square_model, images, num_layers=9)
    with pytest.raises(ValueError, match="candidates"):
        interpret.model_randomization_test(square_model, images, layers=["gap"])
    with pytest.raises(ValueError, match="one or more"):
        interpret.model_randomization_test(square_model, images, layers=[])


def test_deletion_and_insertion_rank_grad_cam_above_random(square_model, square_positives):
    images = square_positives[0][:8]
    cam = interpret.grad_cam(square_model, images, class_index=1)
    noise = np.random.default_rng(0).uniform(size=cam.shape)
    kwargs = {"class_index": 1, "steps": 10, "insertion_baseline": 0.0}
    good = interpret.deletion_insertion_curves(square_model, images, cam, **kwargs)
    bad = interpret.deletion_insertion_curves(square_model, images, noise, **kwargs)
    assert good["deletion"].shape == (8, 11) and good["fractions"][[0, -1]].tolist() == [0, 1]
    # Probabilities (softmax applied to the logits): the curves start at the model's output.
    probs = keras.ops.softmax(square_model.predict(images, verbose=0)).numpy()[:, 1]
    np.testing.assert_allclose(good["deletion"][:, 0], probs, rtol=1e-5)
    assert good["deletion_auc"].mean() < bad["deletion_auc"].mean() - 0.1
    assert good["insertion_auc"].mean() > bad["insertion_auc"].mean() + 0.1
    blurred = interpret.deletion_insertion_curves(square_model, images[:2], cam[:2], class_index=1)
    assert np.all((blurred["insertion_auc"] >= 0) & (blurred["insertion_auc"] <= 1))


def test_deletion_bad_arguments(square_model, square_positives):
    images = square_positives[0][:2]
    with pytest.raises(ValueError, match="heatmaps"):
        interpret.deletion_insertion_curves(square_model, images, np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match="steps"):
        interpret.deletion_insertion_curves(square_model, images, np.zeros((2, 32, 32)), steps=0)
    with pytest.raises(ValueError, match="baseline"):
        interpret.deletion_insertion_curves(
            square_model, images, np.zeros((2, 32, 32)), insertion_baseline="mean"
        )
