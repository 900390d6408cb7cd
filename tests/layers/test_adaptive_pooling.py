"""AdaptiveAveragePooling2D / AdaptiveMaxPooling2D: contract, models, torch parity, bad input."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_cnn_ext.layers import AdaptiveAveragePooling2D, AdaptiveMaxPooling2D
from keras_cnn_ext.testing import CONTRACT_CHECKS, LayerSpec, run_contract_check

torch = pytest.importorskip("torch")

LAYERS = [AdaptiveAveragePooling2D, AdaptiveMaxPooling2D]
TORCH = {
    AdaptiveAveragePooling2D: torch.nn.functional.adaptive_avg_pool2d,
    AdaptiveMaxPooling2D: torch.nn.functional.adaptive_max_pool2d,
}
# (output_size, expected spatial output) on 7 x 9 inputs: global, non-divisible (one VALID
# pooling window, as 64 -> 7; one SAME window, as 63 -> 32), upsampling.
SIZES = [((1, 1), (1, 1)), ((3, 4), (3, 4)), ((4, 5), (4, 5)), (10, (10, 10))]
SPECS = [
    LayerSpec(
        layer_cls=cls,
        init_kwargs={"output_size": size},
        input_shape=(2, 7, 9, 3),
        expected_output_shape=(2, *out, 3),
        random=False,
        expected_trainable_weights=0,
        expected_non_trainable_weights=0,
        gradient_input_shape=(1, 7, 9, 2),
    )
    for cls in LAYERS
    for size, out in SIZES
]


@pytest.mark.parametrize("check", CONTRACT_CHECKS)
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.layer_cls.__name__}-{s.init_kwargs}")
def test_contract(spec, check):
    run_contract_check(check, spec)


def torch_pool(cls, x, output_size):
    t = torch.tensor(np.transpose(x, (0, 3, 1, 2)))
    return np.transpose(TORCH[cls](t, output_size).numpy(), (0, 2, 3, 1))


@pytest.mark.parametrize("cls", LAYERS)
def test_matches_torch_and_channels_first(cls):
    x = np.random.default_rng(0).standard_normal((2, 11, 6, 3)).astype("float32")
    ref = torch_pool(cls, x, (4, 5))
    np.testing.assert_allclose(cls((4, 5))(x).numpy(), ref, rtol=1e-6, atol=1e-6)
    y_first = cls((4, 5), data_format="channels_first")(np.transpose(x, (0, 3, 1, 2)))
    np.testing.assert_allclose(np.transpose(y_first, (0, 2, 3, 1)), ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cls", LAYERS)
def test_unknown_height_and_width_in_a_functional_model(cls):
    inputs = keras.Input((None, None, 3))
    outputs = cls((2, 3))(keras.layers.Conv2D(4, 3, padding="same")(inputs))
    model = keras.Model(inputs, outputs)
    assert tuple(model.output.shape) == (None, 2, 3, 4)
    for h, w in [(5, 7), (16, 2), (1, 1)]:
        x = np.random.default_rng(h).standard_normal((2, h, w, 3)).astype("float32")
        y = model.predict(x, verbose=0)
        assert y.shape == (2, 2, 3, 4)
        conv = model.layers[1](x).numpy()
        np.testing.assert_allclose(y, torch_pool(cls, conv, (2, 3)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls", LAYERS)
def test_sequential_and_subclassed_models_train(cls):
    sequential = keras.Sequential(
        [
            keras.Input((9, 9, 1)),
            keras.layers.Conv2D(4, 3),
            cls((3, 2)),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]
    )

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(4, 3)
            self.pool = cls(1)
            self.flatten = keras.layers.Flatten()
            self.head = keras.layers.Dense(2)

        def call(self, x):
            return self.head(self.flatten(self.pool(self.conv(x))))

    x = np.random.default_rng(0).standard_normal((8, 9, 9, 1)).astype("float32")
    y = np.random.default_rng(1).integers(0, 2, 8)
    for model in (sequential, Net()):
        model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        history = model.fit(x, y, epochs=2, batch_size=4, verbose=0)
        assert np.all(np.isfinite(history.history["loss"]))
        assert model.predict(x, verbose=0).shape == (8, 2)


@pytest.mark.parametrize("cls", LAYERS)
def test_head_of_a_keras_applications_model(cls, tmp_path):
    base = keras.applications.MobileNet(
        weights=None, include_top=False, input_shape=(32, 32, 3), alpha=0.25
    )
    features = cls((1, 1))(base.output)
    model = keras.Model(base.input, keras.layers.Dense(3)(keras.layers.Flatten()(features)))
    x = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype("float32")
    y = model.predict(x, verbose=0)
    fmap = base.predict(x, verbose=0)
    reduce = np.mean if cls is AdaptiveAveragePooling2D else np.max
    np.testing.assert_allclose(
        model.layers[-3](fmap).numpy(), reduce(fmap, axis=(1, 2), keepdims=True), rtol=1e-5
    )
    path = str(tmp_path / "head.keras")
    model.save(path)
    np.testing.assert_allclose(keras.saving.load_model(path).predict(x, verbose=0), y, atol=1e-6)


@pytest.mark.parametrize("cls", LAYERS)
def test_compute_output_shape_and_config(cls):
    layer = cls((None, 4), data_format="channels_first")
    assert layer.compute_output_shape((None, 3, 10, None)) == (None, 3, 10, 4)
    assert cls(5).compute_output_shape((2, 8, 8, 1)) == (2, 5, 5, 1)
    config = layer.get_config()
    assert config["output_size"] == (None, 4) and config["data_format"] == "channels_first"
    assert cls.from_config(config).get_config() == config
    assert keras.saving.get_registered_object(f"keras_cnn_ext>{cls.__name__}") is cls


@pytest.mark.parametrize("cls", LAYERS)
def test_bad_arguments(cls):
    with pytest.raises(ValueError, match="`output_size`"):
        cls(0)
    with pytest.raises(ValueError, match="`output_size`"):
        cls((2, 3, 4))
    with pytest.raises(TypeError, match="`output_size`"):
        cls(1.5)
    with pytest.raises(ValueError, match="`data_format`"):
        cls(2, data_format="NCHW")
    with pytest.raises(ValueError, match="rank-4"):
        cls(2)(np.zeros((2, 8, 3), "float32"))
    # Integer inputs are cast to the compute dtype (the package rule); strings are refused.
    assert cls(2)(tf.zeros((1, 4, 4, 1), tf.int32)).dtype == tf.float32
    with pytest.raises(TypeError, match="floating-point, integer or bool"):
        cls(2)(tf.constant([[[["a"]]]]))
