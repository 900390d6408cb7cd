"""Attention layers vs the same computation written as plain Keras functional layers.

Each of SqueezeExcitation, EfficientChannelAttention, ChannelAttention, SpatialAttention
(sigmoid and softmax) and CBAM is timed against a Keras functional model built from
GlobalAveragePooling2D / GlobalMaxPooling2D / Conv2D / Conv1D / Multiply ... that computes
the same function with the same weights (checked before timing). Forward + backward: the
gradient of `sum(output)` with respect to the input and all weights, batch 32 x 56 x 56 x 64
float32, channels_last, in a plain `tf.function` and with `jit_compile=True`. Ours and the peer
run interleaved (ours, plain, ours, plain, ...) so that load from other jobs hits both alike;
the table gives medians and the ratio ours / plain.

Writes `benchmarks/results/attention.md`.

Usage: python benchmarks/attention.py [--quick] [--repeats N]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time

import keras
import numpy as np
import tensorflow as tf
from _timing import wait  # noqa: E402

from keras_cnn_ext.layers import (
    CBAM,
    ChannelAttention,
    EfficientChannelAttention,
    SpatialAttention,
    SqueezeExcitation,
)

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "attention.md")
SHAPE = (32, 56, 56, 64)
L = keras.layers


def plain_se(x, ratio=0.25):
    s = L.GlobalAveragePooling2D(keepdims=True)(x)
    s = L.Conv2D(int(x.shape[-1] * ratio), 1, activation="relu")(s)
    s = L.Conv2D(x.shape[-1], 1, activation="sigmoid")(s)
    return L.Multiply()([x, s])


def plain_eca(x, k=3):
    c = x.shape[-1]
    s = L.Reshape((c, 1))(L.GlobalAveragePooling2D()(x))
    s = L.Conv1D(1, k, padding="same", use_bias=False, activation="sigmoid")(s)
    return L.Multiply()([x, L.Reshape((1, 1, c))(s)])


def plain_channel(x, ratio=1 / 16):
    c = x.shape[-1]
    fc1 = L.Conv2D(int(c * ratio), 1, activation="relu")
    fc2 = L.Conv2D(c, 1)
    avg = fc2(fc1(L.GlobalAveragePooling2D(keepdims=True)(x)))
    mx = fc2(fc1(L.GlobalMaxPooling2D(keepdims=True)(x)))
    return L.Multiply()([x, L.Activation("sigmoid")(L.Add()([avg, mx]))])


def plain_spatial(x, mode="sigmoid"):
    h, w = x.shape[1:3]
    avg = L.Lambda(lambda t: keras.ops.mean(t, axis=-1, keepdims=True))(x)
    mx = L.Lambda(lambda t: keras.ops.max(t, axis=-1, keepdims=True))(x)
    s = L.Conv2D(1, 7, padding="same")(L.Concatenate()([avg, mx]))
    if mode == "sigmoid":
        s = L.Activation("sigmoid")(s)
    else:
        s = L.Reshape((h, w, 1))(L.Softmax()(L.Reshape((h * w,))(s)))
    return L.Multiply()([x, s])


def cases():
    """(name, our layer factory, plain functional graph)."""
    return [
        # Two copies of the same plain model: the spread of this ratio around 1 is the noise.
        ("noise floor: plain SE vs plain SE", None, plain_se),
        ("SqueezeExcitation(0.25)", lambda: SqueezeExcitation(0.25), plain_se),
        ("EfficientChannelAttention (k=3)", lambda: EfficientChannelAttention(), plain_eca),
        ("ChannelAttention(1/16)", lambda: ChannelAttention(), plain_channel),
        ("SpatialAttention(7)", lambda: SpatialAttention(7), plain_spatial),
        (
            "SpatialAttention(7, 'softmax')",
            lambda: SpatialAttention(7, mode="softmax"),
            lambda x: plain_spatial(x, "softmax"),
        ),
        ("CBAM", lambda: CBAM(), lambda x: plain_spatial(plain_channel(x))),
    ]


def build_pair(make_ours, make_plain):
    inputs = keras.Input(SHAPE[1:])
    plain = keras.Model(inputs, make_plain(inputs))
    inputs = keras.Input(SHAPE[1:])
    ours = keras.Model(inputs, make_plain(inputs) if make_ours is None else make_ours()(inputs))
    ours.set_weights(
        [
            np.reshape(p, tuple(o.shape))
            for p, o in zip(plain.get_weights(), ours.weights, strict=True)
        ]
    )
    return ours, plain


def train_step(model, jit):
    @tf.function(jit_compile=jit)
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(model(x, training=True))
        grads = tape.gradient(loss, [x, *model.trainable_variables])
        # A scalar that depends on every gradient, so none is pruned.
        return tf.add_n([tf.reduce_sum(g) for g in grads])

    return step


def xla_kernels(step, x):
    """Kernels (fusions, matmuls, convolutions) XLA emits for a step: a noise-free comparison."""
    hlo = step.experimental_get_compiler_ir(x)(stage="optimized_hlo")
    entry = hlo[hlo.index("ENTRY") :]
    return len(re.findall(r"= \S+ (?:fusion|dot|convolution|custom-call)\(", entry))


def interleaved_medians(fns, x, repeats, warmup=2):
    """Median wall-clock and median process CPU milliseconds of each function, interleaved."""
    for fn in fns:
        for _ in range(warmup):
            wait(fn(x))
    wall = [[] for _ in fns]
    cpu = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start, start_cpu = time.perf_counter(), time.process_time()
            wait(fn(x))
            wall[i].append((time.perf_counter() - start) * 1e3)
            cpu[i].append((time.process_time() - start_cpu) * 1e3)
    # CPU time counts the work done, not the time spent waiting for cores that other jobs hold:
    # on a shared machine it is the steadier of the two.
    return [(statistics.median(w), statistics.median(c)) for w, c in zip(wall, cpu, strict=True)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--only", default="", help="run only layers whose name contains this")
    args = parser.parse_args()
    repeats = args.repeats or (5 if args.quick else 15)

    x = tf.constant(np.random.default_rng(0).normal(size=SHAPE).astype("float32"))
    rows = []
    for name, make_ours, make_plain in cases():
        if args.only.lower() not in name.lower():
            continue
        ours, plain = build_pair(make_ours, make_plain)
        # Same function, same weights: a ratio of two different computations would mean nothing.
        np.testing.assert_allclose(
            np.asarray(ours(x[:2])), np.asarray(plain(x[:2])), rtol=1e-4, atol=1e-5
        )
        row = [name]
        for jit in (False, True):
            steps = [train_step(ours, jit), train_step(plain, jit)]
            (ours_ms, ours_cpu), (plain_ms, plain_cpu) = interleaved_medians(steps, x, repeats)
            row += [ours_ms, plain_ms, ours_ms / plain_ms, ours_cpu / plain_cpu]
        row.append(f"{xla_kernels(steps[0], x)} / {xla_kernels(steps[1], x)}")
        rows.append(row)
        print(" | ".join(f"{v:.3f}" if isinstance(v, float) else v for v in row), flush=True)

    header = (
        "| layer | tf.function ours ms | plain Keras ms | ratio | CPU-time ratio | "
        "XLA ours ms | XLA plain Keras ms | XLA ratio | XLA CPU-time ratio | XLA kernels |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    body = "".join(
        f"| {r[0]} | {r[1]:.2f} | {r[2]:.2f} | {r[3]:.3f} | {r[4]:.3f} "
        f"| {r[5]:.2f} | {r[6]:.2f} | {r[7]:.3f} | {r[8]:.3f} | {r[9]} |\n"
        for r in rows
    )
    note = (
        f"\nForward + backward (gradients w.r.t. input and weights), batch "
        f"{'x'.join(map(str, SHAPE))} float32, channels_last. Median of {repeats} interleaved "
        f"repeats. TF {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPU cores, "
        f"load average {os.getloadavg()[0]:.1f} at the end (shared machine: figures are noisy). "
        "Ratio = ours / plain Keras (< 1 is faster) "
        "of the median wall-clock times (ms columns) and of the median process CPU times. "
        "XLA kernels: fusions + matmuls + convolutions in the optimized HLO of the step, "
        "ours / plain (deterministic).\n"
    )
    print()
    print(header + body + note)
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        f.write("# Attention layers vs plain Keras functional layers (forward + backward)\n\n")
        f.write(header + body + note)


if __name__ == "__main__":
    main()
