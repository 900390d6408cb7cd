"""Adaptive average/max pooling: keras_cnn_ext vs keras.layers.Adaptive*Pooling2D vs torch.

Forward and forward+backward medians (ms) on a float32 batch of 32 x 64 x 64 x 64 (channels_last
for TF, NCHW for torch), for plain `tf.function` and `jit_compile=True`. Writes
`benchmarks/results/adaptive_pool.md`.

Usage: python benchmarks/adaptive_pool.py [--quick] [--repeats N] [--skip-keras] [--note TEXT]

Implementations take turns in rounds (`_timing.interleaved_medians`). Every 32 MiB gradient is
a fresh mmap whose page faults cost about 10 ms here, in TF and torch alike; to time the
computation without them, run with
`GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=4294967296`
and `--output benchmarks/results/adaptive_pool_no_page_faults.md`.

Keras' `AdaptiveMaxPooling2D((1, 1))` kills the process with SIGFPE, so it is not run.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os

import keras
import numpy as np
import tensorflow as tf
from _timing import interleaved_medians, wait  # noqa: E402

from keras_cnn_ext.ops import adaptive_avg_pool2d, adaptive_max_pool2d

CASES = [(64, 7), (64, 1), (63, 32), (64, 32)]
QUICK_CASES = [(64, 7), (64, 1), (63, 32)]
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "adaptive_pool.md")


def tf_timers(pool, x, dy, jit):
    """(forward, forward+backward) callables for `pool`, an `x -> y` function.

    The upstream gradient `dy` is an argument, not `ones_like(y)`: XLA would fold a constant
    upstream into the gradient of an average pooling, which then does not depend on `x`.
    """
    forward = tf.function(pool, jit_compile=jit)

    @tf.function(jit_compile=jit)
    def backward(t, upstream):
        with tf.GradientTape() as tape:
            tape.watch(t)
            y = pool(t)
        # y is returned too: a gradient that does not read y would otherwise let TF and XLA
        # prune the forward pass, which torch's timer always pays for.
        return tape.gradient(y, t, output_gradients=upstream), y

    return (lambda: wait(forward(x))), (lambda: wait(backward(x, dy)))


def torch_timers(mode, x_np, dy_np, out):
    import torch

    fn = getattr(torch.nn.functional, f"adaptive_{mode}_pool2d")
    x = torch.tensor(np.transpose(x_np, (0, 3, 1, 2)).copy())
    dy = torch.tensor(np.transpose(dy_np, (0, 3, 1, 2)).copy())

    def forward():
        with torch.no_grad():
            fn(x, out)

    def backward():
        t = x.detach().requires_grad_(True)
        fn(t, out).backward(dy)

    return forward, backward


def fmt(value):
    return value if isinstance(value, str) else f"{value:.1f}"


def safe_timers(make, names):
    """`make()`'s callables under `names`, or one that raises the error building them raised."""
    try:
        return dict(zip(names, make(), strict=True))
    except Exception as e:  # a peer failing is a result, not a crash of the benchmark
        error = e

        def fail():
            raise error

        return dict.fromkeys(names, fail)


def case_timers(mode, out, x_np, dy_np, skip_keras, have_torch):
    """The table's column names, `{name: timer}` and `{name: why}` for columns not timed."""
    x, dy = tf.constant(x_np), tf.constant(dy_np)
    ours = {"avg": adaptive_avg_pool2d, "max": adaptive_max_pool2d}[mode]
    peer = {"avg": keras.layers.AdaptiveAveragePooling2D, "max": keras.layers.AdaptiveMaxPooling2D}
    columns, timers, not_run = [], {}, {}
    for jit in (False, True):
        names = [f"ours {jit} fwd", f"ours {jit} bwd"]
        columns += names
        make = functools.partial(tf_timers, lambda t: ours(t, out), x, dy, jit)
        timers.update(safe_timers(make, names))
    for jit in (False, True):
        names = [f"keras {jit} fwd", f"keras {jit} bwd"]
        columns += names
        if skip_keras:
            not_run.update(dict.fromkeys(names, "skipped"))
        elif mode == "max" and out == 1:
            not_run.update(dict.fromkeys(names, "not run (SIGFPE)"))
        else:
            make = functools.partial(tf_timers, peer[mode](out), x, dy, jit)
            timers.update(safe_timers(make, names))
    names = ["torch fwd", "torch bwd"]
    columns += names
    if have_torch:
        timers.update(safe_timers(lambda: torch_timers(mode, x_np, dy_np, out), names))
    else:
        not_run.update(dict.fromkeys(names, "n/a"))
    # TF's floor for any call here: an empty tf.function on the same input, with the same wait.
    empty = tf.function(lambda t: t[:1, :1, :1, :1])
    timers["empty"] = lambda: wait(empty(x))
    columns.append("empty")
    return columns, timers, not_run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer cases and repeats")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--output", default=RESULTS, help="markdown file to write")
    parser.add_argument("--modes", default="avg,max", help="comma-separated: avg, max")
    parser.add_argument("--cases", default=None, help="comma-separated in:out pairs, e.g. 63:32")
    parser.add_argument("--skip-keras", action="store_true", help="time ours and torch only")
    parser.add_argument(
        "--note", default="", help='added to the table\'s caption, e.g. "loaded: other jobs ran"'
    )
    args = parser.parse_args()
    # Each case makes its own timers' tf.functions on purpose; TF would warn about retracing.
    tf.get_logger().setLevel("ERROR")
    repeats = args.repeats or (5 if args.quick else 21)
    cases = QUICK_CASES if args.quick else CASES
    if args.cases:
        cases = [tuple(int(v) for v in case.split(":")) for case in args.cases.split(",")]
    modes = args.modes.split(",")
    try:
        import torch  # noqa: F401

        have_torch = True
    except ImportError:
        have_torch = False

    rng = np.random.default_rng(0)
    rows = []
    for mode in modes:
        for size, out in cases:
            x_np = rng.standard_normal((32, size, size, 64)).astype(np.float32)
            dy_np = rng.standard_normal((32, out, out, 64)).astype(np.float32)
            columns, timers, not_run = case_timers(
                mode, out, x_np, dy_np, args.skip_keras, have_torch
            )
            results = {**not_run, **interleaved_medians(timers, repeats)}
            row = [f"{mode} {size}->{out}"] + [results[name] for name in columns]
            rows.append(row)
            print(" | ".join(fmt(v) for v in row), flush=True)
            # Written after every row: a slow peer on a busy machine still leaves a table.
            table = markdown(rows, repeats, have_torch, args.note)
            if not args.no_write:
                os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
                with open(args.output, "w") as f:
                    f.write(table + "\n")
    print(table)


def markdown(rows, repeats, have_torch, note=""):
    header = (
        "| case | ours fwd | ours fwd+bwd | ours XLA fwd | ours XLA fwd+bwd "
        "| Keras fwd | Keras fwd+bwd | Keras XLA fwd | Keras XLA fwd+bwd | torch fwd | torch fwd+bwd "
        "| TF empty call |"
    )
    lines = [
        f"Adaptive pooling, batch 32 x S x S x 64 float32, measured {datetime.date.today()}, "
        f"median of {repeats} calls (ms), "
        "implementations taking turns in 3 rounds; "
        f"TF {tf.__version__}, Keras {keras.__version__}"
        + (f", torch {__import__('torch').__version__}" if have_torch else "")
        + f", {os.cpu_count()} CPU cores (shared machine: figures are noisy)"
        + (f"; GLIBC_TUNABLES={tunables}" if (tunables := os.environ.get("GLIBC_TUNABLES")) else "")
        + (f"; {note}." if note else "."),
        "",
        header,
        "|---|" + "---:|" * 11,
        *("| " + " | ".join(fmt(v) for v in row) + " |" for row in rows),
        "",
        "Keras' AdaptiveMaxPooling2D((1, 1)) is not run: it has killed the process with SIGFPE "
        "(here it raises inside tf.function). Keras' average (1, 1) raises 'Negative dimension "
        "size' inside tf.function (the ValueError shown).",
        "",
        "The last column is TF's fixed cost of a call in this benchmark, included in every TF "
        "figure: an empty `tf.function` on the same input with the same wait (a torch eager call "
        "costs microseconds).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
