"""Saliency, integrated gradients, guided backprop and SmoothGrad on the square task and by hand."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_cnn_ext import interpret


def mass_inside(maps, masks):
    """Per image: the share of the map's absolute mass that lies inside the square."""
    maps = np.abs(maps)
    return np.array([m[k].sum() / m.sum() for m, k in zip(maps, masks, strict=True)])


def test_saliency_mass_concentrates_on_the_square(square_model, square_positives):
    images, masks = square_positives
    maps = interpret.saliency(square_model, images, class_index=1)
    assert maps.shape == images.shape[:3] and maps.dtype == np.float32
    area = masks[0].mean()  # 64 of 1024 pixels
    share = mass_inside(maps, masks)
    # Saliency is the noisiest of the methods; its mass is still several times the square's area.
    assert np.median(share) >= 1.8 * area, (np.median(share), area)


def test_integrated_gradients_concentrates_and_is_complete(square_model, square_positives):
    images, masks = square_positives
    images, masks = images[:16], masks[:16]
    maps, delta = interpret.integrated_gradients(
        square_model,
        images,
        class_index=1,
        return_convergence_delta=True,
        steps=128,
        batch_size=256,
    )
    share = mass_inside(maps, masks)
    assert np.median(share) >= 0.5, np.median(share)
    outputs = square_model.predict(images, verbose=0)[:, 1]
    relative = np.abs(delta) / np.abs(outputs)
    assert relative.max() <= 0.01, relative
    # The map (channel sum) still adds up to the score difference to the zero baseline.
    zero = square_model.predict(np.zeros_like(images[:1]), verbose=0)[0, 1]
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), outputs - zero, rtol=0.02, atol=1e-3)


@pytest.mark.parametrize("integration", interpret.INTEGRATION_METHODS)
def test_integration_rules_are_exact_on_a_linear_model(integration):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4, 4, 2)), keras.layers.Flatten(), keras.layers.Dense(3, use_bias=False)]
    )
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 2)).astype("float32")
    ig = interpret.IntegratedGradients(model, steps=3, integration=integration, reduction="none")
    maps, delta = ig.attribute(x, class_index=[0, 2], baseline=0.5, return_convergence_delta=True)
    kernel = model.layers[-1].kernel.numpy()
    expected = (x - 0.5) * np.stack([kernel[:, 0], kernel[:, 2]]).reshape(2, 4, 4, 2)
    np.testing.assert_allclose(maps, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(delta, 0, atol=1e-5)


def test_integration_points_sum_to_one():
    for rule in interpret.INTEGRATION_METHODS:
        nodes, weights = interpret.gradients.integration_points(7, rule)
        assert np.isclose(weights.sum(), 1) and nodes.min() >= 0 and nodes.max() <= 1


def test_guided_backprop_equals_hand_computation():
    """Two layers: h = relu(x W1 + b1) per pixel, y = flatten(h) W2 + b2."""
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((3, 3, 2)),
            keras.layers.Dense(4, activation="relu", name="hidden"),
            keras.layers.Flatten(),
            keras.layers.Dense(3, name="out"),
        ]
    )
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 3, 3, 2)).astype("float32")
    w1, b1 = model.get_layer("hidden").get_weights()
    w2, _ = model.get_layer("out").get_weights()
    target = 2
    pre = x @ w1 + b1  # (5, 3, 3, 4)
    grad_h = np.broadcast_to(w2[:, target].reshape(3, 3, 4), pre.shape)
    guided_h = grad_h * (pre > 0) * (grad_h > 0)
    expected = guided_h @ w1.T  # (5, 3, 3, 2)
    got = interpret.GuidedBackprop(model, reduction="none").attribute(x, class_index=target)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # The ordinary gradient differs (negative gradients pass), and is unchanged afterwards.
    plain = interpret.Saliency(model, reduction="none").attribute(x, class_index=target)
    np.testing.assert_allclose(plain, (grad_h * (pre > 0)) @ w1.T, rtol=1e-5, atol=1e-6)
    assert not np.allclose(plain, got)


def test_guided_backprop_scope_is_undone():
    relu, relu6 = tf.nn.relu, tf.nn.relu6
    with interpret.gradients.guided_relu_scope():
        assert tf.nn.relu is not relu
    assert tf.nn.relu is relu and tf.nn.relu6 is relu6


def test_guided_backprop_on_relu6():
    model = keras.Sequential(
        [keras.Input((2, 2, 1)), keras.layers.ReLU(6.0), keras.layers.Flatten()]
    )
    x = np.array([[[[-1.0], [3.0]], [[7.0], [0.5]]]], "float32")
    maps = interpret.GuidedBackprop(model, reduction="none").attribute(x, class_index=1)
    np.testing.assert_array_equal(maps[0, ..., 0], [[0, 1], [0, 0]])
    maps = interpret.GuidedBackprop(model, reduction="none").attribute(x, class_index=2)
    np.testing.assert_array_equal(maps[0, ..., 0], [[0, 0], [0, 0]])  # clipped at 6


def test_smoothgrad_wraps_any_method(square_model, square_positives):
    images, masks = square_positives
    images, masks = images[:8], masks[:8]
    plain = interpret.saliency(square_model, images, class_index=1)
    smooth = interpret.smoothgrad(square_model, images, class_index=1, samples=6, seed=0)
    assert smooth.shape == plain.shape and not np.allclose(smooth, plain)
    again = interpret.smoothgrad(square_model, images, class_index=1, samples=6, seed=0)
    np.testing.assert_allclose(smooth, again)  # seeded
    cam = interpret.SmoothGrad(interpret.GradCAM(square_model), samples=3, seed=1)
    assert cam.attribute(images, 1).shape == images.shape[:3]
    var = interpret.smoothgrad(
        square_model, images, 1, method="integrated_gradients", samples=2, kind="vargrad", steps=4
    )
    assert var.shape == images.shape[:3] and np.all(var >= 0)
    zero_noise = interpret.smoothgrad(square_model, images, 1, samples=2, noise_level=0.0)
    np.testing.assert_allclose(zero_noise, plain, rtol=1e-5, atol=1e-7)


def test_class_index_forms(square_model, square_positives):
    images = square_positives[0][:4]
    method = interpret.Saliency(square_model)
    top = method.resolve_class_index(images)
    np.testing.assert_array_equal(top, np.argmax(square_model.predict(images, verbose=0), -1))
    np.testing.assert_allclose(
        method.attribute(images), method.attribute(images, list(top)), rtol=1e-5
    )
    mixed = method.attribute(images, [0, 1, 0, 1])
    np.testing.assert_allclose(mixed[1], method.attribute(images[1:2], 1)[0], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(mixed[0], method.attribute(images[:1], 0)[0], rtol=1e-4, atol=1e-7)


def test_batching_does_not_change_maps(square_model, square_positives):
    images = square_positives[0][:5]
    whole = interpret.Saliency(square_model, batch_size=32).attribute(images, 1)
    pieces = interpret.Saliency(square_model, batch_size=2).attribute(images, 1)
    np.testing.assert_allclose(whole, pieces, rtol=1e-6, atol=1e-8)


def test_xla_matches_tf_function():
    keras.utils.set_random_seed(2)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 2)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3),
        ]
    )
    images = np.random.default_rng(2).normal(size=(4, 8, 8, 2)).astype("float32")
    for method in ("saliency", "guided_backprop", "grad_cam"):
        xla = interpret.explain(model, images, method, 1, jit_compile=True)
        plain = interpret.explain(model, images, method, 1, jit_compile=False)
        np.testing.assert_allclose(xla, plain, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda m, x: interpret.saliency(m, x[0]), ValueError, "Add a batch axis"),
        (lambda m, x: interpret.saliency(m, x[:, :16]), ValueError, "must have shape"),
        (lambda m, x: interpret.saliency(m, x, class_index=2), ValueError, r"\[0, 2\)"),
        (lambda m, x: interpret.saliency(m, x, class_index=[0]), ValueError, "one class per image"),
        (lambda m, x: interpret.saliency(m, x, class_index=1.5), TypeError, "class_index"),
        (lambda m, x: interpret.saliency(m, "img"), TypeError, "images"),
        (lambda m, x: interpret.saliency(m, x, reduction="mean"), ValueError, "reduction"),
        (lambda m, x: interpret.integrated_gradients(m, x, steps=0), ValueError, "steps"),
        (
            lambda m, x: interpret.integrated_gradients(m, x, integration="simpson"),
            ValueError,
            "integration",
        ),
        (
            lambda m, x: interpret.integrated_gradients(m, x, baseline=x[:, :4]),
            ValueError,
            "baseline",
        ),
        (lambda m, x: interpret.smoothgrad(m, x, samples=0), ValueError, "samples"),
        (lambda m, x: interpret.smoothgrad(m, x, kind="max"), ValueError, "kind"),
        (lambda m, x: interpret.explain(m, x, "lime"), ValueError, "method"),
        (lambda m, x: interpret.saliency("model", x), TypeError, "model"),
        (lambda m, x: interpret.saliency(m, x, batch_size=0), ValueError, "batch_size"),
    ],
)
def test_bad_input(square_model, square_positives, call, error, match):
    images = square_positives[0][:2]
    with pytest.raises(error, match=match):
        call(square_model, images)


def test_xla_falls_back_when_the_model_cannot_compile():
    class TFFractionalPool(keras.layers.Layer):  # TF's own op has no XLA kernel
        def call(self, x):
            return tf.nn.fractional_max_pool(x, [1.0, 1.5, 1.5, 1.0], seed=1)[0]

    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(2, 3, padding="same", activation="relu"),
            TFFractionalPool(),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2),
        ]
    )
    images = np.random.default_rng(3).uniform(size=(2, 8, 8, 1)).astype("float32")
    method = interpret.Saliency(model, jit_compile=True)
    with pytest.warns(UserWarning, match="XLA could not compile"):
        maps = method.attribute(images, 0)
    np.testing.assert_allclose(
        maps, interpret.saliency(model, images, 0, jit_compile=False), rtol=1e-5
    )


def test_methods_share_compiled_functions_and_never_keep_the_model_alive():
    import gc
    import weakref

    from keras_cnn_ext.interpret import attribution

    keras.utils.set_random_seed(6)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(2, 3, activation="relu", name="c"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2),
        ]
    )
    images = np.ones((2, 8, 8, 1), "float32")
    for method in interpret.METHODS:
        interpret.explain(model, images, method, 0, jit_compile=False)
    keys = {key[0] if isinstance(key[0], str) else key[0][0] for key in attribution._SHARED[model]}
    # One forward, one input gradient per backward rule, one layer gradient for all CAMs.
    assert keys == {"predict", "input_gradients", "layer_gradients", "forward"}
    assert len(attribution._SHARED[model]) == 5  # input gradients: ordinary and guided
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None
