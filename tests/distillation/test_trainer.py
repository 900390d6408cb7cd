import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from distill_helpers import LOSS, compiled, student_net

from keras_cnn_ext.distillation import (
    AlphaScheduler,
    AttentionTransfer,
    Distillation,
    FeatureDistillation,
    TemperatureScheduler,
    attached_distillation,
)


def _log_softmax64(z):
    z = z.astype("float64") - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _hand_parts(y, z_s, z_t, tau, weight):
    ce = -_log_softmax64(z_s)[np.arange(len(y)), y]
    log_pt, log_ps = _log_softmax64(z_t / tau), _log_softmax64(z_s / tau)
    kl = tau**2 * (np.exp(log_pt) * (log_pt - log_ps)).sum(-1)
    return (ce * weight).sum() / len(y), (kl * weight).sum() / len(y)


def test_fit_loss_is_alpha_ce_plus_tau_squared_kl_with_sample_weight(teacher, batch):
    x, y = batch
    weight = np.linspace(0.0, 2.0, len(y)).astype("float32")
    student = compiled(student_net(), learning_rate=0.0, metrics=())
    kd = Distillation(teacher, alpha=0.3, temperature=3.0)
    kd.attach(student)
    z_t, z_s = teacher.predict(x, verbose=0), student.predict(x, verbose=0)
    for tau, alpha in [(3.0, 0.3), (1.5, 0.8)]:  # changed between steps, no retrace needed
        kd.temperature.assign(tau)
        kd.alpha.assign(alpha)
        logs = student.train_on_batch(x, y, sample_weight=weight, return_dict=True)
        ce, kl = _hand_parts(y, z_s, z_t, tau, weight)
        np.testing.assert_allclose(logs["student_loss"], ce, rtol=1e-5)
        np.testing.assert_allclose(logs["distillation_loss"], kl, rtol=1e-5)
        np.testing.assert_allclose(logs["loss"], alpha * ce + (1 - alpha) * kl, rtol=1e-5)
        student.reset_metrics()
    assert student.train_function is not None


def test_one_student_forward_per_step_projector_and_resize(teacher, mnist):
    x, y = mnist[0][:96], mnist[1][:96]
    student = compiled(student_net(count=True))
    terms = [
        # 4 -> 8 channels at 28x28: a projector; 4 channels at 28x28 -> 16 at 14x14: both.
        FeatureDistillation(teacher_layer_name="t_conv1", student_layer_name="s_conv1"),
        FeatureDistillation(teacher_layer_name="t_conv2", student_layer_name="s_conv1"),
        AttentionTransfer("t_conv2", "s_pool2"),  # 14x14 teacher vs 7x7 student: resized
    ]
    kd = Distillation(teacher, alpha=0.5, temperature=4.0, feature_losses=terms)
    kd.attach(student)
    assert sorted(kd.projectors) == ["feature_loss", "feature_loss_2"]
    assert kd.projectors["feature_loss_2"].filters == 16
    before = [p.get_weights()[0].copy() for p in kd.projectors.values()]
    history = student.fit(x, y, batch_size=32, epochs=2, verbose=0, shuffle=False)
    steps = 2 * 3
    assert float(student.get_layer("s_count").count.numpy()) == steps
    for key in [
        "loss",
        "student_loss",
        "distillation_loss",
        "feature_loss",
        "feature_loss_2",
        "attention_transfer_loss",
        "accuracy",
    ]:
        assert np.all(np.isfinite(history.history[key])), key
    for old, projector in zip(before, kd.projectors.values(), strict=True):
        assert not np.allclose(old, projector.get_weights()[0])
    # The projectors are not part of the student.
    assert not any("projector" in w.path for w in student.weights)


def test_checkpoint_saves_the_student_only(teacher, mnist, tmp_path):
    x, y = mnist[0][:64], mnist[1][:64]
    student = compiled(student_net())
    kd = Distillation(
        teacher,
        feature_losses=[
            FeatureDistillation(teacher_layer_name="t_conv1", student_layer_name="s_conv1")
        ],
    )
    kd.attach(student)
    path = str(tmp_path / "student.keras")
    student.fit(
        x, y, batch_size=32, epochs=1, verbose=0, callbacks=[keras.callbacks.ModelCheckpoint(path)]
    )
    restored = keras.saving.load_model(path)
    assert [layer.name for layer in restored.layers] == [layer.name for layer in student.layers]
    assert restored.count_params() == student.count_params()
    np.testing.assert_allclose(
        restored.predict(x, verbose=0), student.predict(x, verbose=0), atol=1e-6
    )
    # Nothing of the teacher or the projector went in; the restored model trains on labels.
    assert not any(w.path.startswith("t_") or "projector" in w.path for w in restored.weights)
    logs = restored.train_on_batch(x, y, return_dict=True)
    assert "distillation_loss" not in logs


def test_detach_restores_the_students_own_step(teacher, batch):
    x, y = batch
    student = compiled(student_net())
    kd = Distillation(teacher)
    kd.attach(student)
    assert attached_distillation(student) is kd
    assert "distillation_loss" in student.train_on_batch(x, y, return_dict=True)
    kd.detach(student)
    assert attached_distillation(student) is None and kd.student is None
    assert "train_step" not in student.__dict__
    assert "distillation_loss" not in student.train_on_batch(x, y, return_dict=True)
    kd.attach(student)  # attaching again works
    assert "distillation_loss" in student.train_on_batch(x, y, return_dict=True)


def test_student_with_a_subset_of_the_teachers_classes(teacher, mnist):
    x, y = mnist[0][:200], mnist[1][:200]
    keep = np.isin(y, [1, 3, 5, 7])
    x, y = x[keep], np.searchsorted([1, 3, 5, 7], y[keep])
    student = compiled(student_net(classes=4))
    with pytest.raises(ValueError, match="teacher_classes"):
        Distillation(teacher).attach(student)
    kd = Distillation(teacher, teacher_classes=[1, 3, 5, 7], temperature=2.0)
    kd.attach(student)
    logs = student.fit(x, y, batch_size=32, epochs=1, verbose=0).history
    assert np.isfinite(logs["distillation_loss"][0])


def test_schedulers_set_and_log_temperature_and_alpha(teacher, mnist):
    x, y = mnist[0][:64], mnist[1][:64]
    student = compiled(student_net())
    kd = Distillation(teacher, alpha=0.5, temperature=4.0)
    kd.attach(student)
    decay = keras.optimizers.schedules.PolynomialDecay(0.9, decay_steps=3, end_learning_rate=0.1)
    history = student.fit(
        x,
        y,
        batch_size=32,
        epochs=3,
        verbose=0,
        callbacks=[TemperatureScheduler([(0, 8.0), (2, 2.0)]), AlphaScheduler(decay)],
    ).history
    assert history["temperature"] == [8.0, 8.0, 2.0]
    # The alpha schedule is stepped before each batch: steps 1, 3, 5 start the epochs' last.
    np.testing.assert_allclose(history["alpha"], [decay(1), decay(3), decay(5)], rtol=1e-6)
    assert float(kd.temperature.numpy()) == 2.0


def test_scheduler_needs_a_distillation(batch):
    x, y = batch
    student = compiled(student_net())
    with pytest.raises(ValueError, match="no Distillation attached"):
        student.fit(x, y, epochs=1, verbose=0, callbacks=[TemperatureScheduler([(0, 2.0)])])


@pytest.mark.parametrize(
    "schedule, cls",
    [
        ([(0, 8.0), (3, 4.0)], TemperatureScheduler),
        (keras.optimizers.schedules.ExponentialDecay(0.9, 100, 0.5), AlphaScheduler),
    ],
)
def test_scheduler_config_round_trip(schedule, cls):
    callback = cls(schedule, verbose=1)
    restored = cls.from_config(callback.get_config())
    assert restored.get_config() == callback.get_config()
    assert restored.value_at(epoch=4, step=50) == callback.value_at(epoch=4, step=50)


def test_distillation_config_round_trip(teacher):
    kd = Distillation(
        teacher,
        alpha=0.2,
        temperature=2.5,
        teacher_classes=None,
        feature_losses=[AttentionTransfer("t_conv2", "s_conv2", weight=10.0)],
        projector_optimizer=keras.optimizers.SGD(0.1),
    )
    config = kd.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(kd))
    assert isinstance(restored, Distillation)
    assert restored.get_config() == config
    # Like any Keras config, the teacher's is its architecture (its weights are not in it).
    assert [layer.name for layer in restored.teacher.layers] == [
        layer.name for layer in teacher.layers
    ]
    assert restored.teacher.count_params() == teacher.count_params()


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda t: Distillation("teacher"), TypeError, "`teacher`"),
        (lambda t: Distillation(t, alpha=1.5), ValueError, "`alpha`"),
        (lambda t: Distillation(t, temperature=0.0), ValueError, "`temperature`"),
        (lambda t: Distillation(t, feature_losses=["mse"]), TypeError, "feature_losses"),
        (
            lambda t: Distillation(t, feature_losses=[AttentionTransfer("nope", "s_conv1")]),
            ValueError,
            "teacher_layer_name",
        ),
    ],
)
def test_bad_distillation_arguments(teacher, make, error, match):
    with pytest.raises(error, match=match):
        make(teacher)


def test_bad_models_are_refused(teacher):
    soft_teacher = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    with pytest.raises(ValueError, match="logits"):
        Distillation(soft_teacher)
    kd = Distillation(teacher)
    with pytest.raises(ValueError, match="Compile the student"):
        kd.attach(student_net())
    soft_student = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    soft_student.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="logits"):
        kd.attach(soft_student)
    wrong_layer = Distillation(teacher, feature_losses=[AttentionTransfer("t_conv1", "nope")])
    with pytest.raises(ValueError, match="student_layer_name"):
        wrong_layer.attach(compiled(student_net()))
    kd.attach(compiled(student_net()))
    with pytest.raises(ValueError, match="already attached"):
        kd.attach(compiled(student_net()))


def test_mixed_precision_student(teacher, mnist):
    x, y = mnist[0][:96], mnist[1][:96]
    keras.config.set_dtype_policy("mixed_float16")
    try:
        student = compiled(student_net())
        kd = Distillation(
            teacher,
            feature_losses=[
                FeatureDistillation(teacher_layer_name="t_conv1", student_layer_name="s_conv1"),
                AttentionTransfer("t_conv2", "s_conv2"),
            ],
        )
        kd.attach(student)
        assert isinstance(student.optimizer, keras.optimizers.LossScaleOptimizer)
        assert student(x[:2]).dtype == "float16"
        before = kd.projectors["feature_loss"].get_weights()[0].copy()
        history = student.fit(x, y, batch_size=32, epochs=2, verbose=0).history
    finally:
        keras.config.set_dtype_policy("float32")
    for key in ["loss", "distillation_loss", "feature_loss", "attention_transfer_loss"]:
        assert np.all(np.isfinite(history[key])), key
    assert history["loss"][1] < history["loss"][0]
    assert not np.allclose(before, kd.projectors["feature_loss"].get_weights()[0])


def _fit_two_steps(teacher, x, y, strategy=None, projector_weights=None):
    scope = strategy.scope() if strategy is not None else tf.init_scope()
    with scope:
        student = student_net(seed=3)
        student.compile(keras.optimizers.SGD(0.05), LOSS)
    kd = Distillation(
        teacher,
        alpha=0.4,
        temperature=3.0,
        feature_losses=[
            FeatureDistillation(teacher_layer_name="t_conv2", student_layer_name="s_conv2"),
            AttentionTransfer("t_conv1", "s_conv1"),
        ],
    )
    kd.attach(student)
    if projector_weights is not None:
        kd.projectors["feature_loss"].set_weights(projector_weights)
    initial_projector = kd.projectors["feature_loss"].get_weights()
    # The first epoch runs the teacher in the step, the second reads a TeacherCache (whose
    # packed targets also pass Keras' symbolic build under the strategy).
    live = student.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0).history
    cached = kd.cache(x, y).dataset(batch_size=32, shuffle=False)
    history = student.fit(cached, epochs=1, verbose=0).history
    keys = ("loss", "distillation_loss", "feature_loss", "attention_transfer_loss")
    losses = np.array([[h[k][0] for k in keys] for h in (live, history)])
    return student, initial_projector, losses


def test_mirrored_strategy_matches_single_device(teacher, mnist):
    devices = tf.config.list_logical_devices("CPU")
    if len(devices) < 2:
        pytest.skip("needs two logical CPUs (tests/conftest.py makes them)")
    x, y = mnist[0][:64], mnist[1][:64]
    single, projector, single_losses = _fit_two_steps(teacher, x, y)
    strategy = tf.distribute.MirroredStrategy([d.name for d in devices[:2]])
    mirrored, _, mirrored_losses = _fit_two_steps(teacher, x, y, strategy, projector)
    np.testing.assert_allclose(mirrored_losses, single_losses, atol=1e-5, rtol=1e-5)
    for a, b in zip(mirrored.get_weights(), single.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_subclassed_student_distils_logits(teacher, batch):
    x, y = batch

    class Tiny(keras.Model):
        def __init__(self):
            super().__init__()
            self.flat = keras.layers.Flatten()
            self.out = keras.layers.Dense(10)

        def call(self, inputs):
            return self.out(self.flat(inputs))

    student = Tiny()
    student(x[:1])
    student.compile("adam", LOSS)
    logs = Distillation(teacher).attach(student).train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["distillation_loss"])
    other = Tiny()
    other(x[:1])
    other.compile("adam", LOSS)
    features = Distillation(teacher, feature_losses=[AttentionTransfer("t_conv1", "flat")])
    with pytest.raises(ValueError, match="Functional or Sequential"):
        features.attach(other)


@pytest.mark.parametrize("cache", ["disk", None])
def test_distill_in_one_call(teacher, mnist, cache, tmp_path):
    from keras_cnn_ext.distillation import distill

    x, y = mnist[0][:96], mnist[1][:96]
    student = compiled(student_net())
    history = distill(
        teacher,
        student,
        x,
        y,
        alpha=0.2,
        epochs=2,
        batch_size=32,
        cache=cache,
        directory=str(tmp_path / "cache"),
        validation_data=(x[:32], y[:32]),
        seed=0,
        verbose=0,
        callbacks=[TemperatureScheduler([(0, 6.0), (1, 3.0)])],
    ).history
    assert history["temperature"] == [6.0, 3.0] and "val_accuracy" in history
    assert np.all(np.isfinite(history["distillation_loss"]))
    assert attached_distillation(student) is None  # detached again
    assert os.path.exists(tmp_path / "cache" / "teacher_cache.json") == (cache == "disk")
    with pytest.raises(ValueError, match="`cache`"):
        distill(teacher, student, x, y, cache="gpu")


def test_xla_step_matches_the_tf_function_step(teacher, batch):
    x, y = batch
    logs = {}
    for jit in (False, True):
        student = student_net(seed=5)
        student.compile(keras.optimizers.SGD(0.1), LOSS, jit_compile=jit)
        kd = Distillation(teacher, feature_losses=[AttentionTransfer("t_conv2", "s_conv1")])
        kd.attach(student)
        logs[jit] = student.train_on_batch(x, y, return_dict=True)
    for key in ("loss", "distillation_loss", "attention_transfer_loss"):
        np.testing.assert_allclose(logs[True][key], logs[False][key], rtol=1e-4)
