"""How long `keras_cnn_ext.analysis.profile()` takes on keras.applications models.

For ResNet50, VGG16, MobileNet and DenseNet121 at 224x224x3 (batch 1, `weights=None`), and
keras_cnn_ext's own ResNet-50 v1.5 (whose residual blocks are composite layers, so `profile()`
traces them), the
model is built once (build time excluded from every figure), then `profile(model)` runs
`--repeats` times after one warm-up call; the table gives the median. Beside it, the only other
way to count FLOPs of a Keras 3 model on TensorFlow: trace it with `tf.function`, freeze the
variables and run `tf.profiler`'s float-operation view (median of `--peer-repeats`), with its
float-op count / 2. The two counts differ by what tf.profiler adds (batch norm, bias, adds, one
per element) on top of the convolution and dense MACs that `profile()` reports as MACs.

No `tf.function`/`jit_compile` columns: `profile()` runs no TensorFlow computation, it reads
shapes and layer configurations. The machine is shared (2 cores, other jobs running), so the
figures are noisy.

Writes `benchmarks/results/profile.md`.

Usage: python benchmarks/profile.py [--repeats N] [--peer-repeats N] [--models A,B]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_cnn_ext.analysis import profile  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "profile.md")
MODELS = ("ResNet50", "VGG16", "MobileNet", "DenseNet121")


def tf_profiler_flops(model):
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )
    from tensorflow.python.profiler import model_analyzer, option_builder

    spec = tf.TensorSpec((1,) + tuple(model.input_shape[1:]))
    fn = tf.function(lambda t: model(t, training=False)).get_concrete_function(spec)
    graph = convert_variables_to_constants_v2(fn).graph
    options = option_builder.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return model_analyzer.profile(graph, cmd="scope", options=options).total_float_ops


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--peer-repeats", type=int, default=1)
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    builders = {name: getattr(keras.applications, name) for name in args.models.split(",")}
    try:
        from keras_cnn_ext.models import ResNet

        # Our builder's blocks are composite layers: this row times the traced path.
        builders["keras_cnn_ext ResNet(50, v1.5)"] = lambda weights=None: ResNet(
            50, version="v1.5", input_shape=(224, 224, 3)
        )
    except ImportError:
        pass
    rows = []
    for name, builder in builders.items():
        start = time.perf_counter()
        model = builder(weights=None)
        build = time.perf_counter() - start
        result = profile(model)  # warm-up
        ours = median_time(lambda m=model: profile(m), args.repeats)
        flops = tf_profiler_flops(model)  # warm-up (first trace is the slowest)
        peer = median_time(lambda m=model: tf_profiler_flops(m), args.peer_repeats)
        rows.append((name, len(result.records), result.macs, flops / 2, ours, peer, build))
        print(f"{name}: profile {ours * 1000:.0f} ms, tf.profiler {peer * 1000:.0f} ms", flush=True)

    lines = [
        "| Model (keras.applications unless named; 224x224, batch 1) | records | profile() MACs | tf.profiler FLOPs / 2 "
        "| profile() median | tf.function + freeze + tf.profiler median | build (excluded) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, n, macs, half_flops, ours, peer, build in rows:
        lines.append(
            f"| {name} | {n} | {macs / 1e9:.3f} G | {half_flops / 1e9:.3f} G | "
            f"{ours * 1000:.0f} ms | {peer * 1000:.0f} ms | {build:.1f} s |"
        )
    note = (
        f"\nMedians of {args.repeats} `profile()` calls and {args.peer_repeats} tf.profiler "
        "run(s) after one warm-up each; TF "
        f"{tf.__version__}, Keras {keras.__version__}, CPU shared with other jobs (noisy).\n"
    )
    table = "\n".join(lines) + "\n" + note
    print(table)
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        f.write("# profile() speed\n\n" + table)


if __name__ == "__main__":
    main()
