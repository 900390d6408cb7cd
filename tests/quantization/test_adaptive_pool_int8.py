"""AdaptiveAveragePooling2D in a QAT model exports fully int8 (MEAN / AVERAGE_POOL_2D)."""

import keras
import numpy as np
import pytest

from keras_cnn_ext.export import to_tflite
from keras_cnn_ext.export.tflite import inspect_tflite, run_tflite
from keras_cnn_ext.layers import AdaptiveAveragePooling2D
from keras_cnn_ext.quantization import quantize_model


def _model(size, output_size):
    inputs = keras.Input((size, size, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = AdaptiveAveragePooling2D(output_size, name="adaptive_pool")(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))


@pytest.mark.parametrize(
    "size, output_size, builtin",
    [(8, (1, 1), "MEAN"), (4, (2, 2), "AVERAGE_POOL_2D")],
)
def test_qat_adaptive_average_pool_exports_int8(tmp_path, size, output_size, builtin):
    keras.utils.set_random_seed(0)
    model = _model(size, output_size)
    qat = quantize_model(model)
    pool = qat.get_layer("adaptive_pool")
    assert not isinstance(pool, AdaptiveAveragePooling2D)
    x = np.random.default_rng(0).uniform(0, 1, (64, size, size, 1)).astype("float32")
    y = np.random.default_rng(1).integers(0, 3, 64)
    # The replacement computes exactly the float layer's averages.
    probe = keras.Model(qat.input, [pool.input, pool.output])
    before, after = (t.numpy() for t in probe(x[:4]))
    expected_pool = AdaptiveAveragePooling2D(output_size)(before).numpy()
    np.testing.assert_allclose(after, expected_pool, rtol=1e-6, atol=1e-6)
    qat.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(x, y, batch_size=16, epochs=1, verbose=0)

    path = tmp_path / "m.tflite"
    report = to_tflite(qat, path, sample_data=x[:16])
    assert report.float_ops == {}
    info = inspect_tflite(str(path))
    assert info["float_ops"] == []
    assert builtin in info["ops"]
    # float32 I/O: one QUANTIZE of the input, one DEQUANTIZE of the logits, int8 between.
    assert info["ops"]["QUANTIZE"] == 1 and info["ops"]["DEQUANTIZE"] == 1
    assert "BATCH_MATMUL" not in info["ops"]
    assert info["ops"]["FULLY_CONNECTED"] == 1
    (got,) = run_tflite(str(path), x[:16])
    expected = qat.predict(x[:16], verbose=0)
    step = info["output_steps"][0] if info["output_steps"] else report.tolerance
    np.testing.assert_allclose(got, expected, atol=4 * step)
    np.testing.assert_array_equal(np.argmax(got, -1), np.argmax(expected, -1))


def test_demo_net_qat_exports_without_float_ops(tmp_path):
    from keras_cnn_ext.demo import build_demo_model

    model = build_demo_model(input_shape=(12, 12, 1), num_classes=3, width=8)
    qat = quantize_model(model)
    x = np.random.default_rng(2).uniform(0, 1, (32, 12, 12, 1)).astype("float32")
    qat.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(x, np.arange(32) % 3, batch_size=16, epochs=1, verbose=0)
    report = to_tflite(qat, tmp_path / "demo.tflite", verify=False)
    assert report.float_ops == {}
    assert "BATCH_MATMUL" not in inspect_tflite(str(tmp_path / "demo.tflite"))["ops"]
