"""Benchmark: fractional max pooling, ours vs `tf.nn.fractional_max_pool` vs torch.

Batch 32x64x64x64 float32, ratio 1.414, pseudo-random regions, overlapping and disjoint.
Forward and forward+backward, median of repeats after warm-up; ours under `tf.function` and
`tf.function(jit_compile=True)`, TF's op under `tf.function` only (it has no XLA kernel), and
`torch.nn.FractionalMaxPool2d(2, output_ratio=1/1.414)` on NCHW when torch imports.

Usage: python benchmarks/fractional_max_pool.py [--quick] [--repeats N] [--note TEXT]
Writes the markdown table to benchmarks/results/fractional_max_pool.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _timing import interleaved_medians, wait  # noqa: E402

from keras_cnn_ext.ops import fractional_max_pool2d  # noqa: E402

SHAPE = (32, 64, 64, 64)
RATIO = 1.414


def _tf_runners(x, overlapping, jit):
    def ours(t):
        return fractional_max_pool2d(t, RATIO, pseudo_random=True, overlapping=overlapping)[0]

    def theirs(t):
        return tf.nn.fractional_max_pool(t, [1.0, RATIO, RATIO, 1.0], True, overlapping)[0]

    def with_grad(pool):
        def step(t):
            with tf.GradientTape() as tape:
                tape.watch(t)
                y = pool(t)
            # y too: a forward that the gradient does not read could be pruned otherwise.
            return tape.gradient(y, t, output_gradients=tf.ones_like(y)), y

        return step

    runners = {}
    for name, pool in (("ours", ours), ("tf.nn.fractional_max_pool", theirs)):
        if name != "ours" and jit:
            continue
        forward = tf.function(pool, jit_compile=jit)
        backward = tf.function(with_grad(pool), jit_compile=jit)
        runners[name] = (
            lambda f=forward: wait(f(x)),
            lambda f=backward: wait(f(x)),
        )
    return runners


def _torch_runners(x_np, overlapping):
    try:
        import torch
    except ImportError:
        return None
    # torch's windows always have the fixed kernel size (2 here), overlapping or not.
    pool = torch.nn.FractionalMaxPool2d(2, output_ratio=(1 / RATIO, 1 / RATIO))
    x = torch.from_numpy(np.ascontiguousarray(x_np.transpose(0, 3, 1, 2)))

    def forward():
        with torch.no_grad():
            pool(x)

    def backward():
        t = x.detach().requires_grad_(True)
        y = pool(t)
        y.backward(torch.ones_like(y))

    return forward, backward


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (3)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default 15)")
    parser.add_argument(
        "--output",
        default=os.path.join(os.path.dirname(__file__), "results", "fractional_max_pool.md"),
    )
    parser.add_argument(
        "--note", default="", help='added to the table\'s caption, e.g. "loaded: other jobs ran"'
    )
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 15)

    x_np = np.random.default_rng(0).normal(size=SHAPE).astype(np.float32)
    x = tf.constant(x_np)
    rows = []
    for overlapping in (True, False):
        mode = "overlapping" if overlapping else "disjoint"
        runners = {}
        for jit in (False, True):
            for name, pair in _tf_runners(x, overlapping, jit).items():
                runners[f"{name} ({'XLA' if jit else 'tf.function'})"] = pair
        torch_runners = _torch_runners(x_np, overlapping)
        if torch_runners is not None:
            runners["torch FractionalMaxPool2d(2) NCHW"] = torch_runners
        timers = {(label, i): fn for label, pair in runners.items() for i, fn in enumerate(pair)}
        medians = interleaved_medians(timers, repeats)
        results = {label: (medians[label, 0], medians[label, 1]) for label in runners}
        base_fwd, base_bwd = results["tf.nn.fractional_max_pool (tf.function)"]
        for label, (fwd, bwd) in results.items():
            rows.append(
                f"| {mode} | {label} | {fwd:.1f} | {fwd / base_fwd:.2f}x | {bwd:.1f} | "
                f"{bwd / base_bwd:.2f}x |"
            )
    header = [
        f"Fractional max pooling, batch {'x'.join(map(str, SHAPE))} float32 (NHWC), ratio {RATIO}, "
        f"pseudo-random, measured {datetime.date.today()}; median of {repeats} calls after 2 warm-up runs, implementations taking "
        "turns in 3 rounds; "
        f"TF {tf.__version__}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs (shared: figures are noisy)"
        + (f"; {args.note}." if args.note else "."),
        "",
        "| regions | implementation | forward ms | vs TF op | fwd+bwd ms | vs TF op |",
        "|---|---|---:|---:|---:|---:|",
    ]
    table = "\n".join(header + rows)
    print(table)
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        f.write(table + "\n")


if __name__ == "__main__":
    main()
