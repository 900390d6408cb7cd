"""`keras-cnn-ext bench`: latency and throughput of one model in Keras, TFLite and ONNX Runtime.

    keras-cnn-ext bench digits.keras
    keras-cnn-ext bench resnet20 --input-shape 32,32,3 --batch-size 32 --runtimes keras,onnx

The model is converted once into a temporary folder (TFLite float32, TFLite int8 calibrated on
random inputs, or on `--data`, ONNX); each runtime is warmed up, then timed `--repeats` times on
one image (latency) and on a batch (throughput). The median is reported.
"""

from __future__ import annotations

import os
import tempfile
import time

from keras_cnn_ext.cli import CLIError, load_target, parse_shape, positive_int
from keras_cnn_ext.commands import _common

RUNTIMES = ("keras", "tflite", "tflite-int8", "onnx")


def _runtimes(text):
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in RUNTIMES]
    if not names or unknown:
        raise CLIError(
            f"--runtimes must be a comma-separated subset of {','.join(RUNTIMES)}. Received: {text}"
        )
    return names


def add_arguments(parser):
    parser.add_argument(
        "target", metavar="ARCH|MODEL_FILE", help="a .keras model or an architecture name"
    )
    parser.add_argument(
        "--input-shape", type=parse_shape, default=None, help="for an architecture, e.g. 32,32,3"
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int("--batch-size"),
        default=32,
        help="batch of the throughput measurement (default 32)",
    )
    parser.add_argument(
        "--repeats", type=positive_int("--repeats"), default=20, help="timed runs (default 20)"
    )
    parser.add_argument(
        "--runtimes",
        type=_runtimes,
        default=list(RUNTIMES),
        help=f"comma-separated subset of {','.join(RUNTIMES)} (default: all)",
    )
    parser.add_argument(
        "--data",
        default=None,
        metavar="FOLDER|FILE.npz",
        help="real images for int8 calibration (default: uniform random in [0, 1))",
    )
    parser.add_argument("--output", default=None, help="also write the table to this .md file")
    _common.add_force_argument(parser)
    _common.add_unsafe_argument(parser)


def _median_seconds(fn, repeats):
    fn()  # warm-up: tracing, allocation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def _tflite_runner(path):
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    detail = interpreter.get_input_details()[0]
    state = {"shape": None}

    def run(x):
        if state["shape"] != x.shape:
            interpreter.resize_tensor_input(detail["index"], list(x.shape))
            interpreter.allocate_tensors()
            state["shape"] = x.shape
        scale, zero = detail["quantization"]
        if np.dtype(detail["dtype"]) == np.int8 and scale:
            x = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
        interpreter.set_tensor(detail["index"], x.astype(detail["dtype"]))
        interpreter.invoke()

    return run


def _onnx_runner(path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})


def _keras_runner(model):
    import tensorflow as tf

    forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    return lambda x: forward(tf.constant(x)).numpy()


def time_runtimes(runners, sample, batch_size, repeats):
    """`runners`: runtime name -> fn(x). Returns rows: name, ms per image, images/s."""
    import numpy as np

    one = np.ascontiguousarray(sample[:1])
    batch = np.ascontiguousarray(np.resize(sample, (batch_size, *sample.shape[1:])))
    rows = []
    for name, run in runners.items():
        latency = _median_seconds(lambda run=run: run(one), repeats)
        per_batch = _median_seconds(lambda run=run: run(batch), max(3, repeats // 4))
        rows.append((name, latency * 1e3, batch_size / per_batch))
    return rows


def format_rows(rows, batch_size):
    return _common.markdown_table(
        ["runtime", "latency (ms / image, batch 1)", f"throughput (images/s, batch {batch_size})"],
        [(name, f"{ms:.3f}", f"{ips:,.0f}") for name, ms, ips in rows],
    )


def benchmark(model, runtimes, sample, calibration, batch_size=32, repeats=20, files=None):
    """Times `model` in each runtime; `files` maps a runtime to an existing file to reuse."""
    from keras_cnn_ext.export import to_onnx, to_tflite

    files = dict(files or {})
    runners = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in runtimes:
            if name == "keras":
                runners[name] = _keras_runner(model)
                continue
            path = files.get(name)
            if path is None:
                path = os.path.join(
                    tmp, name.replace("-", "_") + (".onnx" if name == "onnx" else ".tflite")
                )
                try:
                    if name == "onnx":
                        to_onnx(model, path, verify=False)
                    elif name == "tflite":
                        to_tflite(model, path, verify=False)
                    else:
                        to_tflite(
                            model,
                            path,
                            quantization="int8",
                            representative_data=calibration,
                            verify=False,
                        )
                except Exception as e:
                    raise CLIError(
                        f"cannot convert the model for {name}: {' '.join(str(e).split())[:300]}"
                    ) from None
            runners[name] = _onnx_runner(path) if name == "onnx" else _tflite_runner(path)
        return time_runtimes(runners, sample, batch_size, repeats)


def run(args):
    import numpy as np

    if args.output:
        _common.check_output_file(args.output, args.force)
    model = load_target(args.target, args.input_shape, unsafe=args.unsafe)
    shape = tuple(model.inputs[0].shape[1:])
    if any(d is None for d in shape):
        raise CLIError("the model's input shape is not fully known; pass --input-shape.")
    rng = np.random.default_rng(0)
    if args.data is not None:
        size, channels = _common.model_image_size(model)
        (x, _), _, _ = _common.load_data(args.data, size, channels)
        calibration = _common.fit_images_to_model(x, model)[:200]
    else:
        calibration = rng.uniform(0, 1, (64, *shape)).astype("float32")
    sample = calibration[: args.batch_size].astype("float32")
    print(
        f"timing {model.name} {shape} in {', '.join(args.runtimes)} "
        f"({args.repeats} repeats, median)"
    )
    rows = benchmark(model, args.runtimes, sample, calibration, args.batch_size, args.repeats)
    table = format_rows(rows, args.batch_size)
    print(table)
    if args.output:
        from keras_cnn_ext.atomic import atomic_path

        with atomic_path(args.output) as partial, open(partial, "w") as f:
            f.write(table + "\n")
    return 0
