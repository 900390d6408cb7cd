"""Convert a Keras model to TFLite (builtin ops only) and ONNX, run the real runtimes, compare outputs.

These are the verification halves of export: the contract uses them on every layer, and model tests
use them on every builder. The runtimes are the real ones (`ai_edge_litert` and `onnxruntime`);
both come with the package's `export` extra.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def _single_output(outputs):
    if isinstance(outputs, (list, tuple)):
        if len(outputs) != 1:
            raise ValueError(f"Expected a model with one output. Received {len(outputs)} outputs.")
        outputs = outputs[0]
    return np.asarray(outputs)


def _input_spec(model, x):
    shape = [None] + list(np.shape(x)[1:])
    return tf.TensorSpec(shape, tf.as_dtype(np.asarray(x).dtype), name="inputs")


def tflite_builtin_bytes(model):
    """Converts a Keras model to a TFLite flatbuffer with TFLite builtin ops only.

    Select TF ops (Flex) are deliberately not allowed, unlike Keras' own `export(format="litert")`:
    a model that needs them fails to convert here instead of silently shipping TF kernels.

    A model built from `keras.Input`s is traced once in inference mode (batch dimension
    dynamic) and the traced function is converted: `TFLiteConverter.from_keras_model` goes
    through a SavedModel written to disk, 3-5x slower for a one-layer model, with the same
    outputs. A model without Keras inputs (subclassed) goes through `from_keras_model`.
    """
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if inputs:
        specs = [tf.TensorSpec([None, *x.shape[1:]], tf.as_dtype(x.dtype)) for x in inputs]

        @tf.function(input_signature=specs, autograph=False)
        def serve(*args):
            return model(args[0] if len(args) == 1 else list(args), training=False)

        converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()])
    else:
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


def run_tflite(flatbuffer, x):
    """Runs a TFLite flatbuffer on `x` with the LiteRT interpreter, resizing the batch."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer)
    (input_detail,) = interpreter.get_input_details()
    x = np.asarray(x, dtype=input_detail["dtype"])
    if tuple(input_detail["shape"]) != x.shape:
        interpreter.resize_tensor_input(input_detail["index"], list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(input_detail["index"], x)
    interpreter.invoke()
    outputs = [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]
    return _single_output(outputs)


def onnx_model_proto(model, x, opset=17):
    """Converts a Keras model's inference function to ONNX with tf2onnx (batch dimension dynamic)."""
    import tf2onnx

    spec = _input_spec(model, x)
    function = tf.function(lambda inputs: model(inputs, training=False))
    proto, _ = tf2onnx.convert.from_function(function, input_signature=[spec], opset=opset)
    return proto


def run_onnx(proto, x):
    """Runs an ONNX model proto on `x` with onnxruntime's CPU provider."""
    import onnxruntime as ort

    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (input_meta,) = session.get_inputs()
    return _single_output(session.run(None, {input_meta.name: np.asarray(x)}))


def _assert_close(name, actual, expected, atol, rtol):
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    if actual.shape != expected.shape:
        raise AssertionError(
            f"{name} output shape {actual.shape} != Keras output shape {expected.shape}"
        )
    diff = np.max(np.abs(actual - expected)) if actual.size else 0.0
    if not np.allclose(actual, expected, atol=atol, rtol=rtol):
        raise AssertionError(f"{name} output differs from Keras by up to {diff:.3g} (atol={atol})")
    return float(diff)


def assert_tflite_parity(model, x, atol=1e-5, rtol=0.0):
    """Converts `model` to TFLite with builtin ops only, runs it, and checks it matches Keras.

    Returns the largest absolute difference.
    """
    expected = _single_output(model(x, training=False))
    return _assert_close("TFLite", run_tflite(tflite_builtin_bytes(model), x), expected, atol, rtol)


def assert_onnx_parity(model, x, atol=1e-5, rtol=0.0, opset=17):
    """Converts `model` to ONNX with tf2onnx, runs it with onnxruntime, and checks it matches Keras.

    Returns the largest absolute difference.
    """
    expected = _single_output(model(x, training=False))
    return _assert_close(
        "ONNX", run_onnx(onnx_model_proto(model, x, opset), x), expected, atol, rtol
    )
