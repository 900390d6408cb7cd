"""GroupConv2D (p4) vs a plain Conv2D with the same output channels (filters x 4).

Both layers are timed forward and forward + backward (the gradient of `sum(output)` with
respect to the input and the weights), in a plain `tf.function` and with `jit_compile=True`,
for a lifting layer (image -> p4 maps) and a group-to-group layer (p4 maps -> p4 maps).
GroupConv2D expands its filter bank from the base filters on every call (one gather and a
transpose) and then runs one convolution of the same shape as the plain layer's, so the ratio
ours / plain measures the expansion's overhead (target: at most 1.10x). Every call takes turns
(see `_timing.interleaved_medians`) so load from other jobs hits both alike, after one discarded
pass over the four callables.

Writes `benchmarks/results/group_conv.md`.

Usage: python benchmarks/group_conv.py [--repeats N] [--batch B] [--size S] [--note TEXT]
"""

from __future__ import annotations

import argparse
import datetime
import os

import keras
import numpy as np
import tensorflow as tf
from _results import write_result
from _timing import interleaved_medians, wait

from keras_cnn_ext.layers import GroupConv2D

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "group_conv.md")


def _fmt(value):
    return f"{value:.2f}" if isinstance(value, float) else value


def _step_fns(layer, x, jit):
    @tf.function(jit_compile=jit)
    def forward(t):
        return layer(t)

    @tf.function(jit_compile=jit)
    def backward(t):
        with tf.GradientTape() as tape:
            tape.watch(t)
            loss = tf.reduce_sum(layer(t))
        return tape.gradient(loss, [t, *layer.trainable_variables])

    return (lambda: wait(forward(x))), (lambda: wait(backward(x)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--fields", type=int, default=16)
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    f = args.fields
    cases = {
        f"lifting 3 -> {f}x4": (3, True),
        f"group {f}x4 -> {f}x4": (f * 4, False),
    }
    rows = []
    for label, (c_in, lifting) in cases.items():
        x = tf.constant(rng.normal(size=(args.batch, args.size, args.size, c_in)), tf.float32)
        ours = GroupConv2D(f, 3, group="p4", lifting=lifting, padding="same")
        plain = keras.layers.Conv2D(f * 4, 3, padding="same")
        ours.build(x.shape)
        plain.build(x.shape)
        for jit in (False, True):
            ours_fwd, ours_bwd = _step_fns(ours, x, jit)
            plain_fwd, plain_bwd = _step_fns(plain, x, jit)
            timers = {
                "ours_fwd": ours_fwd,
                "plain_fwd": plain_fwd,
                "ours_bwd": ours_bwd,
                "plain_bwd": plain_bwd,
            }
            # One discarded pass first: the first cell measured in a process read 1.22-1.25x
            # for whichever layer came first (0.99x for the same lifting cell measured later).
            interleaved_medians(timers, 8, rounds=8, settle=False)
            times = interleaved_medians(timers, args.repeats, rounds=args.repeats, settle=False)
            path = "XLA" if jit else "tf.function"
            for kind in ("fwd", "bwd"):
                o, p = times[f"ours_{kind}"], times[f"plain_{kind}"]
                ratio = f"{o / p:.2f}x" if isinstance(o, float) and isinstance(p, float) else "-"
                name = "forward" if kind == "fwd" else "forward+backward"
                rows.append((label, path, name, _fmt(o), _fmt(p), ratio))
                print(rows[-1], flush=True)
    date = datetime.date.today().isoformat()
    lines = [
        f"# GroupConv2D (p4) vs Conv2D(filters x 4) ({date})",
        "",
        f"Batch {args.batch}x{args.size}x{args.size}, 3x3 'same', float32, channels_last, "
        f"median of {args.repeats} calls (ms). {args.note}".rstrip(),
        "",
        "| layer | path | pass | GroupConv2D ms | Conv2D ms | ratio |",
        "|---|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    text = "\n".join(lines) + "\n"
    write_result(text, RESULTS)
    print(text)


if __name__ == "__main__":
    main()
