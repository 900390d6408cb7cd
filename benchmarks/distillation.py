"""Knowledge distillation: ours (with and without the teacher cache) vs keras.distillation.Distiller.

On the real MNIST-5k digits (4,000 train / 1,000 test), one teacher CNN (about 420k
parameters) and one student CNN (about 7k, under 1/10 of the teacher):

1. Epoch time (median over `--repeats` epochs inside `fit`, after a first epoch that traces
   the step; the configurations take turns epoch by epoch) of logits distillation: ours reading a
   `TeacherCache` (its one-off build time reported apart), ours running the teacher in the
   step, and Keras' `Distiller` with `LogitsDistillation`; test accuracy after `--epochs`.
2. Feature distillation: student forward passes per training step (counted by a layer inside
   the student) and epoch time: ours (`FeatureDistillation` conv2 -> conv2 with its automatic
   1x1 projector, plus `AttentionTransfer`, cached) vs `Distiller` with a layer-named
   `FeatureDistillation` (on the logits layers: the only pair of equal shapes, which Keras
   requires).
3. A student trained on a 500-image labelled subset, labels only vs distilled (cached teacher
   outputs on the same 500 images), test accuracy over 3 seeds.

Keras' `LogitsDistillation` runs with `loss=keras.losses.KLDivergence()`: its default
`loss="kl_divergence"` resolves to the function, which Keras 3.15 applies to the scaled logits
without the softmax or the tau^2 factor.

Writes `benchmarks/results/distillation.md`.

Usage: python benchmarks/distillation.py [--quick] [--repeats N] [--epochs N]
"""

from __future__ import annotations

import argparse
import datetime
import os
import time

import keras
import numpy as np
import tensorflow as tf
from _results import write_result

from keras_cnn_ext.datasets import load_mnist_5k
from keras_cnn_ext.distillation import AttentionTransfer, Distillation, FeatureDistillation

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "distillation.md")
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
ALPHA, TEMPERATURE, BATCH = 0.1, 4.0, 64


class ForwardCounter(keras.layers.Layer):
    """Identity that adds 1 to `calls` each time a forward pass runs through it."""

    def build(self, input_shape):
        self.calls = self.add_weight(shape=(), initializer="zeros", trainable=False)

    def call(self, inputs):
        self.calls.assign_add(1.0)
        return inputs


def cnn(widths, dense, name, seed):
    init = keras.initializers.GlorotUniform(seed=seed)
    inputs = keras.Input((28, 28, 1))
    h = ForwardCounter(name=f"{name}_counter")(inputs)
    for i, width in enumerate(widths):
        h = keras.layers.Conv2D(
            width,
            3,
            padding="same",
            activation="relu",
            kernel_initializer=init,
            name=f"{name}_conv{i + 1}",
        )(h)
        h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(dense, activation="relu", kernel_initializer=init)(h)
    outputs = keras.layers.Dense(10, kernel_initializer=init, name=f"{name}_logits")(h)
    return keras.Model(inputs, outputs, name=name)


def teacher_net():
    return cnn([32, 64], 128, "t", seed=0)


def student_net(seed=0):
    return cnn([4, 8], 16, "s", seed=seed)


def compiled(model, learning_rate=2e-3):
    model.compile(keras.optimizers.Adam(learning_rate), LOSS, metrics=["accuracy"])
    return model


def accuracy(model, x, y):
    logits = model.predict(x, batch_size=500, verbose=0)
    return float(np.mean(np.argmax(logits, -1) == y))


def keras_distiller(teacher, student, losses):
    distiller = keras.distillation.Distiller(teacher, student, losses, student_loss_weight=ALPHA)
    distiller.compile(keras.optimizers.Adam(2e-3), LOSS, metrics=["accuracy"])
    return distiller


def ours(teacher, feature_losses=None):
    student = compiled(student_net())
    kd = Distillation(teacher, alpha=ALPHA, temperature=TEMPERATURE, feature_losses=feature_losses)
    kd.attach(student)
    return kd, student


class EpochTimer(keras.callbacks.Callback):
    """Wall time of the epochs inside `fit` (without `fit`'s own set-up and tear-down)."""

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds = time.perf_counter() - self.start


def epoch_runner(model, data):
    timer = EpochTimer()

    def run():
        model.fit(data, epochs=1, verbose=0, callbacks=[timer])
        return timer.seconds

    return run


def interleaved_epoch_medians(runs, repeats):
    """`{name: median epoch seconds}`; the configurations take turns epoch by epoch."""
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(run())
    return {name: float(np.median(t)) for name, t in times.items()}


def forward_passes_per_step(student, run, steps):
    counter = student.get_layer("s_counter").calls
    start = float(counter.numpy())
    run()
    return (float(counter.numpy()) - start) / steps


def timing_tables(teacher, x_train, y_train, x_test, y_test, repeats, epochs):
    steps = int(np.ceil(len(x_train) / BATCH))
    plain = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(len(x_train), seed=0)
        .batch(BATCH)
        .prefetch(tf.data.AUTOTUNE)
    )

    kd_cached, s_cached = ours(teacher)
    start = time.perf_counter()
    cache = kd_cached.cache(x_train, y_train)
    build_s = time.perf_counter() - start
    cached = cache.dataset(BATCH, seed=0)
    kd_live, s_live = ours(teacher)
    s_keras = student_net()
    d_keras = keras_distiller(
        teacher,
        s_keras,
        keras.distillation.LogitsDistillation(TEMPERATURE, loss=keras.losses.KLDivergence()),
    )
    runs = {
        "ours, TeacherCache": (s_cached, epoch_runner(s_cached, cached)),
        "ours, teacher in the step": (s_live, epoch_runner(s_live, plain)),
        "keras.distillation.Distiller": (s_keras, epoch_runner(d_keras, plain)),
    }

    terms = [
        FeatureDistillation(teacher_layer_name="t_conv2", student_layer_name="s_conv2"),
        AttentionTransfer("t_conv1", "s_conv1"),
    ]
    kd_feat, s_feat = ours(teacher, terms)
    feat_data = kd_feat.cache(x_train, y_train).dataset(BATCH, seed=0)
    s_kfeat = student_net()
    d_kfeat = keras_distiller(
        teacher,
        s_kfeat,
        [
            keras.distillation.LogitsDistillation(TEMPERATURE, loss=keras.losses.KLDivergence()),
            keras.distillation.FeatureDistillation("mse", "t_logits", "s_logits"),
        ],
    )
    feature_runs = {
        "ours: FeatureDistillation (1x1 projector 8->64) + AttentionTransfer, cached": (
            s_feat,
            epoch_runner(s_feat, feat_data),
        ),
        "Distiller: FeatureDistillation('t_logits', 's_logits')": (
            s_kfeat,
            epoch_runner(d_kfeat, plain),
        ),
    }

    all_runs = {**runs, **feature_runs}
    passes = {name: forward_passes_per_step(s, run, steps) for name, (s, run) in all_runs.items()}
    # The counting epoch above also traced every step; then the timed epochs take turns.
    medians = interleaved_epoch_medians({name: run for name, (_, run) in all_runs.items()}, repeats)
    trained = 1 + repeats
    for _, run in all_runs.values():
        for _ in range(max(0, epochs - trained)):
            run()
    baseline = medians["keras.distillation.Distiller"]
    rows = []
    for name, (student, _) in runs.items():
        rows.append(
            f"| {name} | {medians[name]:.2f} | {medians[name] / baseline:.2f}x | "
            f"{passes[name]:.0f} | {accuracy(student, x_test, y_test):.3f} |"
        )
    feature_rows = []
    for name, (student, _) in feature_runs.items():
        feature_rows.append(
            f"| {name} | {passes[name]:.1f} | {medians[name]:.2f} | "
            f"{accuracy(student, x_test, y_test):.3f} |"
        )
    epochs_done = max(epochs, trained)
    table = [
        f"Logits distillation, {len(x_train)} images, batch {BATCH}, alpha {ALPHA}, tau "
        f"{TEMPERATURE}; teacher {teacher.count_params():,} parameters (test accuracy "
        f"{accuracy(teacher, x_test, y_test):.3f}), student {s_cached.count_params():,}. "
        f"Cache built once in {build_s:.2f} s. Accuracy after {epochs_done} epochs.",
        "",
        "| training | epoch (s) | vs Distiller | student forwards / step | test accuracy |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "Feature distillation (same pair):",
        "",
        "| training | student forwards / step | epoch (s) | test accuracy |",
        "|---|---|---|---|",
        *feature_rows,
    ]
    return table


def subset_table(teacher, x_train, y_train, x_test, y_test, epochs, seeds=(0, 1, 2)):
    rows, results = [], {"labels only": [], "distilled": []}
    for seed in seeds:
        pick = np.random.default_rng(seed).permutation(len(x_train))[:500]
        x, y = x_train[pick], y_train[pick]
        keras.utils.set_random_seed(seed)
        plain = compiled(student_net(seed))
        plain.fit(
            tf.data.Dataset.from_tensor_slices((x, y)).shuffle(500, seed=seed).batch(32),
            epochs=epochs,
            verbose=0,
        )
        keras.utils.set_random_seed(seed)
        student = compiled(student_net(seed))
        kd = Distillation(teacher, alpha=ALPHA, temperature=TEMPERATURE)
        kd.attach(student)
        student.fit(kd.cache(x, y).dataset(32, seed=seed), epochs=epochs, verbose=0)
        a_plain, a_kd = accuracy(plain, x_test, y_test), accuracy(student, x_test, y_test)
        results["labels only"].append(a_plain)
        results["distilled"].append(a_kd)
        rows.append(f"| {seed} | {a_plain:.3f} | {a_kd:.3f} |")
    mean = {k: float(np.mean(v)) for k, v in results.items()}
    std = {k: float(np.std(v)) for k, v in results.items()}
    return [
        f"Student on a 500-image labelled subset ({epochs} epochs, batch 32); the teacher saw "
        f"the {len(x_train)} training images. Test accuracy on {len(x_test)} digits:",
        "",
        "| seed | labels only | distilled |",
        "|---|---|---|",
        *rows,
        f"| mean ± std | {mean['labels only']:.3f} ± {std['labels only']:.3f} | "
        f"{mean['distilled']:.3f} ± {std['distilled']:.3f} |",
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data, few epochs")
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs per configuration")
    parser.add_argument("--epochs", type=int, default=10, help="student epochs (table 1)")
    parser.add_argument("--subset-epochs", type=int, default=40, help="epochs (table 3)")
    parser.add_argument("--teacher-epochs", type=int, default=6)
    parser.add_argument("--output", default=RESULTS)
    args = parser.parse_args()
    (x_train, y_train), (x_test, y_test) = load_mnist_5k()
    if args.quick:
        x_train, y_train = x_train[:1000], y_train[:1000]
        args.repeats, args.epochs, args.subset_epochs, args.teacher_epochs = 2, 2, 3, 1
    load_start = os.getloadavg()[0]
    keras.utils.set_random_seed(0)
    teacher = compiled(teacher_net(), 1e-3)
    teacher.fit(x_train, y_train, batch_size=64, epochs=args.teacher_epochs, verbose=0)
    lines = [
        f"# Distillation ({datetime.date.today().isoformat()}, TensorFlow {tf.__version__}, "
        f"Keras {keras.__version__}, {os.cpu_count()} CPU cores)",
        "",
        *timing_tables(teacher, x_train, y_train, x_test, y_test, args.repeats, args.epochs),
        "",
        *subset_table(teacher, x_train, y_train, x_test, y_test, args.subset_epochs),
        "",
        f"1-minute load average at the start / end: {load_start:.1f} / {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} cores (other jobs shared the machine when it exceeds the cores: "
        "compare the rows of one run, not absolute times).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    write_result(text, args.output)


if __name__ == "__main__":
    main()
