"""ResNet-50 training throughput (ours vs keras.applications) and block overhead (ours vs plain).

1. Training images/s of `keras_cnn_ext.models.ResNet50` and `keras.applications.ResNet50` on the
   same input (64x64x3, batch 32, SGD, 1000 classes), `train_on_batch` in alternation so both see
   the same machine load; median of repeats. Models compiled with `jit_compile="auto"` (on a CPU
   that means no XLA) and, without `--quick`, `jit_compile=True`.
2. Each block layer vs the same computation written as plain Keras functional layers, on a
   float32 batch of 32x56x56x64: forward+backward median (ms), plain `tf.function` and
   `jit_compile=True`.

Writes `benchmarks/results/resnet_training.md`.

Usage: python benchmarks/resnet_training.py [--quick] [--repeats N]
"""

from __future__ import annotations

import argparse
import os

import keras
import numpy as np
import tensorflow as tf
from _timing import interleaved_medians, wait  # noqa: E402

from keras_cnn_ext.layers import DenseBlock, ResidualBlock, SeparableConvBlock, TransitionBlock
from keras_cnn_ext.models import ResNet50

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "resnet_training.md")
EPS = 1.001e-5


def _median_pair(run_a, run_b, repeats):
    """Median milliseconds of `run_a` and `run_b`, every call taking turns (same load for both)."""
    medians = interleaved_medians(
        {"a": run_a, "b": run_b}, repeats, rounds=repeats, warmup=2, settle=False
    )
    return medians["a"], medians["b"]


def training_rows(batch, size, repeats, jit_modes):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, size, size, 3)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 1000, batch), 1000)
    rows = []
    for jit in jit_modes:
        models = []
        for build in (
            lambda: ResNet50(input_shape=(size, size, 3)),
            lambda: keras.applications.ResNet50(weights=None, input_shape=(size, size, 3)),
        ):
            model = build()
            model.compile(
                optimizer=keras.optimizers.SGD(0.01),
                loss="categorical_crossentropy",
                jit_compile=jit,
            )
            models.append(model)
        ours, theirs = _median_pair(
            lambda m=models[0]: m.train_on_batch(x, y),
            lambda m=models[1]: m.train_on_batch(x, y),
            repeats,
        )
        rows.append(
            f"| ResNet50 train step, {size}x{size}, batch {batch} | `jit_compile={jit!r}` | "
            f"{1e3 * batch / ours:.1f} | {1e3 * batch / theirs:.1f} | {theirs / ours:.3f} |"
        )
    return rows


# --- blocks vs plain functional Keras ------------------------------------------------------


def _bn(x):
    return keras.layers.BatchNormalization(epsilon=EPS)(x)


def _conv(x, filters, kernel, **kwargs):
    return keras.layers.Conv2D(filters, kernel, padding="same", use_bias=False, **kwargs)(x)


def plain_bottleneck_v1(x):
    h = keras.layers.ReLU()(_bn(_conv(x, 16, 1)))
    h = keras.layers.ReLU()(_bn(_conv(h, 16, 3)))
    h = _bn(_conv(h, 64, 1))
    return keras.layers.ReLU()(keras.layers.Add()([x, h]))


def plain_basic_v1(x):
    h = keras.layers.ReLU()(_bn(_conv(x, 64, 3)))
    h = _bn(_conv(h, 64, 3))
    return keras.layers.ReLU()(keras.layers.Add()([x, h]))


def plain_bottleneck_v2(x):
    p = keras.layers.ReLU()(_bn(x))
    h = keras.layers.ReLU()(_bn(_conv(p, 16, 1)))
    h = keras.layers.ReLU()(_bn(_conv(h, 16, 3)))
    return keras.layers.Add()([x, _conv(h, 64, 1)])


def plain_dense_block(x, layers=4, k=32):
    for _ in range(layers):
        h = _conv(keras.layers.ReLU()(_bn(x)), 4 * k, 1)
        h = _conv(keras.layers.ReLU()(_bn(h)), k, 3)
        x = keras.layers.Concatenate()([x, h])
    return x


def plain_transition(x):
    h = _conv(keras.layers.ReLU()(_bn(x)), 32, 1)
    return keras.layers.AveragePooling2D(2)(h)


def plain_separable(x):
    h = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    h = keras.layers.ReLU(6.0)(keras.layers.BatchNormalization()(h))
    h = keras.layers.Conv2D(64, 1, use_bias=False)(h)
    return keras.layers.ReLU(6.0)(keras.layers.BatchNormalization()(h))


BLOCKS = [
    ("ResidualBlock bottleneck v1", lambda: ResidualBlock(16), plain_bottleneck_v1),
    (
        "ResidualBlock basic v1",
        lambda: ResidualBlock(64, block_type="basic"),
        plain_basic_v1,
    ),
    (
        "ResidualBlock bottleneck v2",
        lambda: ResidualBlock(16, version="v2", use_bias=False),
        plain_bottleneck_v2,
    ),
    ("DenseBlock 4 layers, k=32", lambda: DenseBlock(4, growth_rate=32), plain_dense_block),
    ("TransitionBlock 0.5", lambda: TransitionBlock(0.5), plain_transition),
    ("SeparableConvBlock 64", lambda: SeparableConvBlock(64), plain_separable),
]


def _as_model(fn_or_layer, shape):
    """A block layer or a function of a Keras tensor, as a functional model."""
    inputs = keras.Input(shape)
    return keras.Model(inputs, fn_or_layer(inputs))


def _train_step(model, jit):
    @tf.function(jit_compile=jit)
    def step(t):
        with tf.GradientTape() as tape:
            tape.watch(t)
            y = model(t, training=True)
            loss = tf.reduce_mean(tf.square(y))
        return tape.gradient(loss, [t] + model.trainable_variables)

    return step


def block_rows(batch, repeats):
    shape = (56, 56, 64)
    x = tf.constant(np.random.default_rng(1).normal(size=(batch, *shape)).astype("float32"))
    rows = []
    for label, make_block, plain in BLOCKS:
        ours_model = _as_model(make_block(), shape)
        plain_model = _as_model(plain, shape)
        if ours_model.count_params() != plain_model.count_params():
            raise AssertionError(f"{label}: the plain model is not the same computation")
        for jit in (False, True):
            ours_step, plain_step = _train_step(ours_model, jit), _train_step(plain_model, jit)
            ours, theirs = _median_pair(
                lambda s=ours_step: wait(s(x)),
                lambda s=plain_step: wait(s(x)),
                repeats,
            )
            mode = "XLA" if jit else "tf.function"
            rows.append(f"| {label} | {mode} | {ours:.1f} | {theirs:.1f} | {ours / theirs:.3f} |")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no XLA training")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args(argv)
    repeats = args.repeats or (5 if args.quick else 10)
    jit_modes = ("auto",) if args.quick else ("auto", True)
    lines = [
        "### ResNet-50 training throughput (images/s; higher is better)",
        "",
        "| case | compile | keras_cnn_ext | keras.applications | ours / keras |",
        "|---|---|---|---|---|",
        *training_rows(32, 64, repeats, jit_modes),
        "",
        "### Blocks vs the same plain Keras functional layers, forward+backward, "
        "batch 32x56x56x64 (ms; lower is better)",
        "",
        "| block | compile | keras_cnn_ext | plain Keras | ours / plain |",
        "|---|---|---|---|---|",
        *block_rows(32, repeats),
        "",
        f"Median of {repeats} alternated repeats after 2 warm-up steps; "
        f"TF {tf.__version__}, Keras {keras.__version__}, "
        f"{os.cpu_count()} CPU cores shared with other jobs (figures are noisy).",
    ]
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
