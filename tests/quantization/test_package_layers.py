"""This package's layers inside a QAT model: one fully int8 TFLite file, ranges shared where needed."""

import keras
import numpy as np
import pytest

from keras_cnn_ext.export import to_tflite
from keras_cnn_ext.layers import (
    AdaptiveAveragePooling2D,
    AdaptiveMaxPooling2D,
    Cutout,
    DropBlock2D,
    DropPath,
    FractionalMaxPooling2D,
    SeparableConvBlock,
    SqueezeExcitation,
)
from keras_cnn_ext.quantization import quantize_model


def _mixed_net():
    inputs = keras.Input((16, 16, 3), name="image")
    x = Cutout(size=4, seed=1, name="cutout")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = DropBlock2D(0.1, 3, seed=2, name="dropblock")(x)
    a = keras.layers.Conv2D(4, 1, activation="relu", name="branch_a")(x)
    b = SeparableConvBlock(4, name="branch_b")(x)
    x = keras.layers.Concatenate(name="concat")([a, b])
    x = SqueezeExcitation(name="se")(x)
    x = DropPath(0.1, seed=3, name="drop_path")(x)
    x = FractionalMaxPooling2D(1.5, name="fractional")(x)
    x = AdaptiveMaxPooling2D(4, name="adaptive_max")(x)
    x = AdaptiveAveragePooling2D(2, name="adaptive_avg")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, keras.layers.Dense(5, name="head")(x))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    keras.utils.set_random_seed(4)
    qat = quantize_model(_mixed_net())
    x = np.random.default_rng(4).uniform(0, 1, (32, 16, 16, 3)).astype("float32")
    for _ in range(3):  # learn the ranges (training-mode calls), as fit would
        qat(x, training=True)
    path = tmp_path_factory.mktemp("layers") / "mixed.tflite"
    return qat, to_tflite(qat, path, sample_data=[x])


def test_package_layers_convert_to_one_int8_graph(converted):
    _, report = converted
    print(report.ops)
    assert report.passed and report.quantization == "qat"
    assert report.ops["QUANTIZE"] == 1 and report.ops["DEQUANTIZE"] == 1, report.ops
    assert not any(op.startswith("Flex") for op in report.ops)


def test_concatenate_inputs_share_its_range(converted):
    qat, _ = converted
    names = {layer.name for layer in qat.layers}
    # Neither branch gets its own range: the converter needs equal scales at CONCATENATION.
    assert "concat_fq" in names and "branch_a_fq" not in names
    assert "branch_b_pw_relu_fq" not in names
