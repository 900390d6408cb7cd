"""Affine 8-bit helpers and per-channel weights, checked against a converted TFLite file."""

import keras
import numpy as np
import pytest

from keras_cnn_ext.export import to_tflite
from keras_cnn_ext.quantization import (
    affine_params,
    dequantize,
    quantize,
    quantize_model,
)


def test_affine_params_by_hand():
    scale, zero = affine_params(-1.0, 3.0)
    assert scale == pytest.approx(4 / 255) and zero == -128 + round(1 / (4 / 255))
    scale, zero = affine_params(-1.0, 3.0, dtype="uint8")
    assert zero == round(1 / (4 / 255))
    scale, zero = affine_params(0.5, 2.0)  # widened to [0, 2]: 0 stays exact
    assert scale == pytest.approx(2 / 255) and zero == -128
    scales, zeros = affine_params([-2.0, -0.5], [1.0, 0.25], symmetric=True, narrow_range=True)
    np.testing.assert_allclose(scales, [2 / 127, 0.5 / 127])
    assert list(zeros) == [0, 0]
    q = quantize([-1.0, 0.0, 3.0, 9.0], *affine_params(-1.0, 3.0))
    assert q.dtype == np.int8 and list(q) == [-128, -64, 127, 127]
    # Round trip within half a step; 0 is exact (the zero point is an integer).
    restored = dequantize(q, *affine_params(-1.0, 3.0))
    np.testing.assert_allclose(restored[:3], [-1, 0, 3], atol=0.5 * 4 / 255)
    assert restored[1] == 0.0
    with pytest.raises(ValueError, match="`min_value` must not exceed `max_value`"):
        affine_params(1.0, -1.0)
    with pytest.raises(ValueError, match="`dtype` must be one of"):
        affine_params(-1.0, 1.0, dtype="int4")


@pytest.fixture(scope="module")
def conv_depthwise(tmp_path_factory):
    keras.utils.set_random_seed(3)
    inputs = keras.Input((10, 10, 3), name="image")
    x = keras.layers.Conv2D(8, 3, use_bias=False, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="conv_bn")(x)
    x = keras.layers.ReLU(name="conv_relu")(x)
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, use_bias=False, name="dw")(x)
    x = keras.layers.BatchNormalization(name="dw_bn")(x)
    x = keras.layers.ReLU(6.0, name="dw_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
    rng = np.random.default_rng(3)
    for bn in ("conv_bn", "dw_bn"):
        layer = model.get_layer(bn)
        n = layer.gamma.shape[0]
        layer.set_weights(
            [
                rng.uniform(0.5, 2, n),
                rng.normal(0, 0.1, n),
                rng.normal(0, 0.2, n),
                rng.uniform(0.3, 3, n),
            ]
        )
    qat = quantize_model(model)
    qat.compile(keras.optimizers.SGD(1e-3), "mse")
    x = rng.uniform(0, 1, (64, 10, 10, 3)).astype("float32")
    qat.fit(x, rng.normal(size=(64, 3)), batch_size=16, epochs=1, verbose=0)
    path = tmp_path_factory.mktemp("affine") / "qat.tflite"
    report = to_tflite(qat, path)
    return qat, path, report


def _weight_tensors(path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    found = {}
    for op in interpreter._get_ops_details():
        if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            detail = tensors[op["inputs"][1]]
            found[op["op_name"]] = (interpreter.get_tensor(detail["index"]), detail)
    return found, interpreter


def _folded(qat, conv, bn):
    bn = qat.get_layer(bn)
    factor = bn.gamma.numpy() / np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
    kernel = qat.get_layer(conv).layer.kernel.numpy()
    if kernel.ndim == 4 and qat.get_layer(conv).weight_quantizers["kernel"].depthwise:
        kh, kw, cin, mult = kernel.shape
        return (kernel.reshape(kh, kw, cin * mult) * factor)[None]  # TFLite (1, kh, kw, C)
    return np.transpose(kernel * factor, (3, 0, 1, 2))  # TFLite (out, kh, kw, in)


def test_per_channel_scales_and_dequantized_weights(conv_depthwise):
    qat, path, report = conv_depthwise
    assert report.passed and report.ops["QUANTIZE"] == 1
    found, _ = _weight_tensors(path)
    for op, conv, bn, channels, axis in (
        ("CONV_2D", "conv", "conv_bn", 8, 0),
        ("DEPTHWISE_CONV_2D", "dw", "dw_bn", 8 * 2, 3),
    ):
        q, detail = found[op]
        params = detail["quantization_parameters"]
        scales, zeros = params["scales"], params["zero_points"]
        print(op, "weight scales:", len(scales), "dimension", params["quantized_dimension"])
        assert q.dtype == np.int8 and len(scales) == channels  # depthwise: in x multiplier
        assert params["quantized_dimension"] == axis and not np.any(zeros)
        folded = _folded(qat, conv, bn)
        restored = dequantize(q, scales, zeros, axis=axis)
        half = 0.5 * scales.reshape([-1 if i == axis else 1 for i in range(4)])
        assert np.all(np.abs(restored - folded) <= half * (1 + 1e-4) + 1e-7), op
        # Symmetric narrow-range scales: max |folded weight| over the channel / 127.
        bound = np.abs(folded).max(axis=tuple(i for i in range(4) if i != axis))
        expected, _ = affine_params(-bound, bound, symmetric=True, narrow_range=True)
        np.testing.assert_allclose(scales, expected, rtol=1e-4)
        requantized = quantize(folded, scales, zeros, narrow_range=True, axis=axis)
        assert np.abs(requantized.astype(int) - q).max() <= 1


def test_activation_scales_and_zero_points_match_the_file(conv_depthwise):
    qat, path, _ = conv_depthwise
    _, interpreter = _weight_tensors(path)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    outputs = {op["op_name"]: tensors[op["outputs"][0]] for op in interpreter._get_ops_details()}
    # Each op's int8 output carries the range of the FakeQuant that follows it in Keras.
    pairs = {
        "QUANTIZE": "image_fq",
        "CONV_2D": "conv_relu_fq",
        "DEPTHWISE_CONV_2D": "dw_relu_fq",
        "MEAN": "gap_fq",
        "FULLY_CONNECTED": "head_fq",
    }
    for op, name in pairs.items():
        fq = qat.get_layer(name)
        scale, zero = affine_params(float(fq.range_min), float(fq.range_max))
        params = outputs[op]["quantization_parameters"]
        print(op, name, scale, zero, params["scales"], params["zero_points"])
        assert params["scales"][0] == pytest.approx(scale, rel=1e-5), op
        assert params["zero_points"][0] == zero, op
