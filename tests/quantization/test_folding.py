"""Per-tensor weights: Conv/Depthwise + BN folded into the weight quantizer gives an int8 conv."""

import keras
import numpy as np
import pytest

from keras_cnn_ext.export import to_tflite
from keras_cnn_ext.quantization import FoldedConvBatchNorm, quantize_model


def _net(depthwise=False):
    keras.utils.set_random_seed(5)
    inputs = keras.Input((10, 10, 3), name="image")
    if depthwise:
        conv = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, use_bias=True, name="conv")
    else:
        conv = keras.layers.Conv2D(8, 3, use_bias=False, name="conv")
    x = keras.layers.BatchNormalization(name="bn")(conv(inputs))
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
    rng = np.random.default_rng(5)
    n = model.get_layer("bn").gamma.shape[0]
    model.get_layer("bn").set_weights(
        [
            rng.uniform(0.2, 5, n),
            rng.normal(0, 0.1, n),
            rng.normal(0, 0.2, n),
            rng.uniform(0.1, 5, n),
        ]
    )
    return model


@pytest.mark.parametrize("depthwise", [False, True])
def test_folded_layer_matches_conv_bn_in_training_and_inference(depthwise):
    model = _net(depthwise)
    qat = quantize_model(model, per_tensor_weights=True)
    folded = qat.get_layer("conv_folded")
    assert isinstance(folded, FoldedConvBatchNorm)
    assert "bn" not in [layer.name for layer in qat.layers]
    x = np.random.default_rng(6).uniform(0, 1, (8, 10, 10, 3)).astype("float32")
    conv, bn = model.get_layer("conv"), model.get_layer("bn")
    # The weights' quantization error bounds the difference: half a step of the folded kernel.
    step = float(np.abs(folded.folded_kernel()).max()) / 127
    bound = 0.5 * step * 3 * 3 * (3 if not depthwise else 1) * float(x.max()) + 1e-5
    # In training the output is rescaled by sigma / sigma_batch, and so is that error.
    y0 = conv(x).numpy()
    sigma = np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
    ratio = float((sigma / np.sqrt(y0.var(axis=(0, 1, 2)) + bn.epsilon)).max())
    for training, limit in ((False, bound), (True, bound * ratio)):
        expected = bn(conv(x), training=training).numpy()
        got = folded(x, training=training).numpy()
        assert np.abs(got - expected).max() <= limit, training
    round_trip = FoldedConvBatchNorm.from_config(folded.get_config())
    assert isinstance(round_trip.conv, type(conv))


def test_per_tensor_folded_conv_is_an_int8_conv_in_the_file(tmp_path):
    qat = quantize_model(_net(), per_tensor_weights=True)
    x = np.random.default_rng(7).uniform(0, 1, (32, 10, 10, 3)).astype("float32")
    for _ in range(3):
        qat(x, training=True)
    report = to_tflite(qat, tmp_path / "per_tensor.tflite", sample_data=[x])
    assert report.passed and report.ops["QUANTIZE"] == 1 and report.ops["DEQUANTIZE"] == 1
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tmp_path / "per_tensor.tflite"))
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    (conv,) = [op for op in interpreter._get_ops_details() if op["op_name"] == "CONV_2D"]
    weights = tensors[conv["inputs"][1]]
    assert np.dtype(weights["dtype"]) == np.int8
    assert len(weights["quantization_parameters"]["scales"]) == 1  # one scale: per tensor
