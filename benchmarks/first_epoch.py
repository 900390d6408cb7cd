"""The first `fit` call with and without `keras_cnn_ext.training.build_for_fit`.

Keras 3's TensorFlow trainer, without a distribution strategy, creates the optimizer's slots and
the compiled metrics' variables inside the first trace of the train function, and TensorFlow
traces a function that created variables a second time. `build_for_fit` creates them first.

Model: ResNet-20 with squeeze-and-excitation, quarter width, on 28x28x1 inputs (the QAT proof's
network), and its QAT copy (`quantize_model`); Adam, sparse cross-entropy from logits, an
accuracy metric. Data: 512 of the real MNIST digits, batch 64 (8 steps, no partial batch), one
epoch: the time is mostly tracing. Each repeat builds a fresh model (a new train function to
trace); one untimed run of each setting first warms up the process (imports, autograph's cache
of converted functions). Settings take turns in every repeat. Also counted: how many times the
train step was traced.

Writes `benchmarks/results/first_epoch.md`.

Usage: python benchmarks/first_epoch.py [--repeats N]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

from _results import write_result

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "first_epoch.md")


def _first_fit(kind, build, x, y):
    import keras

    from keras_cnn_ext.models import ResNet20
    from keras_cnn_ext.quantization import quantize_model
    from keras_cnn_ext.testing import count_train_traces
    from keras_cnn_ext.training import build_for_fit

    keras.utils.set_random_seed(0)
    model = ResNet20(
        input_shape=(28, 28, 1),
        classes=10,
        attention="se",
        width_multiplier=0.25,
        classifier_activation=None,
    )
    if kind == "qat":
        model = quantize_model(model)
    model.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    traces = count_train_traces(model)
    start = time.perf_counter()
    if build:
        build_for_fit(model, x, y)
    model.fit(x, y, batch_size=64, epochs=1, verbose=0, shuffle=False)
    return time.perf_counter() - start, len(traces)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import keras
    import tensorflow as tf

    from keras_cnn_ext.datasets import load_mnist_5k

    (x, y), _ = load_mnist_5k()
    x, y = x[:512], y[:512]
    settings = [(kind, build) for kind in ("float", "qat") for build in (False, True)]
    for kind, build in settings:  # warm-up, untimed
        _first_fit(kind, build, x, y)
    times = {s: [] for s in settings}
    traces = {}
    for _ in range(args.repeats):
        for setting in settings:
            seconds, count = _first_fit(*setting, x, y)
            times[setting].append(seconds)
            traces[setting] = count
    lines = [
        "# First `fit` call: Keras' default against `build_for_fit`",
        "",
        f"{time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, TF {tf.__version__}, Keras {keras.__version__}; "
        f"median of {args.repeats} (fresh model each), one epoch of 8 steps (batch 64).",
        "",
        "| model | Keras default | traces | `build_for_fit` first | traces | time saved |",
        "|---|---|---|---|---|---|",
    ]
    for kind, label in (("float", "ResNet-20 SE, quarter width"), ("qat", "its QAT copy")):
        plain = statistics.median(times[(kind, False)])
        built = statistics.median(times[(kind, True)])
        lines.append(
            f"| {label} | {plain:.1f} s | {traces[(kind, False)]} | {built:.1f} s | "
            f"{traces[(kind, True)]} | {100 * (1 - built / plain):.0f}% |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    write_result(text, RESULTS)


if __name__ == "__main__":
    main()
