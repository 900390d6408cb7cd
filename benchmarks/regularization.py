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

import keras
import numpy as np
import tensorflow as tf
from _timing import interleaved_medians, wait  # noqa: E402

from keras_cnn_ext.layers import Cutout, DropBlock2D, DropPath, RandomErasing

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "regularization.md")
IMAGES = (32, 64, 64, 3)
FEATURES = (32, 56, 56, 64)


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


def pipeline_fn(layer, x, steps):
    """Iterates `steps` batches of a pipeline that maps `layer` (training mode) over `x`."""
    ds = tf.data.Dataset.from_tensors(x).repeat()
    if layer is not None:
        ds = ds.map(lambda t: layer(t, training=True), num_parallel_calls=None)
    ds = ds.take(steps)

    def run():
        for _ in ds:
            pass

    return run


def forward_fn(layer, x, jit):
    fn = tf.function(lambda t: layer(t, training=True), jit_compile=jit)
    try:
        fn(x)
    except Exception as e:  # a peer failing under XLA is a result, not a crash
        return f"fails: {type(e).__name__}"
    return lambda: wait(fn(x))


def fmt(value):
    return value if isinstance(value, str) else f"{value:.2f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 5)
    steps = 5 if args.quick else 20

    rng = np.random.default_rng(0)
    tensors = {
        IMAGES: tf.constant(rng.uniform(0, 255, IMAGES).astype("float32")),
        FEATURES: tf.constant(rng.normal(size=FEATURES).astype("float32")),
    }
    fns, slots = [], []
    for _group, name, shape, make in cases():
        x = tensors[shape]
        layer = None if make is None else make()
        if layer is not None:
            layer(x[:1], training=False)  # build outside the timed code
        row = [f"{'x'.join(map(str, shape))}", name]
        fns.append(pipeline_fn(layer, x, steps))
        row.append(len(fns) - 1)
        for jit in (False, True):
            fn = "-" if layer is None else forward_fn(layer, x, jit)
            if callable(fn):
                fns.append(fn)
                fn = len(fns) - 1
            row.append(fn)
        slots.append(row)
    # Every call takes turns: load from other jobs hits all cases alike.
    medians = interleaved_medians(
        dict(enumerate(fns)), repeats, rounds=repeats, warmup=1, settle=False
    )
    rows = []
    for row in slots:
        pipeline = medians[row[2]] / steps
        forward = [medians[v] if isinstance(v, int) else v for v in row[3:]]
        rows.append((row[0], row[1], pipeline, *forward))

    header = (
        "| input | layer (training mode) | tf.data ms/batch | fwd tf.function ms | fwd XLA ms |\n"
        "|---|---|---:|---:|---:|\n"
    )
    table = header + "".join("| " + " | ".join(fmt(v) for v in row) + " |\n" for row in rows)
    note = (
        f"\nTF {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPU cores, load average "
        f"{os.getloadavg()[0]:.1f} at the end (shared machine: figures are noisy). Median of "
        f"{repeats} repeats, all cases interleaved within each repeat; tf.data: {steps} batches "
        "per repeat, no prefetch, sequential map. The 'no ...' rows are the pipeline's own cost "
        "(a batch from `from_tensors(...).repeat()`). Keras' Dropout/SpatialDropout2D draw with "
        "`stateless_dropout`'s default algorithm ('auto_select'), which XLA on CPU runs ~70x "
        "slower than the Philox our layers name (keras_cnn_ext.utils.STATELESS_RNG_ALG).\n"
    )
    print()
    print(table + note)
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        f.write("# Regularization layers: tf.data per-step cost and forward time\n\n")
        f.write(table + note)


if __name__ == "__main__":
    main()
