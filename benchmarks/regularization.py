"""Regularization layers: per-step cost in a tf.data pipeline and layer forward time.

1. `tf.data` pipeline: milliseconds per batch of a `from_tensors(batch).repeat().map(layer)`
   pipeline (no prefetch, one parallel call, so the map's cost is not hidden), minus nothing:
   the "no augmentation" row is the pipeline's own cost. Images are 32 x 64 x 64 x 3
   (Cutout, RandomErasing vs Keras' RandomErasing); features are 32 x 56 x 56 x 64
   (DropBlock2D, DropPath vs Keras' Dropout and SpatialDropout2D).
2. Layer forward (training mode) medians in a plain `tf.function` and with `jit_compile=True`,
   on the same tensors.

Writes `benchmarks/results/regularization.md`.

Usage: python benchmarks/regularization.py [--quick] [--repeats N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from keras_cnn_ext.layers import Cutout, DropBlock2D, DropPath, RandomErasing

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "regularization.md")
IMAGES = (32, 64, 64, 3)
FEATURES = (32, 56, 56, 64)


def median_ms(fn, repeats, warmup=2):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def cases():
    """(group, name, input shape, layer factory or None) rows; ours and the peer side by side."""
    return [
        ("images", "no augmentation", IMAGES, None),
        ("images", "Cutout(size=16)", IMAGES, lambda: Cutout(size=16, seed=1)),
        ("images", "Cutout(num_holes=4, size=16)", IMAGES, lambda: Cutout(4, 16, seed=1)),
        ("images", "RandomErasing(p=0.5)", IMAGES, lambda: RandomErasing(0.5, seed=1)),
        (
            "images",
            "RandomErasing(p=0.5, fill_mode='random')",
            IMAGES,
            lambda: RandomErasing(0.5, fill_mode="random", seed=1),
        ),
        (
            "images",
            "keras.layers.RandomErasing(factor=1.0)",
            IMAGES,
            lambda: keras.layers.RandomErasing(factor=1.0, fill_value=0.0, seed=1),
        ),
        ("features", "no regularization", FEATURES, None),
        (
            "features",
            "DropBlock2D(0.1, block_size=7)",
            FEATURES,
            lambda: DropBlock2D(0.1, 7, seed=1),
        ),
        (
            "features",
            "DropBlock2D(0.1, 7, shared_channels=True)",
            FEATURES,
            lambda: DropBlock2D(0.1, 7, seed=1, shared_channels=True),
        ),
        (
            "features",
            "keras.layers.SpatialDropout2D(0.1)",
            FEATURES,
            lambda: keras.layers.SpatialDropout2D(0.1, seed=1),
        ),
        (
            "features",
            "keras.layers.Dropout(0.1)",
            FEATURES,
            lambda: keras.layers.Dropout(0.1, seed=1),
        ),
        ("features", "DropPath(0.1)", FEATURES, lambda: DropPath(0.1, seed=1)),
    ]


def pipeline_ms(layer, x, steps, repeats):
    ds = tf.data.Dataset.from_tensors(x).repeat()
    if layer is not None:
        ds = ds.map(lambda t: layer(t, training=True), num_parallel_calls=None)
    ds = ds.take(steps)

    def run():
        for _ in ds:
            pass

    return median_ms(run, repeats, warmup=1) / steps


def forward_ms(layer, x, jit, repeats):
    if layer is None:
        return "-"
    fn = tf.function(lambda t: layer(t, training=True), jit_compile=jit)
    try:
        return median_ms(lambda: fn(x).numpy(), repeats)
    except Exception as e:  # a peer failing under XLA is a result, not a crash
        return f"fails: {type(e).__name__}"


def fmt(value):
    return value if isinstance(value, str) else f"{value:.2f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 7)
    steps = 5 if args.quick else 20

    rng = np.random.default_rng(0)
    tensors = {
        IMAGES: tf.constant(rng.uniform(0, 255, IMAGES).astype("float32")),
        FEATURES: tf.constant(rng.normal(size=FEATURES).astype("float32")),
    }
    rows = []
    for _group, name, shape, make in cases():
        x = tensors[shape]
        layer = None if make is None else make()
        if layer is not None:
            layer(x[:1], training=False)  # build outside the timed code
        rows.append(
            (
                f"{'x'.join(map(str, shape))}",
                name,
                pipeline_ms(layer, x, steps, repeats),
                forward_ms(layer, x, False, repeats),
                forward_ms(layer, x, True, repeats),
            )
        )
        print(" | ".join(fmt(v) for v in rows[-1]), flush=True)

    header = (
        "| input | layer (training mode) | tf.data ms/batch | fwd tf.function ms | fwd XLA ms |\n"
        "|---|---|---:|---:|---:|\n"
    )
    table = header + "".join("| " + " | ".join(fmt(v) for v in row) + " |\n" for row in rows)
    note = (
        f"\nTF {tf.__version__}, Keras {keras.__version__}, CPU ({os.cpu_count()} cores shared "
        f"with other jobs: figures are noisy). Median of {repeats} repeats; tf.data: {steps} "
        "batches per repeat, no prefetch, sequential map. The 'no ...' rows are the pipeline's "
        "own cost (a batch from `from_tensors(...).repeat()`).\n"
    )
    print()
    print(table + note)
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        f.write("# Regularization layers: tf.data per-step cost and forward time\n\n")
        f.write(table + note)


if __name__ == "__main__":
    main()
