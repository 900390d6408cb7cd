"""The QAT recipe's callbacks: freeze BN statistics, freeze ranges, log ranges to fit's logs."""

import keras
import numpy as np
import pytest

from keras_cnn_ext.quantization import (
    FreezeBatchNormStatistics,
    FreezeQuantizationRanges,
    QuantizationRangeLogger,
    quantize_model,
    quantizers_of,
)


def test_freeze_callbacks_and_range_logger_in_fit():
    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Conv2D(4, 3, use_bias=False, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    outputs = keras.layers.Dense(2, name="dense")(keras.layers.Flatten()(x))
    qat = quantize_model(keras.Model(inputs, outputs))
    qat.compile(keras.optimizers.SGD(0.01), "mse")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 6, 6, 1)).astype("float32"), rng.normal(size=(32, 2))
    snapshots = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: snapshots.append(
            (qat.get_layer("bn").moving_mean.numpy().copy(), float(quantizers_of(qat)[1].range_max))
        )
    )
    history = qat.fit(
        x,
        y,
        batch_size=8,
        epochs=4,
        verbose=0,
        callbacks=[
            FreezeBatchNormStatistics(after_epochs=1),
            FreezeQuantizationRanges(after_epochs=2),
            QuantizationRangeLogger(per_layer=True),
            record,
        ],
    )
    bn = [s[0] for s in snapshots]
    ranges = [s[1] for s in snapshots]
    assert not np.allclose(bn[0], np.zeros(4))  # epoch 0 updated the statistics
    np.testing.assert_array_equal(bn[1], bn[0])  # frozen from epoch 1 on
    np.testing.assert_array_equal(bn[3], bn[0])
    assert ranges[1] != ranges[0] and ranges[3] == ranges[2] == ranges[1]
    logs = history.history
    for key in ("quant_range_min", "quant_range_max", "quant_range_width_mean"):
        assert len(logs[key]) == 4
    name = quantizers_of(qat)[1].name
    assert logs[f"{name}/max"] == pytest.approx(ranges)
    assert logs["quant_range_max"][0] >= max(logs[f"{name}/max"][:1])


def test_callbacks_validate_epochs():
    with pytest.raises(ValueError, match="`after_epochs` must be an integer >= 0"):
        FreezeQuantizationRanges(after_epochs=-1)
    with pytest.raises(ValueError, match="`after_epochs`"):
        FreezeBatchNormStatistics(after_epochs=1.5)
