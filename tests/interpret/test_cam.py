"""Grad-CAM, Grad-CAM++ and guided Grad-CAM: localisation, target layers, model kinds, no mutation."""

import keras
import numpy as np
import pytest

from keras_cnn_ext import interpret
from keras_cnn_ext.models import LeNet5

from .conftest import weight_gradients


def peak_inside(maps, masks):
    return np.array([k.ravel()[np.argmax(m)] for m, k in zip(maps, masks, strict=True)])


@pytest.mark.parametrize("method", ["grad_cam", "grad_cam_plus_plus", "guided_grad_cam"])
def test_peak_inside_the_square(square_model, square_positives, method):
    images, masks = square_positives
    maps = interpret.explain(square_model, images, method, class_index=1)
    assert maps.shape == images.shape[:3] and maps.dtype == np.float32
    hits = peak_inside(maps, masks)
    assert hits.mean() >= 0.9, f"{method}: peak inside the square on {hits.mean():.0%} of images"


def test_grad_cam_matches_its_definition(square_model, square_positives):
    images = square_positives[0][:3]
    cam = interpret.GradCAM(square_model, layer="conv3", upsample=False)
    activations, grads, scores = cam.layer_gradients(images, np.ones(3, "int32"))
    expected = np.maximum(
        np.einsum("bhwk,bk->bhw", activations.numpy(), grads.numpy().mean(axis=(1, 2))), 0
    )
    np.testing.assert_allclose(cam.attribute(images, 1), expected, rtol=1e-5, atol=1e-7)
    assert cam.attribute(images, 1).shape == (3, 16, 16)
    np.testing.assert_allclose(scores, square_model.predict(images, verbose=0)[:, 1], rtol=1e-5)


def test_automatic_layer_is_the_last_4d_layer(square_model, nested_mobilenet):
    assert interpret.GradCAM(square_model).layer_name == "conv3"
    assert interpret.GradCAM(nested_mobilenet).layer_name == "base/conv_pw_13_relu"
    assert (
        interpret.GradCAM(square_model, layer=square_model.get_layer("conv2")).layer_name == "conv2"
    )


def test_unknown_layer_lists_candidates(square_model, nested_mobilenet):
    with pytest.raises(ValueError, match=r"Received: 'conv9'.*'conv1', 'pool', 'conv2', 'conv3'"):
        interpret.GradCAM(square_model, layer="conv9")
    with pytest.raises(ValueError, match="base/conv_pw_13_relu"):
        interpret.grad_cam(nested_mobilenet, np.zeros((1, 64, 64, 3)), layer="base/conv_pw_99")
    with pytest.raises(TypeError, match="layer"):
        interpret.GradCAM(square_model, layer=3)
    with pytest.raises(ValueError, match="interpolation"):
        interpret.GradCAM(square_model, interpolation="cubic")


def _flat_mobilenet_twin(nested):
    """The same weights as one flat Functional graph, to check the two-stage path against."""
    base = nested.get_layer("base")
    inputs = keras.Input((64, 64, 3))
    x = nested.get_layer("rescale")(inputs)
    target = None
    for layer in base.layers[1:]:
        x = layer(x)
        if layer.name == "conv_pw_12_relu":
            target = x
    x = nested.get_layer("gap")(x)
    return keras.Model(inputs, nested.get_layer("head")(x)), target


def test_nested_mobilenet_two_stage_matches_a_flat_graph(nested_mobilenet):
    images = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    nested = interpret.GradCAM(nested_mobilenet, layer="base/conv_pw_12_relu", upsample=False)
    flat_model, _ = _flat_mobilenet_twin(nested_mobilenet)
    flat = interpret.GradCAM(flat_model, layer="conv_pw_12_relu", upsample=False)
    np.testing.assert_allclose(
        nested.attribute(images, [0, 3]), flat.attribute(images, [0, 3]), rtol=1e-4, atol=1e-6
    )


def test_nested_mobilenet_every_method_leaves_the_model_unchanged(nested_mobilenet):
    model = nested_mobilenet
    images = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    labels = np.array([1, 2])
    weights = [w.copy() for w in model.get_weights()]
    grads = weight_gradients(model, images, labels)
    layers = model.layers + model.get_layer("base").layers

    def bookkeeping():  # attributes and graph nodes of every layer: explaining adds none
        return [(sorted(vars(x)), len(x._inbound_nodes), len(x._outbound_nodes)) for x in layers]

    state = bookkeeping()
    options = {
        "integrated_gradients": {"steps": 2},
        "occlusion": {"window": 32, "strides": 32},
    }
    for method in interpret.METHODS:
        maps = interpret.explain(model, images, method, labels, **options.get(method, {}))
        assert maps.shape == (2, 64, 64) and np.all(np.isfinite(maps)), method
        assert np.abs(maps).max() > 0, method
        for before, after in zip(weights, model.get_weights(), strict=True):
            np.testing.assert_array_equal(before, after, err_msg=method)
    # Gradients of the user's own loss are the ordinary ones after guided backprop's override.
    for before, after in zip(grads, weight_gradients(model, images, labels), strict=True):
        np.testing.assert_allclose(before, after, rtol=1e-5, atol=1e-8)
    assert state == bookkeeping()


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__(name="sub")
        self.conv1 = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")
        self.pool = keras.layers.MaxPooling2D(name="p")
        self.conv2 = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c2")
        self.gap = keras.layers.GlobalAveragePooling2D()
        self.dense = keras.layers.Dense(2)

    def call(self, x):
        return self.dense(self.gap(self.conv2(self.pool(self.conv1(x)))))


def test_subclassed_model_matches_its_functional_twin(square_model, square_positives):
    images = square_positives[0][:4]
    model = _Subclassed()
    model(images[:1])
    model.set_weights(
        [square_model.get_layer(n).get_weights() for n in ("conv1",)][0]
        + [w for w in model.conv2.get_weights()]
        + model.dense.get_weights()
    )
    inputs = keras.Input((32, 32, 1))
    twin = keras.Model(inputs, model.dense(model.gap(model.conv2(model.pool(model.conv1(inputs))))))
    sub = interpret.GradCAM(model)
    np.testing.assert_allclose(
        sub.attribute(images, 1), interpret.grad_cam(twin, images, 1), rtol=1e-5, atol=1e-7
    )
    assert sub.layer_name == "c2"  # found by one probing call
    named = interpret.grad_cam(model, images, 0, layer="c1")
    np.testing.assert_allclose(
        named, interpret.grad_cam(twin, images, 0, layer="c1"), rtol=1e-5, atol=1e-7
    )
    assert "call" not in vars(model.conv1) and "call" not in vars(model.conv2)
    guided = interpret.guided_grad_cam(model, images, 1)
    assert guided.shape == images.shape[:3]


@pytest.mark.parametrize(
    "builder, shape",
    [
        (lambda: LeNet5(input_shape=(32, 32, 1), classes=3), (32, 32, 1)),
    ],
)
def test_package_builders(builder, shape):
    keras.utils.set_random_seed(4)
    model = builder()
    images = np.random.default_rng(4).uniform(0, 1, (2, *shape)).astype("float32")
    for method in ("grad_cam", "guided_backprop"):
        maps = interpret.explain(model, images, method, [0, 2])
        assert maps.shape == (2, *shape[:2]) and np.all(np.isfinite(maps))


def test_mixed_precision_maps_are_float32_and_close(square_model, square_positives):
    images = square_positives[0][:6]
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        from .conftest import build_square_model

        half = build_square_model()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    half.set_weights(square_model.get_weights())
    for method in ("grad_cam", "saliency"):
        full = interpret.explain(square_model, images, method, 1)
        mixed = interpret.explain(half, images, method, 1)
        assert mixed.dtype == np.float32 and np.all(np.isfinite(mixed))
        corr = [interpret.rank_correlation(a, b) for a, b in zip(full, mixed, strict=True)]
        assert min(corr) > 0.9, (method, corr)


def test_channels_first_input_with_a_channels_last_base(square_model, square_positives):
    images = square_positives[0][:3]
    inputs = keras.Input((1, 32, 32))
    wrapped = keras.Model(inputs, square_model(keras.layers.Permute((2, 3, 1))(inputs)))
    cam = interpret.GradCAM(wrapped, layer="squares/conv3", data_format="channels_first")
    maps = cam.attribute(np.transpose(images, (0, 3, 1, 2)), 1)
    # conv3 is channels-last: its activations are read as such, whatever the input layout.
    np.testing.assert_allclose(
        maps, interpret.grad_cam(square_model, images, 1), rtol=1e-5, atol=1e-7
    )
    saliency = interpret.saliency(
        wrapped, np.transpose(images, (0, 3, 1, 2)), 1, data_format="channels_first"
    )
    np.testing.assert_allclose(
        saliency, interpret.saliency(square_model, images, 1), rtol=1e-5, atol=1e-8
    )
