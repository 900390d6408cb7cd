import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from distill_helpers import compiled, counted, student_net, weights_close

from keras_cnn_ext.distillation import (
    AttentionTransfer,
    Distillation,
    FeatureDistillation,
    TeacherCache,
    is_random_augmentation,
    split_packed_targets,
)


@pytest.fixture(scope="module")
def digits(mnist):
    return mnist[0][:150], mnist[1][:150]


def test_teacher_runs_once_per_sample_and_weights_match_the_live_teacher(teacher, digits):
    x, y = digits
    results = {}
    for mode in ("cache", "live"):
        counting = counted(teacher)
        student = compiled(student_net(seed=1))
        kd = Distillation(counting, alpha=0.3, temperature=3.0)
        kd.attach(student)
        if mode == "cache":
            data = kd.cache(x, y, batch_size=64).dataset(batch_size=50, shuffle=False)
        else:
            data = tf.data.Dataset.from_tensor_slices((x, y)).batch(50)
        student.fit(data, epochs=3, verbose=0)
        results[mode] = (student, float(counting.get_layer("count").count.numpy()))
    assert results["cache"][1] == len(x)  # once per sample over 3 epochs
    assert results["live"][1] == 3 * len(x)
    weights_close(results["cache"][0], results["live"][0], atol=1e-5)


def test_dataset_pairs_every_image_with_its_own_teacher_outputs(teacher, digits):
    x, y = digits
    weight = np.linspace(0.5, 1.5, len(x)).astype("float32")
    kd = Distillation(teacher, feature_losses=[AttentionTransfer("t_conv2", "s_conv2")])
    cache = kd.cache(x, y, sample_weight=weight, batch_size=64)
    assert set(cache.keys) == {"logits", "attention_transfer_loss"}
    seen = []
    for images, targets, w in cache.dataset(batch_size=40, shuffle=True, seed=3):
        labels, outputs = split_packed_targets(targets)
        images = images.numpy()
        expected = kd.teacher_outputs(images)
        for key in cache.keys:
            np.testing.assert_allclose(outputs[key], expected[key], atol=1e-5)
        index = [int(np.flatnonzero((x == image).all(axis=(1, 2, 3)))[0]) for image in images]
        np.testing.assert_array_equal(labels, y[index])
        np.testing.assert_allclose(w, weight[index])
        seen.extend(index)
    assert sorted(seen) == list(range(len(x)))
    assert seen != list(range(len(x)))  # shuffled


def test_random_augmentation_is_refused(teacher, digits):
    x, y = digits
    kd = Distillation(teacher)
    flip = keras.layers.RandomFlip("horizontal", seed=1)
    with pytest.raises(ValueError, match="augment_copies"):
        kd.cache(x, y, augment=flip)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="random"):
        kd.cache(x, y, augment=lambda b: b + rng.normal(0, 0.1, b.shape).astype("float32"))
    assert is_random_augmentation(flip, x[:8])
    assert not is_random_augmentation(lambda b: 1.0 - b, x[:8])


def test_deterministic_augmentation_is_cached_once(teacher, digits):
    x, y = digits
    kd = Distillation(teacher)
    cache = kd.cache(x, y, augment=lambda b: 1.0 - b)
    assert cache.copies == 1 and cache.teacher_samples == len(x)
    images, targets = next(iter(cache.dataset(batch_size=16, shuffle=False)))
    np.testing.assert_allclose(images, 1.0 - x[:16])
    _, outputs = split_packed_targets(targets)
    np.testing.assert_allclose(outputs["logits"], teacher(1.0 - x[:16]), atol=1e-5)


def test_random_augmentation_cached_per_copy_keeps_pairs(teacher, digits):
    x, y = digits
    x, y = x[:40], y[:40]
    kd = Distillation(teacher)
    shift = keras.layers.RandomTranslation(0.2, 0.2, seed=2)
    cache = kd.cache(x, y, augment=shift, augment_copies=3, batch_size=16)
    assert cache.copies == 3 and cache.teacher_samples == 3 * len(x)
    copies = np.stack([cache.images(np.arange(len(x)), c) for c in range(3)])
    assert not np.allclose(copies[0], copies[1])
    for images, targets in cache.dataset(batch_size=20, seed=0):
        _, outputs = split_packed_targets(targets)
        np.testing.assert_allclose(outputs["logits"], teacher(images), atol=1e-5)
    # Different epochs draw different copies; each element stays one of its sample's copies.
    dataset = cache.dataset(10, shuffle=False, seed=0)
    epochs = [np.concatenate([b[0].numpy() for b in dataset]) for _ in range(2)]
    assert not np.allclose(epochs[0], epochs[1])
    for image, sample in zip(epochs[0], range(len(x)), strict=True):
        assert any(np.array_equal(image, copies[c, sample]) for c in range(3))


def test_dataset_sources(teacher, digits):
    x, y = digits
    kd = Distillation(teacher)
    batched = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    unbatched = tf.data.Dataset.from_tensor_slices((x, y))
    reference = kd.cache(x, y).teacher_outputs(np.arange(len(x)))["logits"]
    for source in (batched, unbatched):
        cache = kd.cache(source)
        assert cache.num_samples == len(x)
        np.testing.assert_allclose(
            cache.teacher_outputs(np.arange(len(x)))["logits"], reference, atol=1e-5
        )
    shuffled = unbatched.shuffle(len(x), seed=0).batch(32)
    with pytest.raises(ValueError, match="change between iterations"):
        kd.cache(shuffled)
    # A generator's state survives iterations (unlike `tf.random.uniform` under a global
    # seed, which replays the same draws on every iteration and so pairs correctly).
    generator = tf.random.Generator.from_seed(1)
    noisy = batched.map(lambda a, b: (a + generator.uniform(tf.shape(a)), b))
    with pytest.raises(ValueError, match="change between iterations"):
        kd.cache(noisy)
    with pytest.raises(ValueError, match="finite"):
        kd.cache(batched.repeat())


def test_disk_storage_is_memory_mapped_and_atomic(teacher, digits, tmp_path):
    x, y = digits
    kd = Distillation(
        teacher,
        feature_losses=[
            FeatureDistillation(teacher_layer_name="t_conv1", student_layer_name="s_conv1")
        ],
    )
    folder = tmp_path / "cache"
    disk = kd.cache(
        x, y, storage="disk", directory=str(folder), augment=lambda b: b[:, ::-1], batch_size=64
    )
    memory = kd.cache(x, y, augment=lambda b: b[:, ::-1], batch_size=64)
    names = sorted(os.listdir(folder))
    assert names == [
        "teacher_cache.json",
        "teacher_feature_loss.npy",
        "teacher_logits.npy",
        "x.npy",
        "y.npy",
    ]
    manifest = json.loads((folder / "teacher_cache.json").read_text())
    assert manifest["num_samples"] == len(x) and manifest["teacher_outputs"]["feature_loss"] == [
        28,
        28,
        8,
    ]
    assert isinstance(disk._teacher["logits"], np.memmap)
    for (a, ta), (b, tb) in zip(
        disk.dataset(50, shuffle=False), memory.dataset(50, shuffle=False), strict=True
    ):
        np.testing.assert_array_equal(a, b)
        for key in disk.keys:
            np.testing.assert_array_equal(
                split_packed_targets(ta)[1][key], split_packed_targets(tb)[1][key]
            )
    # A later run reopens the folder; another teacher is refused.
    reopened = TeacherCache.from_config(disk.get_config())
    assert TeacherCache.load(str(folder), kd).num_samples == len(x)
    np.testing.assert_array_equal(
        reopened.teacher_outputs(np.arange(len(x)))["logits"],
        memory.teacher_outputs(np.arange(len(x)))["logits"],
    )
    retrained = keras.models.clone_model(teacher)
    retrained.set_weights([w + 1.0 for w in teacher.get_weights()])
    other = Distillation(retrained, feature_losses=kd.feature_losses)
    with pytest.raises(ValueError, match="another teacher"):
        TeacherCache.load(str(folder), other)
    with pytest.raises(ValueError, match="storage='disk'"):
        memory.get_config()
    with pytest.raises(ValueError, match="holds no TeacherCache"):
        TeacherCache.load(str(tmp_path))
    student = compiled(student_net())
    kd.attach(student)
    history = student.fit(reopened.dataset(50, seed=0), epochs=1, verbose=0).history
    assert np.isfinite(history["feature_loss"][0])


def test_evaluate_accepts_a_cache_dataset(teacher, digits):
    x, y = digits
    student = compiled(student_net())
    kd = Distillation(teacher)
    kd.attach(student)
    cache = kd.cache(x, y)
    cached = student.evaluate(cache.dataset(50, shuffle=False), return_dict=True, verbose=0)
    plain = student.evaluate(x, y, batch_size=50, return_dict=True, verbose=0)
    np.testing.assert_allclose(cached["loss"], plain["loss"], rtol=1e-5)
    np.testing.assert_allclose(cached["accuracy"], plain["accuracy"])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"storage": "cloud"}, ValueError, "`storage`"),
        ({"storage": "disk"}, ValueError, "`directory`"),
        ({"batch_size": 0}, ValueError, "`batch_size`"),
        ({"augment_copies": 2}, ValueError, "`augment_copies`"),
        ({"augment": "flip"}, TypeError, "`augment`"),
        ({"y": None}, ValueError, "`y` is required"),
        ({"y": np.zeros(3)}, ValueError, "one entry per sample"),
        ({"x": np.zeros((4, 28, 28))}, ValueError, "rank 4"),
    ],
)
def test_bad_cache_arguments(teacher, digits, kwargs, error, match):
    x, y = digits
    arguments = {"x": x[:8], "y": y[:8], **kwargs}
    with pytest.raises(error, match=match):
        TeacherCache(Distillation(teacher), **arguments)
    with pytest.raises(TypeError, match="`distillation`"):
        TeacherCache(teacher, x, y)
