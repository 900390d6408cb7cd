import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_cnn_ext.distillation import (
    AttentionTransfer,
    FeatureDistillation,
    LogitsDistillation,
    attention_map,
    distillation_kl_divergence,
    knowledge_distillation_loss,
)


def _log_softmax64(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _hand_kd(y, z_s, z_t, alpha, tau, weight=None):
    """The loss by hand in float64: alpha CE + (1 - alpha) tau^2 KL, then a weighted mean."""
    z_s, z_t = z_s.astype("float64"), z_t.astype("float64")
    ce = -_log_softmax64(z_s)[np.arange(len(y)), y]
    log_pt, log_ps = _log_softmax64(z_t / tau), _log_softmax64(z_s / tau)
    kl = (np.exp(log_pt) * (log_pt - log_ps)).sum(-1)
    per_sample = alpha * ce + (1 - alpha) * tau**2 * kl
    weight = np.ones(len(y)) if weight is None else weight
    return (per_sample * weight).sum() / len(y), tau**2 * kl


@pytest.fixture
def logits():
    rng = np.random.default_rng(0)
    return rng.normal(0, 3, (6, 5)).astype("float32"), rng.normal(0, 3, (6, 5)).astype("float32")


@pytest.mark.parametrize("alpha, tau", [(0.0, 1.0), (0.3, 4.0), (1.0, 2.0), (0.5, 0.5)])
def test_loss_matches_float64_hand_computation_with_tau_squared(logits, alpha, tau):
    z_s, z_t = logits
    y = np.array([0, 1, 2, 3, 4, 0])
    weight = np.array([1.0, 0.0, 2.0, 0.5, 1.0, 3.0])
    expected, kl = _hand_kd(y, z_s, z_t, alpha, tau, weight)
    got = knowledge_distillation_loss(y, z_s, z_t, alpha, tau, sample_weight=weight)
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)
    per_sample = distillation_kl_divergence(z_t, z_s, tau)
    np.testing.assert_allclose(per_sample, kl, rtol=1e-5, atol=1e-6)
    # The tau^2 factor: the KL term scales with tau^2 for logits scaled by tau.
    np.testing.assert_allclose(
        distillation_kl_divergence(tau * z_t, tau * z_s, tau),
        tau**2 * distillation_kl_divergence(z_t, z_s, 1.0),
        rtol=1e-5,
    )


def test_one_hot_targets_equal_integer_labels(logits):
    z_s, z_t = logits
    y = np.array([0, 1, 2, 3, 4, 0])
    sparse = knowledge_distillation_loss(y, z_s, z_t, 0.4, 3.0)
    dense = knowledge_distillation_loss(np.eye(5)[y], z_s, z_t, 0.4, 3.0)
    column = knowledge_distillation_loss(y[:, None], z_s, z_t, 0.4, 3.0)
    np.testing.assert_allclose([float(dense), float(column)], float(sparse), rtol=1e-6)


@pytest.mark.parametrize("tau", [3.0, 1.0])
def test_equals_keras_logits_distillation(logits, tau):
    z_s, z_t = logits
    ours = LogitsDistillation(temperature=tau).compute_loss(z_t, z_s)
    # Keras applies softmax and tau^2 only for a `KLDivergence` instance ...
    theirs = keras.distillation.LogitsDistillation(tau, loss=keras.losses.KLDivergence())
    np.testing.assert_allclose(float(ours), float(theirs.compute_loss(z_t, z_s)), rtol=1e-5)
    # ... while its default `loss="kl_divergence"` resolves to the function, so the definitions
    # disagree there: Keras 3.15 then takes the KL of the scaled logits themselves.
    default = keras.distillation.LogitsDistillation(tau).compute_loss(z_t, z_s)
    raw = keras.ops.mean(keras.losses.kl_divergence(z_t / tau, z_s / tau))
    np.testing.assert_allclose(float(default), float(raw), rtol=1e-6)
    assert abs(float(default) - float(ours)) > 0.1


def test_no_nan_at_tau_half_with_logits_1e4():
    z_t = tf.constant([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]])
    z_s = tf.Variable([[-1e4, 1e4, 0.0], [1e4, -1e4, -1e4]])
    with tf.GradientTape() as tape:
        loss = knowledge_distillation_loss(np.array([0, 1]), z_s, z_t, 0.5, 0.5)
    grad = tape.gradient(loss, z_s)
    assert np.isfinite(float(loss)) and float(loss) > 0
    assert np.all(np.isfinite(grad.numpy()))
    ours = LogitsDistillation(temperature=0.5).compute_loss(z_t, z_s)
    assert np.isfinite(float(ours))
    # Keras' probability-space version saturates at its 1e-7 clip instead.
    keras_kl = keras.distillation.LogitsDistillation(0.5, loss=keras.losses.KLDivergence())
    assert float(keras_kl.compute_loss(z_t, z_s)) < 0.01 * float(ours)


def test_mixed_precision_logits_are_computed_in_float32():
    z = np.array([[300.0, -300.0, 0.0]], dtype="float16")
    value = distillation_kl_divergence(z, -z, temperature=0.5)
    assert value.dtype == "float32" and np.isfinite(value.numpy()).all()


def test_teacher_classes_select_a_subset(logits):
    z_s, z_t = logits
    loss = LogitsDistillation(temperature=2.0, teacher_classes=[4, 0, 2])
    got = loss.compute_loss(z_t, z_s[:, :3])
    expected = distillation_kl_divergence(z_t[:, [4, 0, 2]], z_s[:, :3], 2.0).numpy().mean()
    np.testing.assert_allclose(float(got), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="teacher_classes"):
        LogitsDistillation().validate_outputs(z_t, z_s[:, :3])
    with pytest.raises(ValueError, match="< 5"):
        LogitsDistillation(teacher_classes=[0, 9, 1]).validate_outputs(z_t, z_s[:, :3])


def test_attention_map_matches_numpy_and_paper_code():
    rng = np.random.default_rng(1)
    a_s = rng.normal(size=(2, 6, 6, 3)).astype("float32")
    a_t = rng.normal(size=(2, 6, 6, 7)).astype("float32")
    np.testing.assert_allclose(attention_map(a_s), (a_s**2).mean(-1), rtol=1e-6)
    channels_first = attention_map(np.moveaxis(a_s, -1, 1), data_format="channels_first")
    np.testing.assert_allclose(channels_first, (a_s**2).mean(-1), rtol=1e-6)

    def at(x):  # Zagoruyko & Komodakis' `at`: F.normalize(x.pow(2).mean(1).view(n, -1))
        q = (x.astype("float64") ** 2).mean(-1).reshape(len(x), -1)
        return q / np.linalg.norm(q, axis=1, keepdims=True)

    expected = ((at(a_s) - at(a_t)) ** 2).mean()  # their `at_loss`
    term = AttentionTransfer("t", "s")
    got = term.compute_loss(term.teacher_target(a_t), term.student_target(a_s, None, (6, 6)))
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)
    # Raw feature maps (as keras' Distiller would pass them) give the same value.
    np.testing.assert_allclose(float(term.compute_loss(a_t, a_s)), expected, rtol=1e-5)


def test_attention_transfer_resizes_the_student_map():
    rng = np.random.default_rng(2)
    a_s = rng.uniform(size=(2, 4, 4, 3)).astype("float32")
    a_t = rng.uniform(size=(2, 8, 8, 5)).astype("float32")
    term = AttentionTransfer("t", "s")
    student = term.student_target(a_s, None, (8, 8))
    assert tuple(student.shape) == (2, 8, 8)
    np.testing.assert_allclose(np.square(student).sum(axis=(1, 2)), 1.0, rtol=1e-5)
    assert np.isfinite(float(term.compute_loss(term.teacher_target(a_t), student)))


def test_feature_distillation_projects_and_resizes():
    term = FeatureDistillation(teacher_layer_name="t", student_layer_name="s")
    projector = term.build_adapter((None, 4, 4, 3), (None, 8, 8, 6))
    assert isinstance(projector, keras.layers.Conv2D) and projector.filters == 6
    assert projector.kernel_size == (1, 1) and not projector.use_bias
    projector.build((None, 4, 4, 3))
    a_s = np.random.default_rng(3).normal(size=(2, 4, 4, 3)).astype("float32")
    adapted = term.student_target(a_s, projector, (8, 8, 6))
    assert tuple(adapted.shape) == (2, 8, 8, 6)
    same = FeatureDistillation(teacher_layer_name="t", student_layer_name="s")
    assert same.build_adapter((None, 4, 4, 6), (None, 4, 4, 6)) is None
    with pytest.raises(ValueError, match="projection='auto'"):
        FeatureDistillation(
            teacher_layer_name="t", student_layer_name="s", projection=None
        ).build_adapter((None, 4, 4, 3), (None, 4, 4, 6))
    with pytest.raises(ValueError, match="rank-4"):
        term.build_adapter((None, 16), (None, 4, 4, 6))


def test_feature_loss_is_mse_with_sample_weight():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(2, 3, 2, 2, 4)).astype("float32")
    weight = np.array([2.0, 0.0, 1.0])
    term = FeatureDistillation(teacher_layer_name="t", student_layer_name="s")
    expected = (((a - b) ** 2).reshape(3, -1).mean(1) * weight).sum() / 3
    np.testing.assert_allclose(
        float(term.compute_loss(a, b, sample_weight=weight)), expected, rtol=1e-5
    )
    mae = FeatureDistillation(keras.losses.MeanAbsoluteError(), "t", "s")
    np.testing.assert_allclose(float(mae.compute_loss(a, b)), np.abs(a - b).mean(), rtol=1e-5)


@pytest.mark.parametrize(
    "term",
    [
        LogitsDistillation(temperature=2.5, teacher_classes=[1, 0]),
        FeatureDistillation("mae", "t_conv1", "s_conv1", weight=0.5, projection="always"),
        FeatureDistillation(keras.losses.Huber(delta=0.5), "t_conv1", "s_conv1"),
        AttentionTransfer("t_conv2", "s_conv2", weight=100.0, p=1, interpolation="nearest"),
    ],
    ids=lambda t: type(t).__name__,
)
def test_config_round_trip(term):
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(term))
    assert type(restored) is type(term)
    assert restored.get_config() == term.get_config()


def test_losses_also_plug_into_keras_distiller(teacher, mnist):
    from distill_helpers import student_net

    x, y = mnist[0][:64], mnist[1][:64]
    distiller = keras.distillation.Distiller(
        teacher, student_net(), [LogitsDistillation(2.0)], student_loss_weight=0.5
    )
    distiller.compile("adam", "sparse_categorical_crossentropy")
    logs = distiller.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["distillation_loss"])


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: LogitsDistillation(temperature=0), "temperature"),
        (lambda: LogitsDistillation(temperature="3"), "temperature"),
        (lambda: LogitsDistillation(teacher_classes=[0, -1]), "teacher_classes"),
        (lambda: LogitsDistillation(teacher_classes=[]), "teacher_classes"),
        (lambda: FeatureDistillation("mse", None, "s"), "teacher_layer_name"),
        (lambda: FeatureDistillation("mse", "t", "s", weight=-1), "weight"),
        (lambda: FeatureDistillation("mse", "t", "s", projection="yes"), "projection"),
        (lambda: FeatureDistillation("mse", "t", "s", interpolation="cubic"), "interpolation"),
        (lambda: AttentionTransfer("t", ""), "student_layer_name"),
        (lambda: AttentionTransfer("t", "s", p=0), "`p`"),
        (lambda: AttentionTransfer("t", "s", data_format="nhwc"), "data_format"),
    ],
)
def test_bad_arguments_name_the_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make()
