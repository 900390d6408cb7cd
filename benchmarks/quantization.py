"""QAT benchmark: ours (Keras 3) against TFMOT (tf_keras, in a subprocess), and LiteRT latency.

    python benchmarks/quantization.py [--float-epochs 8] [--qat-epochs 2] [--repeats 20]

Part 1, LeNet-5 + BN on the 5,000 real MNIST digits (4,000 train / 1,000 test): float and int8
TFLite accuracy, a steady QAT epoch's time over a steady float epoch's (the first epoch, which
traces the step, is left out), and the float / QAT int8 / converter post-training int8 file
sizes, for ours and for TFMOT 0.8.1 on tf_keras (run in its own process with
TF_USE_LEGACY_KERAS=1: importing TFMOT switches `tf.keras` to tf_keras process-wide).

Part 2, LiteRT interpreter latency with 2 threads at batch 1 and 32 for LeNet-5 and ResNet-20
(28x28x1; half width for time, like the tests) as trained in part 1: our QAT int8 file, the
converter's post-training int8 file of the same float model, and the float file, with the
QUANTIZE/DEQUANTIZE ops counted inside the graph (beyond the input's and the output's).
Prints a markdown table and writes it to benchmarks/results/quantization.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(__file__))
from _timing import interleaved_medians  # noqa: E402

from keras_cnn_ext.datasets import load_mnist_5k  # noqa: E402
from keras_cnn_ext.export import run_tflite, to_tflite  # noqa: E402
from keras_cnn_ext.models import LeNet5, ResNet20  # noqa: E402
from keras_cnn_ext.quantization import quantize_model  # noqa: E402

RESULTS = os.path.join(os.path.dirname(__file__), "results", "quantization.md")


class EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.start)


def steady(times):
    """Median epoch time without the first (tracing) epoch."""
    return float(np.median(times[1:] if len(times) > 1 else times))


def accuracy_of(path, x, y):
    (probs,) = run_tflite(path, [x])
    return float(np.mean(probs.argmax(-1) == y))


def reestimate_batch_norm(model, x):
    """BN moving statistics from one pass over `x` (as torch.optim.swa_utils.update_bn)."""
    norms = [
        layer
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    for layer in norms:
        layer.momentum = 0.0
    model(x, training=True)
    for layer in norms:
        layer.momentum = 0.99


def ours(model, data, float_epochs, qat_epochs, folder, tag, train_size=None):
    (x_train, y_train), (x_test, y_test) = data
    x_train, y_train = x_train[:train_size], y_train[:train_size]
    keras.utils.set_random_seed(0)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile("adam", loss, metrics=["accuracy"])
    timer = EpochTimer()
    model.fit(x_train, y_train, batch_size=32, epochs=float_epochs, verbose=0, callbacks=[timer])
    float_epoch = steady(timer.times)
    if train_size is not None:  # few steps: the BN statistics lag behind the weights
        reestimate_batch_norm(model, x_train[:512])
    float_accuracy = model.evaluate(x_test, y_test, verbose=0)[1]
    qat = quantize_model(model)
    qat.compile(keras.optimizers.Adam(1e-4), loss)
    qat.fit(x_train, y_train, batch_size=32, epochs=qat_epochs, verbose=0, callbacks=[timer])
    qat_epoch = steady(timer.times)
    # A benchmark reports a failed verification (the `passed` column) instead of stopping.
    files = {
        "float": to_tflite(model, os.path.join(folder, f"{tag}_float.tflite"), on_mismatch="warn"),
        "ptq": to_tflite(
            model,
            os.path.join(folder, f"{tag}_ptq.tflite"),
            quantization="int8",
            representative_data=x_train[:200],
            on_mismatch="warn",
        ),
        "qat": to_tflite(qat, os.path.join(folder, f"{tag}_qat.tflite"), on_mismatch="warn"),
    }
    return {
        "float_accuracy": float_accuracy,
        "int8_accuracy": accuracy_of(files["qat"].path, x_test, y_test),
        "epoch_ratio": qat_epoch / float_epoch,
        "files": files,
    }


TFMOT_SCRIPT = r"""
import json, os, sys, time
import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot
from ai_edge_litert.interpreter import Interpreter
keras = tf.keras  # tf_keras after the TFMOT import
data = np.load(sys.argv[1]); folder = sys.argv[2]
float_epochs, qat_epochs = int(sys.argv[3]), int(sys.argv[4])
x_train, y_train, x_test, y_test = (data[k] for k in ("x_train", "y_train", "x_test", "y_test"))
tf.keras.utils.set_random_seed(0)
L = keras.layers
model = keras.Sequential([
    keras.Input((28, 28, 1)),
    L.Conv2D(6, 5, padding="same"), L.BatchNormalization(), L.ReLU(), L.MaxPooling2D(),
    L.Conv2D(16, 5), L.BatchNormalization(), L.ReLU(), L.MaxPooling2D(),
    L.Flatten(), L.Dense(120, activation="relu"), L.Dense(84, activation="relu"),
    L.Dense(10),
])
loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
class Timer(keras.callbacks.Callback):
    times = []
    def on_epoch_begin(self, e, logs=None): self.t = time.perf_counter()
    def on_epoch_end(self, e, logs=None): Timer.times.append(time.perf_counter() - self.t)
def steady(t): return float(np.median(t[1:] if len(t) > 1 else t))
model.compile("adam", loss, metrics=["accuracy"])
model.fit(x_train, y_train, batch_size=32, epochs=float_epochs, verbose=0, callbacks=[Timer()])
float_epoch = steady(Timer.times); Timer.times = []
float_accuracy = model.evaluate(x_test, y_test, verbose=0)[1]
qat = tfmot.quantization.keras.quantize_model(model)
qat.compile(keras.optimizers.Adam(1e-4), loss, metrics=["accuracy"])
qat.fit(x_train, y_train, batch_size=32, epochs=qat_epochs, verbose=0, callbacks=[Timer()])
qat_epoch = steady(Timer.times)
def save(converter, name):
    path = os.path.join(folder, name); open(path, "wb").write(converter.convert()); return path
float_path = save(tf.lite.TFLiteConverter.from_keras_model(model), "tfmot_float.tflite")
c = tf.lite.TFLiteConverter.from_keras_model(qat); c.optimizations = [tf.lite.Optimize.DEFAULT]
qat_path = save(c, "tfmot_qat.tflite")
it = Interpreter(model_path=qat_path); d = it.get_input_details()[0]
it.resize_tensor_input(d["index"], x_test.shape); it.allocate_tensors()
it.set_tensor(d["index"], x_test); it.invoke()
probs = it.get_tensor(it.get_output_details()[0]["index"])
print("RESULT" + json.dumps({
    "float_accuracy": float_accuracy, "int8_accuracy": float(np.mean(probs.argmax(-1) == y_test)),
    "epoch_ratio": qat_epoch / float_epoch, "float_size": os.path.getsize(float_path),
    "qat_size": os.path.getsize(qat_path),
}))
"""


def tfmot_reference(data, float_epochs, qat_epochs, folder):
    (x_train, y_train), (x_test, y_test) = data
    arrays = os.path.join(folder, "mnist.npz")
    np.savez(arrays, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    run = subprocess.run(
        [sys.executable, "-c", TFMOT_SCRIPT, arrays, folder, str(float_epochs), str(qat_epochs)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    for line in run.stdout.splitlines():
        if line.startswith("RESULT"):
            return json.loads(line[len("RESULT") :])
    return {"error": (run.stderr or run.stdout).strip().splitlines()[-1:]}


def graph_quant_ops(report):
    """QUANTIZE + DEQUANTIZE ops beyond one at the input and one at the output."""
    ops = report.ops
    return max(ops.get("QUANTIZE", 0) - 1, 0) + max(ops.get("DEQUANTIZE", 0) - 1, 0)


def latency(path, batch, repeats):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=2)
    detail = interpreter.get_input_details()[0]
    shape = [batch] + list(detail["shape"][1:])
    interpreter.resize_tensor_input(detail["index"], shape)
    interpreter.allocate_tensors()
    x = np.random.default_rng(0).uniform(0, 1, shape).astype(np.float32)
    interpreter.set_tensor(detail["index"], x)
    return interpreter.invoke


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--float-epochs", type=int, default=8)
    parser.add_argument("--qat-epochs", type=int, default=2)
    parser.add_argument("--resnet-float-epochs", type=int, default=3)
    parser.add_argument("--resnet-train-size", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--output", default=RESULTS)
    args = parser.parse_args(argv)
    load_at_start = os.getloadavg()[0]
    data = load_mnist_5k()
    folder = tempfile.mkdtemp(prefix="qat_bench_")

    lenet = ours(
        LeNet5(
            "modern",
            input_shape=(28, 28, 1),
            padding="same",
            norm="batch",
            classifier_activation=None,
        ),
        data,
        args.float_epochs,
        args.qat_epochs,
        folder,
        "lenet",
    )
    reference = tfmot_reference(data, args.float_epochs, args.qat_epochs, folder)
    resnet = ours(
        ResNet20(
            input_shape=(28, 28, 1),
            classes=10,
            attention="se",
            width_multiplier=0.5,
            classifier_activation=None,
        ),
        data,
        args.resnet_float_epochs,
        1,
        folder,
        "resnet",
        train_size=args.resnet_train_size,
    )

    lines = [
        f"QAT, LeNet-5 + BN on MNIST-5k (4,000 train / 1,000 test), {args.float_epochs} float + "
        f"{args.qat_epochs} QAT epochs, batch 32; TF {tf.__version__}, Keras {keras.__version__},"
        f" {platform.machine()}, {os.cpu_count()} CPU cores, 1-minute load average "
        f"{load_at_start:.1f} at the start and {os.getloadavg()[0]:.1f} at the end.",
        "",
        "| | float acc | int8 TFLite acc | QAT epoch / float epoch | float file | QAT int8 file "
        "| int8 / float | converter PTQ int8 file |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    f = lenet["files"]
    lines.append(
        f"| ours (Keras 3) | {lenet['float_accuracy']:.3f} | {lenet['int8_accuracy']:.3f} | "
        f"{lenet['epoch_ratio']:.2f}x | {f['float'].file_size} B | {f['qat'].file_size} B | "
        f"{f['qat'].file_size / f['float'].file_size:.3f} | {f['ptq'].file_size} B |"
    )
    if "error" in reference:
        lines.append(f"| TFMOT 0.8.1 (tf_keras) | error: {reference['error']} |||||||")
    else:
        r = reference
        lines.append(
            f"| TFMOT 0.8.1 (tf_keras) | {r['float_accuracy']:.3f} | {r['int8_accuracy']:.3f} | "
            f"{r['epoch_ratio']:.2f}x | {r['float_size']} B | {r['qat_size']} B | "
            f"{r['qat_size'] / r['float_size']:.3f} | |"
        )
    lines += [
        "",
        f"LiteRT interpreter (`ai_edge_litert` Interpreter, 2 threads), median of {args.repeats} "
        "invokes (ms); ResNet-20 with SE at half width (8/16/32 channels), "
        f"{args.resnet_float_epochs} float + 1 QAT epoch on "
        f"{args.resnet_train_size or len(data[0][0])} digits (float acc "
        f"{resnet['float_accuracy']:.3f}, int8 acc {resnet['int8_accuracy']:.3f}).",
        "",
        "| model | file | size | batch 1 | batch 32 | QUANTIZE/DEQUANTIZE inside the graph "
        "| verified vs Keras (max abs diff) |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for name, result in (("LeNet-5", lenet), ("ResNet-20 SE", resnet)):
        files = result["files"]
        timers = {}
        for kind in ("qat", "ptq", "float"):
            for batch in (1, 32):
                timers[(kind, batch)] = latency(files[kind].path, batch, args.repeats)
        medians = interleaved_medians(timers, args.repeats)
        labels = {"qat": "our QAT int8", "ptq": "converter PTQ int8", "float": "float32"}
        for kind in ("qat", "ptq", "float"):
            report = files[kind]
            lines.append(
                f"| {name} | {labels[kind]} | {report.file_size / 1024:.1f} KiB | "
                f"{medians[(kind, 1)]:.3f} | {medians[(kind, 32)]:.2f} | "
                f"{graph_quant_ops(report) if kind != 'float' else 0} | "
                f"{report.passed} ({report.max_abs_diff:.2g}) |"
            )
    table = "\n".join(lines) + "\n"
    print(table)
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as handle:
        handle.write(table)
    return table


if __name__ == "__main__":
    main()
