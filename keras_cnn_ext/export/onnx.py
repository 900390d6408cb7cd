"""Keras 3 model -> ONNX file through `tf2onnx.convert.from_function`, verified in onnxruntime.

`tf2onnx.convert.from_keras` fails on Keras 3 Sequential models (`KeyError 'keras_tensor_N'`,
tensorflow-onnx #2448); tracing the model's inference call as a `tf.function` works for every
Functional and Sequential model, with a dynamic batch dimension.

TF's fake-quant ops become QuantizeLinear/DequantizeLinear (QDQ) pairs here. tf2onnx's own handler
refuses `narrow_range=True` (TFMOT-style symmetric weights) and has none for the per-channel op, so
this module registers its own: constant weights are quantized once into an int8 initializer
followed by a DequantizeLinear (per output channel where TF quantized per channel), activations
get a QuantizeLinear/DequantizeLinear pair. Both use TF's nudged scale and zero point, so
onnxruntime reproduces the fake-quant model.
"""

from __future__ import annotations

import collections
import contextlib
import io
import logging
import os
import re
import traceback
import types
import warnings

import numpy as np

from keras_cnn_ext.export import _common
from keras_cnn_ext.export.report import (
    ExportReport,
    UnsupportedOpsError,
    compare,
    scaled_tolerance,
)
from keras_cnn_ext.export.tflite import ON_MISMATCH, _handle_mismatch, _where

MIN_OPSET = 13  # per-axis QuantizeLinear/DequantizeLinear
_UNSUPPORTED = re.compile(r"Tensorflow op \[([^:\]]+): (\w+)\] is not supported")


def to_onnx(
    model,
    path,
    opset=17,
    verify=True,
    *,
    sample_data=None,
    input_range=None,
    num_samples=16,
    tolerance=None,
    on_mismatch="raise",
    input_signature=None,
):
    """Converts a Keras 3 model to an ONNX file, runs it in onnxruntime and compares it with Keras.

    The model's inference call is traced as a `tf.function` and converted with
    `tf2onnx.convert.from_function`; the batch dimension stays dynamic and the file keeps the
    model's own layout (NHWC inputs for a channels-last model). A mixed-precision model is rebuilt
    in float32 with the same weights first. A quantization-aware model (FakeQuant ops in its
    graph) becomes a QDQ file: int8 weight initializers with DequantizeLinear, and
    QuantizeLinear/DequantizeLinear pairs on the activations, at the model's trained ranges.

    The file is written atomically (a temporary file beside `path`, run and compared there, then
    renamed): a failed conversion or verification never leaves a partial file or touches an
    existing one.

    Args:
        model: a Functional or Sequential Keras 3 model (a subclassed one with `input_signature`).
        path: the `.onnx` file to write; its folder must exist.
        opset: the ONNX opset, at least 13 (per-channel QDQ).
        verify: run the file with onnxruntime's CPU provider and compare with Keras.
        sample_data: verification inputs: an array (or a list of arrays, one per input) with
            samples on the first axis, a `tf.data.Dataset` of batches, or a generator.
            Default: `num_samples` uniform random inputs in `input_range`.
        input_range: `(low, high)` of the random inputs. Default: a QDQ file's input quantization
            range, else `(0, 1)`.
        num_samples: how many samples to compare.
        tolerance: accepted max abs difference. Default `1e-4 * max(1, max |Keras output|)`, and
            one output quantization step (plus that) for a QDQ file.
        on_mismatch: `"raise"` (`VerificationError`, nothing written) or `"warn"` (written,
            `passed=False` in the report).
        input_signature: `tf.TensorSpec`(s) of the inputs, for a model without a Keras graph.

    Returns:
        An `ExportReport` (`quantization` is `None`, or `"qdq"` for a quantization-aware model).

    Raises:
        UnsupportedOpsError: tf2onnx has no ONNX conversion for an op; the message names the op
            and its Keras layer.
        VerificationError: onnxruntime's outputs differ from Keras' beyond `tolerance`.
        ValueError, TypeError: bad arguments, e.g. a missing output folder.

    Example:

    >>> import os, tempfile
    >>> import keras
    >>> from keras_cnn_ext.export import to_onnx
    >>> model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3),
    ...                           keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    >>> report = to_onnx(model, os.path.join(tempfile.mkdtemp(), "model.onnx"))
    >>> report.passed, report.inputs[0]["shape"]
    (True, [None, 8, 8, 3])
    """
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < MIN_OPSET:
        raise ValueError(f"`opset` must be an integer >= {MIN_OPSET}. Received: {opset!r}")
    if not isinstance(verify, bool):
        raise TypeError(f"`verify` must be a bool. Received: {verify!r}")
    _common.check_choice(on_mismatch, ON_MISMATCH, "on_mismatch")
    num_samples = _common.check_positive_int(num_samples, "num_samples")
    if input_range is not None:
        input_range = _common.check_range(input_range)
    path = _common.check_output_path(path)
    _common.require("tf2onnx", "onnx", "onnxruntime")

    specs = _common.input_specs(model, input_signature)
    notes = []
    exported = _common.float32_model(model)
    if exported is not model:
        notes.append(
            "reduced-precision model rebuilt in float32 (same weights) for export; outputs are "
            "compared with that float32 model"
        )
    function = _common.inference_function(exported, specs)
    qat = _common.is_qat_graph(_common.graph_op_types(function.get_concrete_function()))
    proto = _convert(exported, function, specs, opset)
    data = proto.SerializeToString()
    info = inspect_onnx(proto)
    report = ExportReport(
        format="onnx",
        path=path,
        file_size=len(data),
        quantization="qdq" if qat else None,
        runtime=_runtime_name(),
        ops=info["ops"],
        int8_tensors=info["int8_tensors"],
        inputs=info["inputs"],
        outputs=info["outputs"],
        notes=notes,
    )
    with _common.atomic_file(path, data) as tmp:
        if verify:
            if sample_data is not None:
                report.samples = "sample_data"
                samples = _common.collect_samples(sample_data, specs, "sample_data", num_samples)
            else:
                if input_range is None:
                    input_range = info["input_range"] or (0.0, 1.0)
                report.samples = f"uniform random in [{input_range[0]:.6g}, {input_range[1]:.6g})"
                samples = _common.random_samples(specs, num_samples, input_range)
            expected = _common.flat_outputs(_common.call_on(exported, samples))
            actual = run_onnx(tmp, samples)
            if tolerance is None:
                tolerance = scaled_tolerance(1e-4, expected)
                if qat and info["output_step"]:
                    tolerance += 1.001 * info["output_step"]
            compare(report, actual, expected, tolerance)
            _handle_mismatch(report, on_mismatch)
    return report


def _convert(model, function, specs, opset):
    handlers = {
        "FakeQuantWithMinMaxVars": (_fake_quant_handler, []),
        "FakeQuantWithMinMaxArgs": (_fake_quant_handler, []),
        "FakeQuantWithMinMaxVarsPerChannel": (_fake_quant_handler, []),
    }
    log = io.StringIO()
    capture = logging.StreamHandler(log)
    tf2onnx_logger = logging.getLogger("tf2onnx")
    tf2onnx_logger.addHandler(capture)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            _keep_fake_quant_unfolded(),
            _freeze_without_rebuilding(),
        ):
            warnings.simplefilter("ignore")
            proto = _from_function(function, specs, opset, handlers)
    except Exception as error:
        unsupported = _unsupported_ops(f"{error}\n{log.getvalue()}", model)
        if unsupported:
            raise _unsupported_error(model, unsupported) from error
        raise
    finally:
        tf2onnx_logger.removeHandler(capture)
    # from_function converts with continue_on_error=True: an op without an ONNX conversion stays
    # in the graph under its TF name, and only onnxruntime would notice.
    unsupported = _unsupported_ops(log.getvalue(), model)
    unsupported += _unknown_onnx_ops(proto, model)
    if unsupported:
        raise _unsupported_error(model, list(dict.fromkeys(unsupported)))
    return _int8_weights(proto)


def _from_function(function, specs, opset, handlers):
    """`tf2onnx.convert.from_function`'s model, without its defensive copies of the graph.

    tf2onnx deep-copies the whole ONNX graph before every pass of its optimizer, so that a pass
    that raises can be skipped (its `TF2ONNX_CATCH_ERRORS`, on by default): for 20 small CNNs in
    one model the copies took 23 of the conversion's 97 s. Without them the passes and their
    result are the same. Should a pass raise, the conversion runs again with the copies, so the
    file is what tf2onnx's default gives. Where the user set `TF2ONNX_CATCH_ERRORS`, tf2onnx's
    own reading of it applies (tf2onnx 1.17 compares the variable's name, not its value, with
    "TRUE": any value turns the copies off).
    """
    import tf2onnx

    def convert():
        proto, _ = tf2onnx.convert.from_function(
            function, input_signature=specs, opset=opset, custom_op_handlers=handlers
        )
        return proto

    name = tf2onnx.constants.ENV_TF2ONNX_CATCH_ERRORS
    if name in os.environ:
        return convert()
    os.environ[name] = "FALSE"
    try:
        return convert()
    except Exception as error:
        files = [frame.filename for frame in traceback.extract_tb(error.__traceback__)]
        if not any(f"tf2onnx{os.sep}optimizer{os.sep}" in f for f in files):
            raise
    finally:
        os.environ.pop(name, None)
    return convert()


@contextlib.contextmanager
def _freeze_without_rebuilding():
    """tf2onnx's freeze of the traced function, without rebuilding a function it only reads.

    `tf2onnx.tf_loader.from_function` freezes with TF's `convert_variables_to_constants_v2`,
    which builds a new ConcreteFunction from the frozen GraphDef (copying every op in Python),
    and then reads only `.graph.as_graph_def(add_shapes=True)` back: for 20 small CNNs in one
    model the rebuild took 10 of the conversion's 61 s. This gives tf2onnx the same frozen
    GraphDef imported into a plain graph by TF's C++ importer (TF's own steps before the rebuild;
    tf2onnx's large-model path calls the same two). Where TF lacks them, nothing is changed.
    """
    import tensorflow as tf
    import tf2onnx.tf_loader as loader

    try:
        from tensorflow.python.framework.convert_to_constants import (
            _FunctionConverterDataInEager,
            _replace_variables_by_constants,
        )
    except ImportError:
        yield
        return
    original = loader.convert_variables_to_constants_v2

    def freeze(func, lower_control_flow=True, aggressive_inlining=False):
        data = _FunctionConverterDataInEager(
            func=func,
            lower_control_flow=lower_control_flow,
            aggressive_inlining=aggressive_inlining,
        )
        graph_def, _ = _replace_variables_by_constants(converter_data=data)
        graph = tf.Graph()
        with graph.as_default():
            tf.graph_util.import_graph_def(graph_def, name="")
        return types.SimpleNamespace(graph=graph)

    loader.convert_variables_to_constants_v2 = freeze
    try:
        yield
    finally:
        loader.convert_variables_to_constants_v2 = original


@contextlib.contextmanager
def _keep_fake_quant_unfolded():
    """Stops tf2onnx from folding fake-quant ops on constant weights into float constants.

    Before the op handlers run, tf2onnx evaluates in TF every op whose inputs are all constants
    (`compute_const_folding_using_tf`); a weight FakeQuant would become its float result and the
    file would lose its int8 weights. This drops the fake-quant outputs (and everything computed
    from them) from the folded values for the duration of one conversion, so the QDQ handler sees
    the op.
    """
    import tf2onnx.tfonnx as tfonnx

    original = tfonnx.compute_const_folding_using_tf

    def folding(graph, const_node_values, graph_outputs):
        values, dtypes = original(graph, const_node_values, graph_outputs)
        tainted = set()
        for op in graph.get_operations():  # topological order
            if op.type in _common.FAKE_QUANT_OPS or any(t.name in tainted for t in op.inputs):
                tainted.update(t.name for t in op.outputs)
        for name in tainted:
            values.pop(name, None)
        return values, dtypes

    tfonnx.compute_const_folding_using_tf = folding
    try:
        yield
    finally:
        tfonnx.compute_const_folding_using_tf = original


def _unknown_onnx_ops(proto, model):
    import onnx

    names = _common.layer_names(model)
    return [
        (node.op_type, _common.layer_of_op(node.name, names))
        for node in proto.graph.node
        if node.domain in ("", "ai.onnx") and not onnx.defs.has(node.op_type)
    ]


def _unsupported_ops(text, model):
    names = _common.layer_names(model)
    found = [(op, _common.layer_of_op(name, names)) for name, op in _UNSUPPORTED.findall(text)]
    return list(dict.fromkeys(found))


def _unsupported_error(model, unsupported):
    where = "; ".join(_where(op, layer) for op, layer in unsupported)
    return UnsupportedOpsError(
        f"The model {model.name!r} uses TF ops that tf2onnx cannot convert to ONNX: {where}.",
        unsupported,
    )


# --- fake quant -> QDQ ---------------------------------------------------------------------------


def nudged_quantization(min_value, max_value, num_bits=8, narrow_range=False):
    """TF's fake-quant nudging: `(scale, zero_point, quant_min, quant_max)` on the unsigned grid.

    As in TF's `FakeQuantWithMinMaxVars` kernel: `scale = (max - min) / (quant_max - quant_min)`,
    the zero point `quant_min - min / scale` rounded into `[quant_min, quant_max]`, so that 0.0 is
    exactly representable. `quant_min` is 1 with `narrow_range`, else 0; `quant_max = 2**bits - 1`.
    """
    min_value = np.asarray(min_value, dtype=np.float64)
    max_value = np.asarray(max_value, dtype=np.float64)
    quant_min = 1 if narrow_range else 0
    quant_max = 2**num_bits - 1
    scale = (max_value - min_value) / (quant_max - quant_min)
    scale = np.where(scale > 0, scale, 1.0)  # a collapsed range: TF outputs 0 everywhere
    zero_point = np.clip(np.floor(quant_min - min_value / scale + 0.5), quant_min, quant_max)
    return scale, zero_point, quant_min, quant_max


def _fake_quant_handler(ctx, node, name, args):
    from onnx import TensorProto
    from tf2onnx import utils

    if node.type == "FakeQuantWithMinMaxArgs":
        amin, amax = node.get_attr("min").f, node.get_attr("max").f
    else:
        for i, what in ((1, "min"), (2, "max")):
            utils.make_sure(
                node.inputs[i].is_const(),
                "%s node %s: its %s is not a constant after freezing; QDQ export needs fixed "
                "ranges (freeze the quantizer ranges before export)",
                node.type,
                node.name,
                what,
            )
        amin = node.inputs[1].get_tensor_value(as_list=False)
        amax = node.inputs[2].get_tensor_value(as_list=False)
    num_bits = node.get_attr("num_bits").i
    narrow = bool(node.get_attr("narrow_range").i)
    utils.make_sure(num_bits == 8, "%s node %s: only 8-bit QDQ is exported", node.type, node.name)
    scale, zero_point, _, _ = nudged_quantization(amin, amax, num_bits, narrow)
    per_channel = np.ndim(scale) == 1
    # Signed int8 (as TFLite): the unsigned grid shifted by 128.
    zp_int8 = (zero_point - 128).astype(np.int8)
    dtype = ctx.get_dtype(node.input[0])
    shape = ctx.get_shape(node.input[0])
    axis_attr = {}
    if per_channel:
        rank = len(shape) if shape is not None else None
        axis_attr = {"axis": (rank - 1) if rank else -1}
    scale_const = ctx.make_const(
        utils.make_name(f"{node.name}_scale"), np.asarray(scale, dtype=np.float32)
    )
    zp_const = ctx.make_const(utils.make_name(f"{node.name}_zero_point"), zp_int8)
    # Q then DQ, also on constant weights: tf2onnx's Conv handler recognises that pattern (it
    # transposes the float weights and moves the quantization axis); `_int8_weights` then stores
    # the quantized weights as int8 initializers.
    quantize = ctx.make_node(
        "QuantizeLinear",
        [node.input[0], scale_const.output[0], zp_const.output[0]],
        op_name_scope=node.name,
        attr=axis_attr,
        shapes=[shape],
        dtypes=[TensorProto.INT8],
    )
    quantized = quantize.output[0]
    outputs = node.output
    ctx.remove_node(node.name)
    ctx.make_node(
        "DequantizeLinear",
        [quantized, scale_const.output[0], zp_const.output[0]],
        outputs=outputs,
        op_name_scope=node.name,
        attr=axis_attr,
        shapes=[shape],
        dtypes=[dtype],
    )


def _int8_weights(proto):
    """Replaces each QuantizeLinear of a constant by its int8 result (an int8 initializer).

    That is the usual QDQ layout (onnxruntime's quantizer writes the same): weights stored as int8,
    DequantizeLinear before the Conv/MatMul. Rounding is TF's (`floor(x / scale + 0.5)`), so the
    stored integers are the fake-quant model's.
    """
    from onnx import numpy_helper

    graph = proto.graph
    initializers = {t.name: t for t in graph.initializer}
    consumers = collections.Counter(name for node in graph.node for name in node.input)
    kept = []
    for node in graph.node:
        inputs = list(node.input)
        if (
            node.op_type != "QuantizeLinear"
            or not all(name in initializers for name in inputs[:3])
            or consumers[inputs[0]] != 1
        ):
            kept.append(node)
            continue
        weights = numpy_helper.to_array(initializers[inputs[0]]).astype(np.float64)
        scale = numpy_helper.to_array(initializers[inputs[1]]).astype(np.float64)
        zero_point = numpy_helper.to_array(initializers[inputs[2]]).astype(np.float64)
        if scale.ndim == 1:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1) % weights.ndim
            shape = [1] * weights.ndim
            shape[axis] = -1
            scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
        q = np.clip(np.floor(weights / scale + 0.5) + zero_point, -128, 127).astype(np.int8)
        graph.initializer.remove(initializers[inputs[0]])
        graph.initializer.append(numpy_helper.from_array(q, node.output[0]))
    del graph.node[:]
    graph.node.extend(kept)
    return proto


# --- reading and running a file ------------------------------------------------------------------


def _runtime_name():
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__} (CPUExecutionProvider)"


def _dims(value_info):
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else None for d in dims]


def inspect_onnx(proto):
    """Op counts, int8 tensors (initializers and QuantizeLinear outputs) and I/O of an ONNX model."""
    from onnx import TensorProto, helper, numpy_helper

    ops = collections.Counter()
    int8 = {TensorProto.INT8, TensorProto.UINT8}
    zero_points = {
        node.input[2]
        for node in proto.graph.node
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2
    }
    int8_tensors = [
        t.name for t in proto.graph.initializer if t.data_type in int8 and t.name not in zero_points
    ]
    initializers = {t.name: t for t in proto.graph.initializer}
    first_quantize, last_dequantize = None, None
    for node in proto.graph.node:
        ops[node.op_type] += 1
        if node.op_type == "QuantizeLinear":
            int8_tensors.extend(node.output)
            first_quantize = first_quantize or node
        if node.op_type == "DequantizeLinear":
            last_dequantize = node
    for node in proto.graph.node:  # nested graphs (If/Loop bodies)
        for attr in node.attribute:
            if attr.type == helper.AttributeProto.GRAPH:
                ops.update(n.op_type for n in attr.g.node)

    def params(node):
        if node is None or any(name not in initializers for name in node.input[1:3]):
            return None
        scale = numpy_helper.to_array(initializers[node.input[1]]).astype(np.float64)
        zero_point = numpy_helper.to_array(initializers[node.input[2]]).astype(np.float64)
        return scale, zero_point

    input_range = None
    first = params(first_quantize)
    if first is not None and np.size(first[0]) == 1:
        scale, zero_point = float(first[0]), float(first[1])
        input_range = ((-128 - zero_point) * scale, (127 - zero_point) * scale)
    last = params(last_dequantize)
    output_step = float(np.max(last[0])) if last is not None else None

    def io(value_info):
        elem = value_info.type.tensor_type.elem_type
        return {
            "name": value_info.name,
            "shape": _dims(value_info),
            "dtype": helper.tensor_dtype_to_np_dtype(elem).name,
            "scale": None,
            "zero_point": None,
        }

    return {
        "ops": dict(sorted(ops.items())),
        "int8_tensors": int8_tensors,
        "inputs": [io(v) for v in proto.graph.input if v.name not in initializers],
        "outputs": [io(v) for v in proto.graph.output],
        "input_range": input_range,
        "output_step": output_step,
    }


def run_onnx(proto_or_path, inputs):
    """Runs an ONNX model (a proto, bytes or a path) with onnxruntime's CPU provider."""
    import onnxruntime as ort

    if isinstance(inputs, np.ndarray):
        inputs = [inputs]
    if hasattr(proto_or_path, "SerializeToString"):
        proto_or_path = proto_or_path.SerializeToString()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(
        proto_or_path, sess_options=options, providers=["CPUExecutionProvider"]
    )
    metas = session.get_inputs()
    if len(metas) != len(inputs):
        raise ValueError(f"The file has {len(metas)} inputs; received {len(inputs)} arrays.")
    feed = {m.name: np.asarray(x) for m, x in zip(metas, inputs, strict=True)}
    return session.run(None, feed)
