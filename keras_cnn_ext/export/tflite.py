"""Keras 3 model -> TFLite file (builtin ops only by default), verified in the LiteRT interpreter."""

from __future__ import annotations

import collections
import contextlib
import io
import re
import warnings

import numpy as np
import tensorflow as tf

from keras_cnn_ext.export import _common
from keras_cnn_ext.export.report import (
    ExportReport,
    UnsupportedOpsError,
    VerificationError,
    compare,
    scaled_tolerance,
)

QUANTIZATION_MODES = (None, "dynamic", "float16", "int8")
ON_MISMATCH = ("raise", "warn")

# Default accepted max abs difference against Keras, relative to max(1, max |Keras output|).
# Post-training modes compare with the float model, so they carry the quantization error itself.
DEFAULT_TOLERANCE = {None: 1e-4, "float16": 1e-2, "dynamic": 1e-1, "int8": 1e-1}

# A QAT file's default acceptance. Its int8 kernels round where the fake-quant model rounds, but
# integer requantization (fixed-point multipliers), LOGISTIC/SOFTMAX lookup tables and ties can
# put a tensor one step off the fake-quant value; inside a deep net (ResNet-20's nine SE gates)
# such one-step flips propagate and add up at the outputs. So a file passes when every output is
# within QAT_TOLERANCE_STEPS steps of the output grid (see `_output_steps` for a fixed-range
# softmax/logistic output) and at least QAT_MIN_TOP1_AGREEMENT of the samples keep their
# top-1 class. A wrong file (a wrong scale, zero point or weight) misses by far more.
QAT_TOLERANCE_STEPS = 4
QAT_MIN_TOP1_AGREEMENT = 0.9

# Int8 kernels with a fixed output grid, and the largest change of their output per unit change
# of their input (the softmax Jacobian's infinity norm is max 2 p (1 - p) = 1/2; the logistic's
# slope is at most 1/4, tanh's 1).
_FIXED_RANGE_SLOPE = {"SOFTMAX": 0.5, "LOGISTIC": 0.25, "TANH": 1.0}

_FLEX_LOC = re.compile(r'fused\["(\w+):", "([^"@]+)@')
_SELECT_LINE = re.compile(r"TF Select ops: ([^\n]+)")
_NEITHER = re.compile(r"'tf\.(\w+)' op is neither a custom op nor a flex op")


def to_tflite(
    model,
    path,
    quantization=None,
    representative_data=None,
    int8_io=False,
    verify=True,
    allow_select_ops=False,
    *,
    sample_data=None,
    input_range=None,
    num_samples=16,
    num_calibration_samples=100,
    tolerance=None,
    on_mismatch="raise",
    input_signature=None,
):
    """Converts a Keras 3 model to a TFLite file, runs the file and compares it with Keras.

    The model's inference call is traced, frozen, and converted with
    `tf.lite.TFLiteConverter.from_concrete_functions`, restricted to TFLite's builtin ops unless
    `allow_select_ops=True`: where the model would need a Select TF ("Flex") op, conversion fails
    with `UnsupportedOpsError` naming the op and the Keras layer it comes from, instead of writing a
    file that converts "fine" and then fails in an interpreter without the Flex delegate (what
    Keras' `model.export(format="litert")`, which always enables Select TF ops, does with a
    `mixed_float16` model: `FlexConv2D`). The batch dimension stays dynamic.

    A mixed-precision (`mixed_float16`/`mixed_bfloat16`) model is rebuilt in float32 with the same
    weights and exported from that (as float16 weights with `quantization="float16"`).

    A quantization-aware model (its inference graph holds `FakeQuantWithMinMaxVars` ops, e.g. from
    `keras_cnn_ext.quantization.quantize_model`) becomes an int8 file from its own trained ranges,
    with no representative data: `quantization` must then be `None` or `"int8"`, and `int8_io=True`
    makes the file's input and output int8 too.

    The file is written atomically: the bytes go to a temporary file beside `path`, which is run
    and compared there and only then renamed over `path`. A failed conversion or verification
    leaves no partial file and never touches an existing file at `path`.

    Args:
        model: a Functional or Sequential Keras 3 model (a subclassed one with `input_signature`).
        path: the `.tflite` file to write; its folder must exist.
        quantization: `None` (float32), `"dynamic"` (int8 weights, float activations),
            `"float16"` (float16 weights), or `"int8"` (full-integer post-training quantization,
            calibrated on `representative_data`). An op the converter cannot quantize stays
            float between a DEQUANTIZE and a QUANTIZE: the report's `float_ops` lists it and a
            warning names it and its layer (for a QAT model too).
        representative_data: calibration data for `quantization="int8"`: an array (or list of
            arrays, one per input) with samples on the first axis, a `tf.data.Dataset` of batches
            (`(x, y)` elements use `x`), or a generator (or callable returning an iterable) of
            batches. Shapes must match the model's inputs; floating dtypes are cast to the input's.
        int8_io: int8 input and output tensors (`quantization="int8"` or a QAT model only).
        verify: run the file in `ai_edge_litert`'s interpreter on sample inputs and compare with
            Keras. With `False` the report still lists ops, int8 tensors and file size.
        allow_select_ops: also allow Select TF ops. A file that then holds Flex ops needs an
            interpreter built with the Flex delegate; neither `ai_edge_litert`'s nor TensorFlow's
            Python interpreter has it, so such a file is written unverified, with a warning and a
            note in the report (`verified=False`).
        sample_data: verification inputs, in the same forms as `representative_data`. Default:
            the calibration samples for `"int8"`, else `num_samples` uniform random inputs in
            `input_range`.
        input_range: `(low, high)` of the random verification inputs. Default: a QAT file's own
            input quantization range, else `(0, 1)`.
        num_samples: how many verification samples to compare.
        num_calibration_samples: how many samples of `representative_data` to calibrate on.
        tolerance: the accepted max abs difference against Keras. Default for a QAT model:
            `QAT_TOLERANCE_STEPS` (4) output quantization steps, and the file must also keep
            the top-1 class of at least `QAT_MIN_TOP1_AGREEMENT` (90%) of the samples: its int8
            kernels reproduce the fake-quant model up to one-step rounding differences
            (integer requantization, lookup tables), which add up over a deep net. For an
            output read from an int8 softmax (logistic, tanh) the step is that of its input
            times the op's largest slope (1/2, 1/4, 1) when that is larger than its own fixed
            1/256 grid: one step at a softmax's input moves its output by up to half a step
            there. Otherwise `DEFAULT_TOLERANCE[quantization] * max(1, max |Keras output|)`;
            post-training quantized files are compared with the float model.
        on_mismatch: `"raise"` (default): a difference beyond `tolerance` raises
            `VerificationError` and writes nothing; `"warn"`: warns, writes the file, and returns
            the report with `passed=False`.
        input_signature: `tf.TensorSpec`(s) of the inputs, for a model without a Keras graph.

    Returns:
        An `ExportReport`.

    Raises:
        UnsupportedOpsError: the model needs ops outside TFLite's builtins; the message names
            each op and its layer.
        VerificationError: the file's outputs differ from Keras' beyond `tolerance`.
        ValueError, TypeError: bad arguments, e.g. representative data that does not match the
            model's input spec, or a missing output folder.

    Example:

    >>> import os, tempfile
    >>> import keras
    >>> from keras_cnn_ext.export import to_tflite
    >>> model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3),
    ...                           keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    >>> report = to_tflite(model, os.path.join(tempfile.mkdtemp(), "model.tflite"))
    >>> report.passed, report.inputs[0]["shape"]
    (True, [-1, 8, 8, 3])
    """
    _common.check_choice(quantization, QUANTIZATION_MODES, "quantization")
    _common.check_choice(on_mismatch, ON_MISMATCH, "on_mismatch")
    for flag, name in (
        (int8_io, "int8_io"),
        (verify, "verify"),
        (allow_select_ops, "allow_select_ops"),
    ):
        if not isinstance(flag, bool):
            raise TypeError(f"`{name}` must be a bool. Received: {flag!r}")
    num_samples = _common.check_positive_int(num_samples, "num_samples")
    num_calibration_samples = _common.check_positive_int(
        num_calibration_samples, "num_calibration_samples"
    )
    if input_range is not None:
        input_range = _common.check_range(input_range)
    path = _common.check_output_path(path)
    _common.require("ai_edge_litert")

    specs = _common.input_specs(model, input_signature)
    notes = []
    exported = _common.float32_model(model)
    if exported is not model:
        notes.append(
            "reduced-precision model rebuilt in float32 (same weights) for export; outputs are "
            "compared with that float32 model"
        )
    concrete = _common.inference_function(exported, specs).get_concrete_function()
    nodes = _common.graph_op_types(concrete)
    mode = _resolve_mode(quantization, _common.is_qat_graph(nodes), representative_data, int8_io)

    calibration = None
    if mode == "int8":
        calibration = list(
            _common.iter_batches(
                representative_data, specs, "representative_data", num_calibration_samples
            )
        )
        if not calibration:
            raise ValueError("`representative_data` gave no samples.")

    converter = _make_converter(concrete)
    _configure(converter, mode, calibration, int8_io, allow_select_ops)
    flatbuffer = _convert(converter, exported, nodes)
    info = inspect_tflite(flatbuffer)
    report = ExportReport(
        format="tflite",
        path=path,
        file_size=len(flatbuffer),
        quantization=mode,
        runtime=_runtime_name(info["ops"]),
        ops=info["ops"],
        int8_tensors=info["int8_tensors"],
        inputs=info["inputs"],
        outputs=info["outputs"],
        notes=notes,
    )
    report.float_ops = dict(collections.Counter(op for op, _ in info["float_ops"]))
    if mode in ("int8", "qat") and info["float_ops"]:
        names = _common.layer_names(exported)
        where = ", ".join(
            dict.fromkeys(
                _where(op, _common.layer_of_op(tensor, names)) for op, tensor in info["float_ops"]
            )
        )
        report.notes.append(f"ops left in float: {where}")
        warnings.warn(
            f"The int8 TFLite file keeps these ops in float (no int8 kernel or no quantization "
            f"range for them): {where}.",
            stacklevel=2,
        )
    flex = _uses_flex(info["ops"])
    if flex:
        report.notes.append(
            "needs Select TF ops (Flex): run it with an interpreter built with the Flex delegate"
        )
        if verify:
            # Neither ai_edge_litert's interpreter nor TensorFlow's Python one links Flex.
            report.notes.append("not verified: no interpreter here runs Flex ops")
            warnings.warn(
                f"The TFLite file {path!r} holds Select TF ops "
                f"({', '.join(op for op in info['ops'] if op.startswith('Flex'))}) and was "
                "written without verification: no interpreter available here runs them.",
                stacklevel=2,
            )

    with _common.atomic_file(path, flatbuffer) as tmp:
        if verify and not flex:
            samples = _verification_samples(
                report, specs, mode, sample_data, calibration, input_range, num_samples, info
            )
            expected = _common.flat_outputs(_common.call_on(exported, samples))
            actual = run_tflite(tmp, samples)
            min_top1 = None
            if tolerance is None:
                tolerance = _default_tolerance(mode, expected, info)
                min_top1 = QAT_MIN_TOP1_AGREEMENT if mode == "qat" else None
            compare(report, actual, expected, tolerance, min_top1)
            _handle_mismatch(report, on_mismatch)
    return report


def _resolve_mode(quantization, qat, representative_data, int8_io):
    if qat:
        if quantization not in (None, "int8"):
            raise ValueError(
                "The model is quantization-aware (its graph holds FakeQuant ops): it exports as "
                f"int8 from its own ranges, so `quantization` must be None or 'int8'. Received: "
                f"{quantization!r}"
            )
        if representative_data is not None:
            raise ValueError(
                "`representative_data` is not used for a quantization-aware model: the converter "
                "takes its trained FakeQuant ranges. Pass representative_data=None."
            )
        return "qat"
    if int8_io and quantization != "int8":
        raise ValueError(
            "`int8_io=True` needs an int8 file: quantization='int8' with representative_data, or "
            f"a quantization-aware model. Received: quantization={quantization!r}"
        )
    if quantization == "int8" and representative_data is None:
        raise ValueError(
            "quantization='int8' (full-integer post-training quantization) needs "
            "`representative_data` to calibrate activation ranges: a few hundred typical inputs "
            "as an array, dataset or generator. Or use a quantization-aware model."
        )
    if quantization != "int8" and representative_data is not None:
        raise ValueError(
            "`representative_data` is only used with quantization='int8'. Received: "
            f"quantization={quantization!r}"
        )
    return quantization


def _make_converter(concrete):
    # The traced inference function, without a trackable object: the converter then freezes it
    # (variables to constants) itself, once. With the Keras model as `trackable_obj` the
    # converter goes through a SavedModel instead: `from_keras_model` and
    # `from_concrete_functions([f], model)` took 4-7x longer for the same file here, and with an
    # unfrozen `f` the file's outputs were garbage (1e33, NaN). Freezing `f` before handing it
    # over gives the same bytes, but the converter freezes the frozen function again: for 20
    # small CNNs in one model that second freeze took 6 of the conversion's 19 s. TF logs that
    # this graph path is deprecated; every file is verified against Keras whichever path made it.
    return tf.lite.TFLiteConverter.from_concrete_functions([concrete])


def _configure(converter, mode, calibration, int8_io, allow_select_ops):
    ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if mode == "int8" else tf.lite.OpsSet.TFLITE_BUILTINS
    ]
    if allow_select_ops:
        ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
    converter.target_spec.supported_ops = ops
    if mode is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if mode == "int8":
        converter.representative_dataset = lambda: iter(calibration)
    if int8_io:
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8


def _convert(converter, model, nodes):
    from tensorflow.lite.python.convert_phase import ConverterError

    try:
        # Keras' SavedModel export inside the converter prints every endpoint to stdout.
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            return converter.convert()
    except ConverterError as error:
        unsupported = _unsupported_ops(str(error), model, nodes)
        if not unsupported:
            raise
        where = "; ".join(_where(op, layer) for op, layer in unsupported)
        raise UnsupportedOpsError(
            f"The model {model.name!r} needs TF ops that TFLite has no builtin kernel for: "
            f"{where}. Replace those layers, or pass `allow_select_ops=True` to embed Select TF "
            "ops (the file then needs an interpreter with the Flex delegate).",
            unsupported,
        ) from error


def _where(op, layer):
    return f"{op} (layer {layer!r})" if layer else f"{op} (no Keras layer found)"


def _unsupported_ops(message, model, nodes):
    """`(op_type, layer_name)` for each op the converter could not lower, from its error text."""
    op_types = []
    for line in _SELECT_LINE.findall(message):
        op_types += [t.strip() for t in line.split(",") if t.strip()]
    op_types += _NEITHER.findall(message)
    op_types = list(dict.fromkeys(op_types))
    if not op_types:
        return []
    names = _common.layer_names(model)
    found = []
    for op_type, op_path in _FLEX_LOC.findall(message):
        if op_type in op_types:
            found.append((op_type, _common.layer_of_op(op_path, names)))
    for op_type, op_name in nodes:  # ops the message did not locate: the traced graph names them
        if op_type in op_types and not any(t == op_type for t, _ in found):
            found.append((op_type, _common.layer_of_op(op_name, names)))
    for op_type in op_types:
        if not any(t == op_type for t, _ in found):
            found.append((op_type, None))
    return list(dict.fromkeys(found))


# --- reading a file ------------------------------------------------------------------------------


def _read(flatbuffer_or_path):
    if isinstance(flatbuffer_or_path, (bytes, bytearray)):
        return bytes(flatbuffer_or_path)
    with open(flatbuffer_or_path, "rb") as f:
        return f.read()


def _scan(flatbuffer):
    """Op counts (all subgraphs) and int8 tensor names, read from the flatbuffer itself."""
    from ai_edge_litert import schema_py_generated as schema

    builtin_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    fb = schema.Model.GetRootAsModel(flatbuffer, 0)
    codes = []
    for i in range(fb.OperatorCodesLength()):
        code = fb.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            codes.append(code.CustomCode().decode())
        else:
            codes.append(builtin_names.get(builtin, str(builtin)))
    ops = collections.Counter()
    int8_tensors = []
    for s in range(fb.SubgraphsLength()):
        subgraph = fb.Subgraphs(s)
        for i in range(subgraph.OperatorsLength()):
            ops[codes[subgraph.Operators(i).OpcodeIndex()]] += 1
        for i in range(subgraph.TensorsLength()):
            tensor = subgraph.Tensors(i)
            if tensor.Type() == schema.TensorType.INT8:
                int8_tensors.append(tensor.Name().decode())
    return dict(sorted(ops.items())), int8_tensors


def inspect_tflite(flatbuffer_or_path):
    """Ops (type -> count, all subgraphs), int8 tensor names and I/O details of a TFLite file."""
    flatbuffer = _read(flatbuffer_or_path)
    ops, int8_tensors = _scan(flatbuffer)
    interpreter = _interpreter(flatbuffer)
    return {
        "ops": ops,
        "int8_tensors": int8_tensors,
        "float_ops": _float_ops(interpreter),
        "inputs": [_io_detail(d) for d in interpreter.get_input_details()],
        "outputs": [_io_detail(d) for d in interpreter.get_output_details()],
        "output_steps": _output_steps(interpreter),
        "input_quantization": _input_quantization(interpreter),
    }


def _float_ops(interpreter):
    """`(op, output tensor name)` of the ops (main subgraph) that compute on float tensors.

    QUANTIZE and DEQUANTIZE are left out: they are the float/int8 boundary, not compute.
    """
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    found = []
    for op in interpreter._get_ops_details():  # the public API has no per-op view
        if op["op_name"] in ("QUANTIZE", "DEQUANTIZE") or op["op_name"].startswith("Flex"):
            continue
        indices = [i for i in [*op["inputs"], *op["outputs"]] if i >= 0 and i in tensors]
        if any(np.issubdtype(np.dtype(tensors[i]["dtype"]), np.floating) for i in indices):
            name = tensors[op["outputs"][0]]["name"] if len(op["outputs"]) else ""
            found.append((op["op_name"], name))
    return found


def _io_detail(detail):
    quant = detail.get("quantization_parameters", {})
    scales = np.asarray(quant.get("scales", []))
    out = {
        "name": detail["name"],
        "shape": [int(d) for d in detail.get("shape_signature", detail["shape"])],
        "dtype": np.dtype(detail["dtype"]).name,
        "scale": None,
        "zero_point": None,
    }
    if scales.size:
        out["scale"] = scales.tolist() if scales.size > 1 else float(scales[0])
        zps = np.asarray(quant.get("zero_points", []))
        out["zero_point"] = zps.tolist() if zps.size > 1 else int(zps[0])
    return out


def _input_quantization(interpreter):
    """Per input, `(scale, zero_point)` of its int8 grid (its own or its QUANTIZE's), or `None`."""
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    consumers = {}
    for op in interpreter._get_ops_details():
        for i in op["inputs"]:
            consumers.setdefault(i, op)
    found = []
    for detail in interpreter.get_input_details():
        index = detail["index"]
        op = consumers.get(index)
        if not len(tensors[index]["quantization_parameters"]["scales"]) and op is not None:
            if op["op_name"] == "QUANTIZE":
                index = op["outputs"][0]
        quant = tensors[index]["quantization_parameters"]
        if len(quant["scales"]) == 1:
            found.append((float(quant["scales"][0]), int(quant["zero_points"][0])))
        else:
            found.append(None)
    return found


def _output_steps(interpreter):
    """Per output, the quantization step of the int8 tensor it is read from (or `None`).

    For an int8 SOFTMAX/LOGISTIC/TANH output (a fixed grid, e.g. 1/256) the step is the larger of
    that grid and the op's input step times its largest slope: a one-step difference at the
    input then moves the output by that much.
    """
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    producers = {}
    for op in interpreter._get_ops_details():  # the public API has no graph walk
        for out in op["outputs"]:
            producers[out] = op
    steps = []
    for detail in interpreter.get_output_details():
        index = detail["index"]
        op = producers.get(index)
        if op is not None and op["op_name"] == "DEQUANTIZE":
            index = op["inputs"][0]
        scales = tensors[index]["quantization_parameters"]["scales"]
        if not len(scales):
            steps.append(None)
            continue
        step = float(np.max(scales))
        op = producers.get(index)
        if op is not None and op["op_name"] in _FIXED_RANGE_SLOPE:
            in_scales = tensors[op["inputs"][0]]["quantization_parameters"]["scales"]
            if len(in_scales):
                step = max(step, _FIXED_RANGE_SLOPE[op["op_name"]] * float(np.max(in_scales)))
        steps.append(step)
    return steps


def _uses_flex(ops):
    return any(op.startswith("Flex") for op in ops)


def _runtime_name(ops):
    if _uses_flex(ops):
        return "none (the file needs the Flex delegate)"
    from importlib.metadata import version

    return f"ai_edge_litert.interpreter.Interpreter {version('ai-edge-litert')}"


def _interpreter(flatbuffer, num_threads=None):
    """The LiteRT interpreter (`ai_edge_litert`; `tf.lite.Interpreter` is deprecated)."""
    kwargs = {"model_content": flatbuffer}
    if num_threads:
        kwargs["num_threads"] = num_threads
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(**kwargs)


def run_tflite(flatbuffer_or_path, inputs, num_threads=None):
    """Runs a TFLite file (bytes or a path) on a list of input arrays; returns the output arrays.

    The batch dimension is resized to the inputs'. int8 inputs and outputs are quantized and
    dequantized with the file's own scales and zero points, so callers always see floats.
    """
    if isinstance(inputs, np.ndarray):
        inputs = [inputs]
    flatbuffer = _read(flatbuffer_or_path)
    interpreter = _interpreter(flatbuffer, num_threads)
    details = interpreter.get_input_details()
    if len(details) != len(inputs):
        raise ValueError(f"The file has {len(details)} inputs; received {len(inputs)} arrays.")
    for detail, x in zip(details, inputs, strict=True):
        if tuple(detail["shape"]) != np.shape(x):
            interpreter.resize_tensor_input(detail["index"], list(np.shape(x)))
    interpreter.allocate_tensors()
    for detail, x in zip(details, inputs, strict=True):
        interpreter.set_tensor(detail["index"], _quantize(np.asarray(x), detail))
    interpreter.invoke()
    return [
        _dequantize(interpreter.get_tensor(d["index"]), d) for d in interpreter.get_output_details()
    ]


def _quant_params(detail):
    quant = detail.get("quantization_parameters", {})
    scales = np.asarray(quant.get("scales", []), dtype=np.float64)
    zero_points = np.asarray(quant.get("zero_points", []), dtype=np.float64)
    return scales, zero_points


def _quantize(x, detail):
    dtype = np.dtype(detail["dtype"])
    scales, zero_points = _quant_params(detail)
    if np.issubdtype(dtype, np.integer) and scales.size and np.issubdtype(x.dtype, np.floating):
        info = np.iinfo(dtype)
        q = np.round(x / scales + zero_points)
        return np.clip(q, info.min, info.max).astype(dtype)
    return x.astype(dtype)


def _dequantize(y, detail):
    scales, zero_points = _quant_params(detail)
    if np.issubdtype(y.dtype, np.integer) and scales.size:
        return ((y.astype(np.float64) - zero_points) * scales).astype(np.float32)
    return y


# --- verification --------------------------------------------------------------------------------


def _file_input_range(info):
    """The real-valued range the first input's int8 grid covers (its own, or its QUANTIZE's)."""
    params = info["input_quantization"][0] if info["input_quantization"] else None
    if params is None:
        return None
    scale, zero_point = params
    return ((-128 - zero_point) * scale, (127 - zero_point) * scale)


def _verification_samples(
    report, specs, mode, sample_data, calibration, input_range, num_samples, info
):
    if sample_data is not None:
        report.samples = "sample_data"
        return _common.collect_samples(sample_data, specs, "sample_data", num_samples)
    if calibration is not None:
        report.samples = "the first representative_data samples"
        batches = calibration[:num_samples]
        return [np.concatenate(parts) for parts in zip(*batches, strict=True)]
    if input_range is None:
        input_range = (_file_input_range(info) if mode == "qat" else None) or (0.0, 1.0)
    low, high = input_range
    report.samples = f"uniform random in [{low:.6g}, {high:.6g})"
    return _common.random_samples(specs, num_samples, input_range)


def _default_tolerance(mode, expected, info):
    if mode == "qat":
        steps = [s for s in info["output_steps"] if s is not None]
        if steps:
            # See QAT_TOLERANCE_STEPS; 1e-6 for the float rounding of a dequantization.
            return QAT_TOLERANCE_STEPS * max(steps) + 1e-6
        return scaled_tolerance(1e-4, expected)
    return scaled_tolerance(DEFAULT_TOLERANCE[mode], expected)


def _handle_mismatch(report, on_mismatch):
    if report.passed:
        return
    message = (
        f"The {report.format} file's outputs differ from the Keras model's by up to "
        f"{report.max_abs_diff:.3g} (tolerance {report.tolerance:.3g}, top-1 agreement "
        f"{report.top1_agreement}) over {report.num_samples} samples."
    )
    if on_mismatch == "raise":
        raise VerificationError(message + " Nothing was written.", report)
    warnings.warn(message + " The file was written anyway (on_mismatch='warn').", stacklevel=3)
