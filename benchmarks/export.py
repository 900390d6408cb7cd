"""Conversion time: `to_tflite` / `to_onnx` against the converters' documented entry points.

TFLite, one traced inference function of the model (batch dimension dynamic), converted with
builtin ops only by:
- `TFLiteConverter.from_keras_model(model)`: the converter's Keras entry point (it writes a
  SavedModel and converts that);
- `from_concrete_functions([frozen])`: the function frozen first (`convert_variables_to_constants_v2`),
  which `to_tflite` did before 0.2.0: the converter then freezes the frozen function again;
- `from_concrete_functions([function])`: the converter freezes it once (`to_tflite` now).
ONNX: `tf2onnx.convert.from_keras(model)`, `tf2onnx.convert.from_function(function)` with its
defaults, and `to_onnx` (which converts the same function without tf2onnx's copy of the graph
before every optimizer pass and without rebuilding a function from the frozen graph).

The converter rows time the conversion only (the trace is made once, untimed, where a row takes a
function); the `to_tflite` / `to_onnx` rows are the whole call a user makes: trace, conversion,
and the file run in LiteRT / onnxruntime and compared with Keras. Every setting takes its turn in
each repeat; a fresh model per network, the same one for every setting. "same file" compares
each TFLite file's bytes with the frozen-function row's (the Keras entry point's SavedModel adds
signature metadata, so its bytes differ), and each ONNX file's ops, attributes and constants
with tf2onnx's own `from_function`'s (tf2onnx numbers node names per process).

Writes `benchmarks/results/export.md`.

Usage: python benchmarks/export.py [--repeats N]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import statistics
import tempfile
import time
import warnings

from _results import write_result

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "export.md")


def _networks():
    from keras_cnn_ext.models import DenseNet121, ResNet18

    return {
        "ResNet-18 (224x224)": lambda: ResNet18(input_shape=(224, 224, 3)),
        "DenseNet-121 (224x224)": lambda: DenseNet121(input_shape=(224, 224, 3)),
    }


def _function(model):
    """The input specs and the traced-function factory `to_tflite` and `to_onnx` use themselves."""
    from keras_cnn_ext.export import _common

    specs = _common.input_specs(model, None)
    return specs, _common.inference_function(model, specs)


def _tflite_settings(model, folder):
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    from keras_cnn_ext.export import to_tflite

    _, function = _function(model)
    concrete = function.get_concrete_function()

    def convert(converter):
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        with contextlib.redirect_stdout(io.StringIO()):  # Keras' SavedModel lists its endpoints
            return converter.convert()

    return {
        "TFLiteConverter.from_keras_model": lambda: convert(
            tf.lite.TFLiteConverter.from_keras_model(model)
        ),
        "from_concrete_functions([frozen]) (0.1)": lambda: convert(
            tf.lite.TFLiteConverter.from_concrete_functions(
                [convert_variables_to_constants_v2(concrete)]
            )
        ),
        "from_concrete_functions([function])": lambda: convert(
            tf.lite.TFLiteConverter.from_concrete_functions([concrete])
        ),
        "to_tflite (trace, convert, verify)": lambda: open(
            to_tflite(model, os.path.join(folder, "ours.tflite")).path, "rb"
        ).read(),
    }


def _onnx_structure(proto):
    ops = sorted(
        (node.op_type, tuple(a.SerializeToString() for a in node.attribute))
        for node in proto.graph.node
    )
    constants = sorted((tuple(t.dims), t.data_type, t.raw_data) for t in proto.graph.initializer)
    return ops, constants


def _onnx_settings(model, folder):
    import onnx
    import tf2onnx

    from keras_cnn_ext.export import to_onnx

    spec, function = _function(model)
    path = os.path.join(folder, "ours.onnx")
    return {
        "tf2onnx.convert.from_keras": lambda: tf2onnx.convert.from_keras(
            model, input_signature=spec, opset=17
        )[0],
        "tf2onnx.convert.from_function": lambda: tf2onnx.convert.from_function(
            function, input_signature=spec, opset=17
        )[0],
        "to_onnx (trace, convert, verify)": lambda: (to_onnx(model, path), onnx.load(path))[1],
    }


def _measure(settings, repeats, same):
    times = {name: [] for name in settings}
    outputs = {}
    for _ in range(repeats):
        for name, convert in settings.items():
            start = time.perf_counter()
            outputs[name] = convert()
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(t), same(outputs, name)) for name, t in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.simplefilter("ignore")

    import keras
    import tensorflow as tf
    import tf2onnx

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for network, build in _networks().items():
            keras.utils.set_random_seed(0)
            model = build()
            tflite = _measure(
                _tflite_settings(model, folder),
                args.repeats,
                lambda out, name: out[name] == out["from_concrete_functions([frozen]) (0.1)"],
            )
            onnx_ = _measure(
                _onnx_settings(model, folder),
                args.repeats,
                lambda out, name: (
                    _onnx_structure(out[name])
                    == _onnx_structure(out["tf2onnx.convert.from_function"])
                ),
            )
            for fmt, results in (("TFLite", tflite), ("ONNX", onnx_)):
                base = next(iter(results.values()))[0]
                for name, (seconds, same) in results.items():
                    rows.append(
                        f"| {network} | {fmt} | {name} | {seconds:.1f} s | {base / seconds:.2f}x "
                        f"| {'yes' if same else 'no'} |"
                    )
            del model
            keras.backend.clear_session()
    lines = [
        "# Conversion time: to_tflite / to_onnx against the converters' entry points",
        "",
        f"{time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, TF {tf.__version__}, Keras {keras.__version__}, "
        f"tf2onnx {tf2onnx.__version__}; median of {args.repeats}, settings taking turns.",
        "",
        "| network | format | path | time | speed vs first row | same file |",
        "|---|---|---|---|---|---|",
        *rows,
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    write_result(text, RESULTS)


if __name__ == "__main__":
    main()
