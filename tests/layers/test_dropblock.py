"""DropBlock2D layer: contract, arguments, rate schedule, replicas."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_cnn_ext.layers import DropBlock2D, LinearRateSchedule, RateScheduler
from keras_cnn_ext.testing import CONTRACT_CHECKS, LayerSpec, run_contract_check

SPEC = LayerSpec(
    layer_cls=DropBlock2D,
    init_kwargs={"rate": 0.3, "block_size": 3, "seed": 1},
    input_shape=(4, 8, 8, 3),
    random=True,
    expected_trainable_weights=0,
    expected_non_trainable_weights=1,  # the schedulable rate
    gradient_input_shape=(1, 4, 4, 2),
)


@pytest.mark.parametrize("check", CONTRACT_CHECKS)
def test_contract(check):
    run_contract_check(check, SPEC)


def test_contract_channels_first_shared():
    spec = LayerSpec(
        DropBlock2D,
        {
            "rate": 0.2,
            "block_size": 2,
            "data_format": "channels_first",
            "seed": 3,
            "shared_channels": True,
        },
        input_shape=(4, 3, 6, 6),
        random=True,
    )
    for check in ("eager", "xla", "config", "training"):
        run_contract_check(check, spec)
    y = spec.make_layer()(np.ones((4, 3, 6, 6), "float32"), training=True).numpy()
    np.testing.assert_array_equal(y, np.broadcast_to(y[:, :1], y.shape))  # one mask per sample


def test_rate_zero_and_inference_are_identity():
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 2)).astype("float32")
    np.testing.assert_array_equal(DropBlock2D(0.0, 3, seed=1)(x, training=True), x)
    np.testing.assert_array_equal(DropBlock2D(0.5, 3, seed=1)(x, training=False), x)


def test_block_size_of_map_drops_whole_channel_maps():
    y = DropBlock2D(0.5, 6, seed=2)(np.ones((8, 6, 6, 4), "float32"), training=True).numpy()
    maps = y.transpose(0, 3, 1, 2).reshape(32, -1)
    assert np.all(maps == maps[:, :1]) and 0 < np.sum(maps[:, 0] == 0) < 32


@pytest.mark.parametrize(
    ("kwargs", "shape", "match"),
    [
        ({"rate": 1.0, "block_size": 3}, None, "`rate`"),
        ({"rate": -0.1, "block_size": 3}, None, "`rate`"),
        ({"rate": 0.1, "block_size": 0}, None, "`block_size`"),
        ({"rate": 0.1, "block_size": 2.5}, None, "`block_size`"),
        ({"rate": 0.1, "block_size": 3, "data_format": "nhwc"}, None, "`data_format`"),
        ({"rate": 0.1, "block_size": 3}, (1, 8, 8), "`inputs`"),
    ],
)
def test_bad_arguments(kwargs, shape, match):
    with pytest.raises((TypeError, ValueError), match=match):
        layer = DropBlock2D(**kwargs)
        layer.build(shape)


def _zero_fraction_model(block):
    """A model whose output is the fraction of units its DropBlock2D zeroed."""
    inputs = keras.Input((16, 16, 4))
    dropped = block(inputs)
    fraction = keras.layers.Lambda(
        lambda t: keras.ops.mean(keras.ops.cast(keras.ops.equal(t, 0.0), "float32"), axis=(1, 2, 3))
    )(dropped)
    # A trainable scalar so that fit has something to optimise; it does not touch the output.
    bias = keras.layers.Dense(1, kernel_initializer="zeros", use_bias=False)(fraction[:, None] * 0)
    return keras.Model(inputs, keras.layers.Add()([fraction[:, None], bias]))


class _Recorder(keras.callbacks.Callback):
    def __init__(self, block):
        super().__init__()
        self.block = block
        self.rates, self.losses = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.rates.append(float(self.block.rate_variable.numpy()))

    def on_epoch_end(self, epoch, logs=None):
        self.losses.append(logs["loss"])


class _TraceCountingDropBlock(DropBlock2D):
    """Counts Python executions of `call`, i.e. traces once inside a compiled step."""

    traces = 0

    def call(self, inputs, training=None):
        type(self).traces += 1
        return super().call(inputs, training=training)


def test_linear_schedule_ramps_rate_in_compiled_fit():
    block = _TraceCountingDropBlock(
        0.5, 1, seed=0
    )  # block 1: the zeroed fraction estimates the rate
    model = _zero_fraction_model(block)
    # loss = mean(prediction) = zeroed fraction when the target is 0 and the loss is MAE.
    model.compile(optimizer="sgd", loss="mae", jit_compile=False)
    recorder = _Recorder(block)
    traces_before = _TraceCountingDropBlock.traces
    x = np.ones((16, 16, 16, 4), "float32")
    y = np.zeros((16, 1), "float32")
    # One batch per epoch, so each epoch's loss is that step's zeroed fraction.
    model.fit(
        x,
        y,
        batch_size=16,
        epochs=5,
        verbose=0,
        shuffle=False,
        callbacks=[LinearRateSchedule(block, start=0.0, end=0.4, steps=4), recorder],
    )
    np.testing.assert_allclose(recorder.rates, [0.0, 0.1, 0.2, 0.3, 0.4], atol=1e-7)
    # The compiled step saw every new value (16k units per step: std of the fraction < 0.004).
    np.testing.assert_allclose(recorder.losses, [0.0, 0.1, 0.2, 0.3, 0.4], atol=0.02)
    assert recorder.losses[0] == 0.0
    # The train step was traced once for 5 rates: the rate is read from the variable.
    assert _TraceCountingDropBlock.traces - traces_before == 1
    # Continuing training continues the schedule from the optimizer's step (clamped at `end`).
    model.fit(
        x,
        y,
        batch_size=16,
        epochs=1,
        verbose=0,
        callbacks=[LinearRateSchedule(block, start=0.0, end=0.4, steps=4)],
    )
    assert float(block.rate_variable.numpy()) == pytest.approx(0.4)


def test_rate_scheduler_finds_layers_and_validates():
    block = DropBlock2D(0.5, 1, seed=0)
    model = _zero_fraction_model(block)
    model.compile(optimizer="sgd", loss="mae")
    model.fit(
        np.ones((4, 16, 16, 4), "float32"),
        np.zeros((4, 1)),
        epochs=1,
        verbose=0,
        callbacks=[RateScheduler(lambda step: 0.05)],
    )
    assert float(block.rate_variable.numpy()) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="`schedule`"):
        model.fit(
            np.ones((4, 16, 16, 4), "float32"),
            np.zeros((4, 1)),
            epochs=1,
            verbose=0,
            callbacks=[RateScheduler(lambda step: 1.5)],
        )
    with pytest.raises(ValueError, match="`steps`"):
        LinearRateSchedule(block, 0.0, 0.1, steps=0)
    with pytest.raises(ValueError, match="`layers`"):
        model.fit(
            np.ones((4, 16, 16, 4), "float32"),
            np.zeros((4, 1)),
            epochs=1,
            verbose=0,
            callbacks=[RateScheduler(lambda step: 0.1, layers=[keras.layers.Dense(1)])],
        )


def _replica_outputs(strategy, layer, x):
    inputs = strategy.experimental_distribute_values_from_function(lambda ctx: tf.constant(x))

    @tf.function
    def step(t):
        return strategy.run(lambda v: layer(v, training=True), args=(t,))

    return [r.numpy() for r in strategy.experimental_local_results(step(inputs))]


def test_replicas_draw_different_masks_and_share_assigned_rate():
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    strategy = tf.distribute.MirroredStrategy(devices)
    x = np.ones((2, 8, 8, 2), "float32")
    with strategy.scope():
        layer = DropBlock2D(0.3, 3, seed=5)
        layer.build(x.shape)
    first, second = _replica_outputs(strategy, layer, x)
    assert np.any(first == 0) and np.any(second == 0)
    assert not np.array_equal(first, second)
    # A host-side assignment (what the scheduler does) reaches every replica's copy.
    layer.rate_variable.assign(0.0)
    values = [
        float(v.numpy()) for v in strategy.experimental_local_results(layer.rate_variable.value)
    ]
    assert values == [0.0, 0.0]
    for out in _replica_outputs(strategy, layer, x):
        np.testing.assert_array_equal(out, x)


def test_unknown_spatial_size_and_maps_smaller_than_block():
    inputs = keras.Input((None, None, 4))
    model = keras.Model(inputs, DropBlock2D(0.5, 3, seed=4)(inputs))
    big = np.ones((2, 9, 9, 4), "float32")
    assert np.any(model(big, training=True).numpy() == 0)
    # Known only at run time to be smaller than the block: the block is clamped to 2x2, so
    # whole maps are dropped (before, nothing was).
    y = model(np.ones((8, 2, 2, 4), "float32"), training=True).numpy()
    maps = y.transpose(0, 3, 1, 2).reshape(32, 4)
    assert np.all(maps == maps[:, :1]) and 0 < np.sum(maps[:, 0] == 0) < 32


def test_linear_schedule_under_mirrored_strategy_fit():
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    strategy = tf.distribute.MirroredStrategy(devices)
    with strategy.scope():
        block = DropBlock2D(0.5, 1, seed=0)
        model = _zero_fraction_model(block)
        model.compile(optimizer="sgd", loss="mae", jit_compile=False)
    recorder = _Recorder(block)
    x = np.ones((16, 16, 16, 4), "float32")
    model.fit(
        x,
        np.zeros((16, 1), "float32"),
        batch_size=16,
        epochs=3,
        verbose=0,
        callbacks=[LinearRateSchedule(block, start=0.0, end=0.4, steps=2), recorder],
    )
    # Both replicas (8 samples each) used the assigned rate: the reduced loss follows it.
    np.testing.assert_allclose(recorder.losses, [0.0, 0.2, 0.4], atol=0.03)
    local = strategy.experimental_local_results(block.rate_variable.value)
    np.testing.assert_allclose([float(v.numpy()) for v in local], [0.4, 0.4])


def _dynamic(layer, x, jit_compile=False):
    spec = tf.TensorSpec((None, None, None, x.shape[-1]), tf.float32)
    fn = tf.function(
        lambda t: layer(t, training=True), input_signature=[spec], jit_compile=jit_compile
    )
    return fn(x).numpy()


@pytest.mark.parametrize("jit_compile", [False, True])
def test_block_larger_than_the_map_is_clamped_with_static_and_unknown_shapes(jit_compile):
    # Before: block_size=7 on 5x5 raised at build with a static shape and silently dropped
    # nothing when the size was unknown until run time. Now both clamp the block to 5x5.
    x = np.ones((16, 5, 5, 4), "float32")
    static = DropBlock2D(0.5, 7, seed=4)(x, training=True).numpy()
    clamped = DropBlock2D(0.5, 5, seed=4)(x, training=True).numpy()
    dynamic = _dynamic(DropBlock2D(0.5, 7, seed=4), x, jit_compile)
    np.testing.assert_array_equal(static, clamped)
    maps = dynamic.transpose(0, 3, 1, 2).reshape(64, 25)
    assert np.all(maps == maps[:, :1])  # 5x5 blocks on a 5x5 map: whole maps
    assert 0 < np.sum(maps[:, 0] == 0) < 64
    if not jit_compile:  # XLA's Philox stream differs from the TF kernel's
        np.testing.assert_array_equal(dynamic, static)


def test_unknown_shape_that_fits_the_block_matches_the_static_result():
    x = np.ones((4, 9, 7, 2), "float32")
    static = DropBlock2D(0.3, 3, seed=5)(x, training=True).numpy()
    np.testing.assert_array_equal(_dynamic(DropBlock2D(0.3, 3, seed=5), x), static)
    # A non-square map clamps to its smaller side.
    y = DropBlock2D(0.5, 9, seed=6)(np.ones((8, 3, 6, 2), "float32"), training=True).numpy()
    z = DropBlock2D(0.5, 3, seed=6)(np.ones((8, 3, 6, 2), "float32"), training=True).numpy()
    np.testing.assert_array_equal(y, z)
