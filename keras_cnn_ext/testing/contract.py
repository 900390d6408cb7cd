"""The layer contract: the checks every keras_cnn_ext layer passes, public so users can run it too.

Modelled on Keras' own `TestCase.run_layer_test` (build, shapes, dtypes, weights, serialization, a
training step, mixed precision) and extended with what a conv-net layer must also survive here: XLA,
numeric gradients, `.keras` round trips, `tf.distribute` replicas, and export to TFLite (builtin ops
only) and ONNX with outputs equal to Keras'.

Usage in a pytest file:

```python
import pytest
from keras_cnn_ext.testing import CONTRACT_CHECKS, LayerSpec, run_contract_check

SPEC = LayerSpec(MyLayer, {"units": 4}, input_shape=(2, 8, 8, 3))

@pytest.mark.parametrize("check", CONTRACT_CHECKS)
def test_contract(check):
    run_contract_check(check, SPEC)
```

The `integer_input` check holds layers to this package's rule: integer and bool inputs are
cast to the compute dtype (Keras' `Dense` and `BatchNormalization` do; its `Conv2D` does not).
Layers of your own get it from `keras_cnn_ext.layers.base.CastsIntegerInputs` (or skip the
check with `run_layer_contract(spec, skip=("integer_input",))`).

Each check raises `AssertionError` with a message saying what differed. The `distribute` check
needs two logical CPU devices, made by `configure_logical_cpus(2)` before TensorFlow initialises
(e.g. in `conftest.py`).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import tempfile
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_cnn_ext.testing import export_parity

CONTRACT_CHECKS = (
    "eager",
    "integer_input",
    "tf_function",
    "xla",
    "config",
    "saving",
    "mixed_float16",
    "mixed_bfloat16",
    "gradient",
    "training",
    "distribute",
    "tflite",
    "onnx",
)


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """What the contract needs to know about a layer.

    Args:
        layer_cls: the layer class.
        init_kwargs: constructor arguments (`get_config` must round-trip them).
        input_shape: the full input shape, batch included.
        expected_output_shape: the full output shape, or `None` to check only against
            `compute_output_shape`.
        random: whether training-mode outputs are random (seeded). Inference must then be
            deterministic, a fixed seed must reproduce training outputs, and replicas under a
            `tf.distribute` strategy must draw different randomness.
        training_changes_output: whether training and inference outputs differ for a deterministic
            layer (e.g. a block with batch normalization). Defaults to `random`.
        expected_trainable_weights: expected number of trainable weights, or `None`.
        expected_non_trainable_weights: expected number of non-trainable weights, or `None`.
        gradient_input_shape: smaller input shape for the numeric gradient check (default
            `input_shape`).
        gradient_tolerance: largest accepted difference between the analytic and numeric Jacobians
            (float64).
        input_range: inputs are drawn uniformly from this range.
        export_atol: tolerance for TFLite/ONNX outputs against Keras (float32).
        mixed_precision_rtol: relative tolerance of mixed-precision outputs against float32.
    """

    layer_cls: type
    init_kwargs: dict = dataclasses.field(default_factory=dict)
    input_shape: tuple = (2, 8, 8, 3)
    expected_output_shape: tuple | None = None
    random: bool = False
    training_changes_output: bool | None = None
    expected_trainable_weights: int | None = None
    expected_non_trainable_weights: int | None = None
    gradient_input_shape: tuple | None = None
    gradient_tolerance: float = 1e-4
    input_range: tuple = (-1.0, 1.0)
    export_atol: float = 1e-5
    mixed_precision_rtol: dict = dataclasses.field(
        default_factory=lambda: {"mixed_float16": 2e-2, "mixed_bfloat16": 1e-1}
    )

    def make_layer(self, **overrides) -> keras.layers.Layer:
        return self.layer_cls(**{**self.init_kwargs, **overrides})

    def make_input(self, shape=None, dtype="float32", seed=0) -> np.ndarray:
        low, high = self.input_range
        rng = np.random.default_rng(seed)
        return rng.uniform(low, high, size=shape or self.input_shape).astype(dtype)

    @property
    def changes_in_training(self) -> bool:
        if self.training_changes_output is None:
            return self.random
        return self.training_changes_output


def run_contract_check(check: str, spec: LayerSpec) -> None:
    """Runs one named check of `CONTRACT_CHECKS` on the layer described by `spec`."""
    if check not in _CHECKS:
        raise ValueError(f"`check` must be one of {CONTRACT_CHECKS}. Received: {check!r}")
    keras.utils.clear_session(free_memory=False)
    _CHECKS[check](spec)


def run_layer_contract(spec: LayerSpec, skip: tuple = ()) -> None:
    """Runs every check of the contract except those named in `skip`."""
    for check in CONTRACT_CHECKS:
        if check not in skip:
            run_contract_check(check, spec)


# --- helpers -------------------------------------------------------------------------------------


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _assert_allclose(actual, expected, atol, rtol=0.0, what="outputs"):
    actual = np.asarray(_np(actual), dtype=np.float64)
    expected = np.asarray(_np(expected), dtype=np.float64)
    if actual.shape != expected.shape:
        raise AssertionError(f"{what}: shape {actual.shape} != {expected.shape}")
    if not np.allclose(actual, expected, atol=atol, rtol=rtol):
        diff = np.max(np.abs(actual - expected))
        raise AssertionError(f"{what} differ by up to {diff:.3g} (atol={atol}, rtol={rtol})")


def _assert_finite(x, what):
    values = np.asarray(_np(x), dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise AssertionError(f"{what} contain NaN or Inf")


def _built_layer(spec, **overrides):
    layer = spec.make_layer(**overrides)
    layer(spec.make_input(), training=False)
    return layer


def _copy_weights(source, target):
    target.set_weights(source.get_weights())


def _wrap_model(layer, input_shape):
    inputs = keras.Input(shape=input_shape[1:], batch_size=None)
    return keras.Model(inputs, layer(inputs))


# --- the checks ----------------------------------------------------------------------------------


def _check_eager(spec):
    layer = spec.make_layer()
    x = spec.make_input()
    y = layer(x, training=False)
    expected_shape = tuple(layer.compute_output_shape(spec.input_shape))
    if tuple(y.shape) != expected_shape:
        raise AssertionError(
            f"output shape {tuple(y.shape)} != compute_output_shape {expected_shape}"
        )
    if spec.expected_output_shape is not None and tuple(y.shape) != tuple(
        spec.expected_output_shape
    ):
        raise AssertionError(
            f"output shape {tuple(y.shape)} != expected {spec.expected_output_shape}"
        )
    if y.dtype != tf.float32:
        raise AssertionError(f"float32 input gave output dtype {y.dtype.name}")
    _assert_finite(y, "eager outputs")
    if spec.expected_trainable_weights is not None:
        n = len(layer.trainable_weights)
        if n != spec.expected_trainable_weights:
            raise AssertionError(
                f"{n} trainable weights, expected {spec.expected_trainable_weights}"
            )
    if spec.expected_non_trainable_weights is not None:
        n = len(layer.non_trainable_weights)
        if n != spec.expected_non_trainable_weights:
            raise AssertionError(
                f"{n} non-trainable weights, expected {spec.expected_non_trainable_weights}"
            )
    _assert_allclose(layer(x, training=False), y, 0.0, what="two inference calls")
    # An unknown batch size is what every model export and `model.fit` trace sees.
    none_batch = (None,) + tuple(spec.input_shape[1:])
    shape = tuple(layer.compute_output_shape(none_batch))
    if shape[0] is not None or shape[1:] != expected_shape[1:]:
        raise AssertionError(f"compute_output_shape{none_batch} gave {shape}")


def _integer_input(spec):
    """Integer values spanning about [-4, 4], whatever the spec's input range."""
    low, high = spec.input_range
    scale = 4.0 / max(abs(low), abs(high), 1e-12)
    return np.rint(spec.make_input() * scale).astype("int32")


def _check_integer_input(spec):
    # The package rule, as Keras' Dense, BatchNormalization and preprocessing layers behave:
    # integer (and bool) inputs are cast to the layer's compute dtype before `call`, so an int
    # tensor gives what the same values as floats give, in the compute dtype.
    ints = _integer_input(spec)
    floats = ints.astype("float32")
    layer = _built_layer(spec)
    for training in (False, True):
        # Two layers with the same seed and weights draw the same randomness on a first call.
        ours, reference = _built_layer(spec), _built_layer(spec)
        _copy_weights(layer, ours)
        _copy_weights(layer, reference)
        y = ours(tf.constant(ints), training=training)
        if y.dtype != tf.float32:
            raise AssertionError(
                f"int32 input gave output dtype {y.dtype.name} (training={training}); "
                "expected the compute dtype, float32"
            )
        expected = reference(floats, training=training)
        _assert_allclose(y, expected, 1e-5, 1e-5, what=f"int32 vs float32 (training={training})")
    signature = [tf.TensorSpec((None,) + tuple(spec.input_shape[1:]), tf.int32)]
    traced = tf.function(lambda t: layer(t, training=False), input_signature=signature)
    expected = layer(floats, training=False)
    _assert_allclose(traced(ints), expected, 1e-5, 1e-5, what="tf.function int32 input")
    y = spec.make_layer(dtype="mixed_float16")(ints, training=False)
    if y.dtype != tf.float16:
        raise AssertionError(f"mixed_float16: int32 input gave output dtype {y.dtype.name}")
    symbolic = spec.make_layer()(keras.Input(spec.input_shape[1:], dtype="uint8"))
    if keras.backend.standardize_dtype(symbolic.dtype) != "float32":
        raise AssertionError(f"a uint8 keras.Input gave a symbolic output of {symbolic.dtype}")


def _check_tf_function(spec):
    layer = _built_layer(spec)
    x = spec.make_input()
    eager = layer(x, training=False)
    signature = [tf.TensorSpec((None,) + tuple(spec.input_shape[1:]), tf.float32)]
    traced = tf.function(lambda t: layer(t, training=False), input_signature=signature)
    _assert_allclose(traced(x), eager, 1e-6, what="tf.function vs eager outputs")
    smaller = spec.make_input(shape=(1,) + tuple(spec.input_shape[1:]), seed=1)
    _assert_allclose(traced(smaller), layer(smaller, training=False), 1e-6, what="batch of 1")
    train_fn = tf.function(lambda t: layer(t, training=True), input_signature=signature)
    y = train_fn(x)
    _assert_finite(y, "tf.function training outputs")
    if not spec.changes_in_training:
        _assert_allclose(y, layer(x, training=True), 1e-6, what="tf.function vs eager training")


def _check_xla(spec):
    layer = _built_layer(spec)
    x = spec.make_input()
    eager = layer(x, training=False)

    # One compiled function for the three calls: XLA compiles one program instead of three
    # (0.3-0.6x the time for most layers here), and each result is checked on its own.
    @tf.function(jit_compile=True)
    def xla_steps(t):
        inference = layer(t, training=False)
        with tf.GradientTape() as tape:
            tape.watch(t)
            out = layer(t, training=True)
            loss = tf.reduce_sum(out * out)
        return inference, out, tape.gradient(loss, [t] + layer.trainable_variables)

    inference, y, grads = xla_steps(tf.constant(x))
    _assert_allclose(inference, eager, 1e-5, 1e-5, what="XLA vs eager outputs")
    if tuple(y.shape) != tuple(eager.shape):
        raise AssertionError(f"XLA training output shape {tuple(y.shape)} != {tuple(eager.shape)}")
    _assert_finite(y, "XLA training outputs")
    for g in grads:
        if g is None:
            raise AssertionError("XLA gradient is None for an input or trainable weight")
        _assert_finite(g, "XLA gradients")


def _check_config(spec):
    layer = _built_layer(spec)
    config = layer.get_config()
    missing = [k for k in spec.init_kwargs if k not in config]
    if missing:
        raise AssertionError(f"get_config() lacks constructor arguments {missing}")
    clone = spec.layer_cls.from_config(config)
    if clone.get_config() != config:
        raise AssertionError("from_config(get_config()).get_config() differs from get_config()")
    serialized = keras.saving.serialize_keras_object(layer)
    restored = keras.saving.deserialize_keras_object(serialized)
    if type(restored) is not spec.layer_cls:
        raise AssertionError(
            f"deserialize gave {type(restored).__name__}: is the class registered with "
            "keras.saving.register_keras_serializable?"
        )
    x = spec.make_input()
    restored(x, training=False)
    _copy_weights(layer, restored)
    _assert_allclose(
        restored(x, training=False),
        layer(x, training=False),
        0.0,
        what="outputs after a config round trip",
    )


def _check_saving(spec):
    layer = spec.make_layer()
    model = _wrap_model(layer, spec.input_shape)
    x = spec.make_input()
    expected = model(x, training=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
    _assert_allclose(
        loaded(x, training=False), expected, 0.0, what="outputs after .keras round trip"
    )


def _check_mixed_precision(spec, policy):
    reference = _built_layer(spec)
    layer = spec.make_layer(dtype=policy)
    x = spec.make_input()
    layer(x, training=False)
    _copy_weights(reference, layer)
    y = layer(x, training=False)
    compute_dtype = keras.DTypePolicy(policy).compute_dtype
    if y.dtype.name != compute_dtype:
        raise AssertionError(f"{policy}: output dtype {y.dtype.name}, expected {compute_dtype}")
    _assert_finite(y, f"{policy} outputs")
    expected = reference(x, training=False)
    scale = float(np.max(np.abs(_np(expected)))) or 1.0
    rtol = spec.mixed_precision_rtol[policy]
    _assert_allclose(y, expected, atol=rtol * scale, what=f"{policy} vs float32 outputs")
    y_train = layer(x, training=True)
    if y_train.dtype.name != compute_dtype:
        raise AssertionError(f"{policy} training output dtype {y_train.dtype.name}")
    _assert_finite(y_train, f"{policy} training outputs")


def _max_error(theoretical, numerical):
    return max(
        (float(np.max(np.abs(a - b))) if a.size else 0.0)
        for a, b in zip(theoretical, numerical, strict=True)
    )


def _check_gradient(spec):
    shape = tuple(spec.gradient_input_shape or spec.input_shape)
    layer = spec.make_layer(dtype="float64")
    x = tf.constant(spec.make_input(shape=shape, dtype="float64", seed=3))
    layer(x, training=False)
    # float64 and a small input: central differences resolve the Jacobian to ~1e-8. The call is
    # traced once: compute_gradient evaluates it twice per input entry, eager op-by-op is slow.
    traced = tf.function(
        lambda t: layer(t, training=False), input_signature=[tf.TensorSpec(shape, tf.float64)]
    )
    error = _max_error(*tf.test.compute_gradient(traced, [x], delta=1e-6))
    if error > spec.gradient_tolerance:
        raise AssertionError(f"input gradient differs from finite differences by {error:.3g}")

    # Weights: a directional derivative along a random direction per weight (two evaluations
    # each) instead of the full Jacobian, which would cost two evaluations per weight entry.
    trainable = [v.value for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]
    rng = np.random.default_rng(4)
    y0 = layer(x, training=False)
    probe = tf.constant(rng.standard_normal(y0.shape), tf.float64)

    # stateless_call forwards keyword arguments to `call` verbatim.
    call_kwargs = (
        {"training": False} if "training" in inspect.signature(layer.call).parameters else {}
    )

    def objective(weights):
        outputs, _ = layer.stateless_call(weights, non_trainable, x, **call_kwargs)
        return tf.reduce_sum(outputs * probe)

    with tf.GradientTape() as tape:
        tape.watch(trainable)
        value = objective(trainable)
    grads = tape.gradient(value, trainable)
    for i, variable in enumerate(layer.trainable_variables):
        if grads[i] is None:
            raise AssertionError(f"no gradient reaches weight {variable.path}")
        direction = tf.constant(rng.standard_normal(variable.shape), tf.float64)
        eps = 1e-6
        plus = list(trainable)
        minus = list(trainable)
        plus[i] = trainable[i] + eps * direction
        minus[i] = trainable[i] - eps * direction
        numeric = float((objective(plus) - objective(minus)) / (2 * eps))
        analytic = float(tf.reduce_sum(grads[i] * direction))
        if abs(numeric - analytic) > spec.gradient_tolerance * max(1.0, abs(numeric)):
            raise AssertionError(
                f"gradient of weight {variable.path}: analytic {analytic:.6g} vs numeric {numeric:.6g}"
            )


def _check_training(spec):
    x = spec.make_input()
    layer = _built_layer(spec)
    inference = layer(x, training=False)
    _assert_allclose(layer(x, training=False), inference, 0.0, what="repeated inference")
    first = layer(x, training=True)
    if spec.random:
        twin = _built_layer(spec)
        _copy_weights(layer, twin)
        _assert_allclose(
            twin(x, training=True),
            first,
            0.0,
            what="training outputs of two layers with the same seed",
        )
        second = layer(x, training=True)
        if np.array_equal(_np(first), _np(second)):
            raise AssertionError("two training calls drew the same randomness")
    if spec.changes_in_training and np.array_equal(_np(first), _np(inference)):
        raise AssertionError(
            "training output equals inference output for a layer that should differ"
        )
    if not spec.changes_in_training:
        _assert_allclose(first, inference, 1e-6, what="training vs inference outputs")

    # One real optimisation step through model.fit, as users train.
    model = keras.Sequential(
        [
            keras.Input(shape=spec.input_shape[1:]),
            spec.make_layer(),
            keras.layers.Flatten(),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse", jit_compile=False)
    inner = model.layers[0]
    before = [np.array(w) for w in inner.trainable_weights]
    y = np.ones((spec.input_shape[0], 1), "float32")
    history = model.fit(x, y, batch_size=spec.input_shape[0], epochs=1, verbose=0)
    loss = history.history["loss"][-1]
    if not np.isfinite(loss):
        raise AssertionError(f"model.fit loss is {loss}")
    after = [np.array(w) for w in inner.trainable_weights]
    if before and all(np.array_equal(b, a) for b, a in zip(before, after, strict=True)):
        raise AssertionError("model.fit did not change any trainable weight of the layer")


def _check_distribute(spec):
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    if len(devices) < 2:
        raise AssertionError(
            "the distribute check needs 2 logical CPUs: call "
            "keras_cnn_ext.testing.configure_logical_cpus(2) before TensorFlow initialises"
        )
    x = spec.make_input()
    reference = _built_layer(spec)
    strategy = tf.distribute.MirroredStrategy(devices)
    with strategy.scope():
        layer = spec.make_layer()
        layer(x, training=False)
    _copy_weights(reference, layer)
    # Both replicas see the same batch: deterministic layers must then agree with one device,
    # random layers must still draw different masks on each replica.
    inputs = strategy.experimental_distribute_values_from_function(lambda ctx: tf.constant(x))

    @tf.function
    def step(t, training):
        return strategy.run(lambda v: layer(v, training=training), args=(t,))

    for training in (False, True):
        per_replica = strategy.experimental_local_results(step(inputs, training))
        if len(per_replica) != 2:
            raise AssertionError(f"expected 2 replica results, got {len(per_replica)}")
        for value in per_replica:
            _assert_finite(value, "replica outputs")
        if spec.random and training:
            if np.array_equal(_np(per_replica[0]), _np(per_replica[1])):
                raise AssertionError("both replicas drew the same random mask")
        else:
            expected = reference(x, training=training)
            for i, value in enumerate(per_replica):
                _assert_allclose(
                    value,
                    expected,
                    1e-5,
                    1e-5,
                    what=f"replica {i} vs single-device outputs (training={training})",
                )


def _check_tflite(spec):
    model = _wrap_model(_built_layer(spec), spec.input_shape)
    export_parity.assert_tflite_parity(model, spec.make_input(), atol=spec.export_atol)


def _check_onnx(spec):
    model = _wrap_model(_built_layer(spec), spec.input_shape)
    export_parity.assert_onnx_parity(model, spec.make_input(), atol=spec.export_atol)


_CHECKS: dict[str, Any] = {
    "eager": _check_eager,
    "integer_input": _check_integer_input,
    "tf_function": _check_tf_function,
    "xla": _check_xla,
    "config": _check_config,
    "saving": _check_saving,
    "mixed_float16": lambda spec: _check_mixed_precision(spec, "mixed_float16"),
    "mixed_bfloat16": lambda spec: _check_mixed_precision(spec, "mixed_bfloat16"),
    "gradient": _check_gradient,
    "training": _check_training,
    "distribute": _check_distribute,
    "tflite": _check_tflite,
    "onnx": _check_onnx,
}
