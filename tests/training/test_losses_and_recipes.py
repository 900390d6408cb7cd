"""Segmentation losses against hand computations and Keras' own; recipe helpers' Keras objects."""

import keras
import numpy as np
import pytest

from keras_cnn_ext.losses import SoftIoULoss
from keras_cnn_ext.training import (
    DiceLoss,
    JaccardLoss,
    cosine_with_warmup,
    focal_loss,
    make_optimizer,
    step_decay,
)

RNG = np.random.default_rng(0)
Y_TRUE = np.eye(3)[RNG.integers(0, 3, size=(2, 4, 5))]  # one-hot masks, 3 classes
LOGITS = RNG.normal(size=(2, 4, 5, 3)).astype("float32")
PROBS = np.exp(LOGITS) / np.exp(LOGITS).sum(-1, keepdims=True)


def _hand(y_true, y_pred, kind, smooth):
    losses = []
    for t, p in zip(y_true, y_pred, strict=True):
        scores = []
        for c in range(t.shape[-1]):
            i, st, sp = (t[..., c] * p[..., c]).sum(), t[..., c].sum(), p[..., c].sum()
            if kind == "dice":
                scores.append((2 * i + smooth) / (st + sp + smooth))
            else:
                scores.append((i + smooth) / (st + sp - i + smooth))
        losses.append(1 - np.mean(scores))
    return np.array(losses)


@pytest.mark.parametrize("cls, kind", [(DiceLoss, "dice"), (JaccardLoss, "jaccard")])
@pytest.mark.parametrize("smooth", [0.0, 1.0])
def test_overlap_losses_match_hand_computation(cls, kind, smooth):
    expected = _hand(Y_TRUE, PROBS, kind, smooth)
    per_image = cls(smooth=smooth, reduction=None)(Y_TRUE, PROBS)
    np.testing.assert_allclose(per_image, expected, rtol=1e-5)
    # Integer masks and logits give the same values.
    sparse = cls(smooth=smooth, sparse=True, from_logits=True, reduction=None)
    np.testing.assert_allclose(sparse(Y_TRUE.argmax(-1), LOGITS), expected, rtol=1e-5)
    assert float(cls(smooth=smooth)(Y_TRUE, PROBS)) == pytest.approx(expected.mean(), rel=1e-5)


def test_single_class_forms_equal_keras_dice_and_soft_iou():
    t = (RNG.uniform(size=(2, 4, 4, 1)) > 0.5).astype("float32")
    p = RNG.uniform(size=(2, 4, 4, 1)).astype("float32")
    keras_dice = keras.losses.Dice(axis=(1, 2, 3), reduction=None)(t, p)
    np.testing.assert_allclose(DiceLoss(smooth=0.0, reduction=None)(t, p), keras_dice, rtol=1e-5)
    soft_iou = SoftIoULoss(axis=(1, 2, 3), smooth=0.0, reduction=None)(t, p)
    np.testing.assert_allclose(JaccardLoss(smooth=0.0, reduction=None)(t, p), soft_iou, rtol=1e-5)


def test_empty_class_scores_one_with_smoothing_and_class_weights():
    t = np.zeros((1, 2, 2, 2), "float32")
    t[..., 0] = 1.0
    p = t.copy()
    assert float(DiceLoss()(t, p)) == pytest.approx(0.0, abs=1e-7)  # absent & predicted absent
    for cls in (DiceLoss, JaccardLoss):  # smooth=0: an empty class scores 1, not 0/0
        assert float(cls(smooth=0.0)(t, p)) == pytest.approx(0.0, abs=1e-7)
    weighted = DiceLoss(smooth=0.0, class_weights=[1.0, 3.0])
    p_wrong = p[..., ::-1].copy()  # everything predicted as class 1
    # class 0: dice 0; class 1: 0 / (0 + 4) = 0 -> loss 1 whatever the weights
    assert float(weighted(t, p_wrong)) == pytest.approx(1.0)
    half = p.copy()
    half[..., 1] = 0.5
    half[..., 0] = 0.5  # class 0: 2*2/(4+2); class 1: 0/(0+2) = 0
    assert float(weighted(t, half)) == pytest.approx(1 - (1 * 2 / 3 + 3 * 0) / 4)
    loss = DiceLoss(smooth=0.5, class_weights=[2.0, 1.0], sparse=True, from_logits=True)
    clone = DiceLoss.from_config(loss.get_config())
    assert clone.get_config() == loss.get_config()
    model = keras.Sequential([keras.Input((2, 2, 1)), keras.layers.Conv2D(2, 1)])
    model.compile("sgd", loss=clone)
    assert np.isfinite(model.train_on_batch(np.ones((1, 2, 2, 1)), np.zeros((1, 2, 2))))


def test_focal_loss_is_keras_own():
    binary = focal_loss("binary", gamma=3.0, alpha=0.5)
    assert isinstance(binary, keras.losses.BinaryFocalCrossentropy)
    assert (binary.gamma, binary.alpha, binary.apply_class_balancing) == (3.0, 0.5, True)
    categorical = focal_loss("categorical", from_logits=True)
    assert isinstance(categorical, keras.losses.CategoricalFocalCrossentropy)
    assert (categorical.gamma, categorical.alpha, categorical.from_logits) == (2.0, 0.25, True)
    # gamma = 0 and alpha = 1: plain cross-entropy.
    plain = focal_loss("categorical", gamma=0.0, alpha=1.0)
    np.testing.assert_allclose(
        float(plain(Y_TRUE, PROBS)),
        float(keras.losses.CategoricalCrossentropy()(Y_TRUE, PROBS)),
        rtol=1e-5,
    )


def test_step_decay_maps_to_keras_schedules():
    every = step_decay(0.1, steps_per_epoch=10, every_epochs=3, gamma=0.5)
    assert isinstance(every, keras.optimizers.schedules.ExponentialDecay)
    assert (every.decay_steps, every.decay_rate, every.staircase) == (30, 0.5, True)
    assert [float(every(s)) for s in (0, 29, 30, 60)] == pytest.approx([0.1, 0.1, 0.05, 0.025])
    multi = step_decay(0.1, steps_per_epoch=10, milestones=[2, 5])
    assert isinstance(multi, keras.optimizers.schedules.PiecewiseConstantDecay)
    # PyTorch's MultiStepLR: epoch 2 (steps 20..) already has the decayed rate.
    assert [float(multi(s)) for s in (19, 20, 49, 50)] == pytest.approx([0.1, 0.01, 0.01, 0.001])


def test_cosine_with_warmup_maps_to_keras_cosine_decay():
    s = cosine_with_warmup(1.0, total_steps=110, warmup_steps=10, final_learning_rate=0.1)
    assert isinstance(s, keras.optimizers.schedules.CosineDecay)
    config = s.get_config()
    assert (config["warmup_steps"], config["decay_steps"], config["warmup_target"]) == (
        10,
        100,
        1.0,
    )
    assert config["alpha"] == pytest.approx(0.1)
    assert float(s(5)) == pytest.approx(0.5)
    assert float(s(10)) == pytest.approx(1.0)
    assert float(s(60)) == pytest.approx(0.1 + 0.9 * 0.5, rel=1e-5)
    assert float(s(110)) == pytest.approx(0.1, rel=1e-5)


def test_make_optimizer_recipe():
    opt = make_optimizer(
        "sgd",
        0.2,
        schedule="step",
        steps_per_epoch=5,
        every_epochs=2,
        clip_norm=1.0,
        momentum=0.9,
        weight_decay=1e-4,
        gradient_accumulation_steps=3,
    )
    assert isinstance(opt, keras.optimizers.SGD)
    assert (opt.global_clipnorm, opt.clipnorm, opt.momentum) == (1.0, None, 0.9)
    assert opt.weight_decay == pytest.approx(1e-4)
    assert opt.gradient_accumulation_steps == 3
    # Schedule lengths count micro-steps under accumulation: 2 epochs x 5 updates x 3.
    assert opt.get_config()["learning_rate"]["config"]["decay_steps"] == 30
    assert make_optimizer("adamw", 1e-3).gradient_accumulation_steps is None


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"name": "sgdd"}, ValueError, "`name`"),
        ({"gradient_accumulation_steps": 0}, ValueError, "gradient_accumulation_steps"),
        ({"gradient_accumulation_steps": 1.5}, TypeError, "gradient_accumulation_steps"),
        ({"schedule": "linear"}, ValueError, "`schedule`"),
        ({"schedule": "cosine"}, ValueError, "total_steps"),
        ({"name": "adam", "momentum": 0.9}, ValueError, "`momentum`"),
        ({"clip_norm": -1.0}, ValueError, "`clip_norm`"),
    ],
)
def test_make_optimizer_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_optimizer(**kwargs)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: step_decay(0.1, steps_per_epoch=10), "exactly one"),
        (lambda: step_decay(0.1, steps_per_epoch=10, milestones=[5, 2]), "increasing"),
        (lambda: cosine_with_warmup(0.1, total_steps=10, warmup_steps=10), "warmup_steps"),
        (lambda: DiceLoss(smooth=-1), "`smooth`"),
        (lambda: JaccardLoss(class_weights=[0, 0]), "`class_weights`"),
        (lambda: focal_loss("sparse"), "`kind`"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
