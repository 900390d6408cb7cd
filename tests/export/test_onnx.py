"""to_onnx: dynamic batch, parity, unsupported ops named by layer, atomic files."""

import contextlib
import hashlib
import os

import keras
import numpy as np
import pytest
from export_models import make_float_model, make_unsupported_model

from keras_cnn_ext.export import UnsupportedOpsError, VerificationError, run_onnx, to_onnx


def test_float_parity_and_dynamic_batch(float_model, tmp_path):
    path = tmp_path / "model.onnx"
    report = to_onnx(float_model, path)
    assert report.passed and report.max_abs_diff <= 1e-5, report.to_markdown()
    assert report.inputs[0]["shape"] == [None, 8, 8, 3]
    assert report.quantization is None and report.int8_tensors == []
    assert report.file_size == os.path.getsize(path)
    assert "Conv" in report.ops and report.runtime.startswith("onnxruntime")
    for batch in (1, 5):
        x = np.random.default_rng(batch).uniform(0, 1, (batch, 8, 8, 3)).astype("float32")
        (out,) = run_onnx(path, [x])
        np.testing.assert_allclose(out, float_model(x, training=False), atol=1e-5)


def test_sequential_model_converts(tmp_path):
    # tf2onnx.convert.from_keras fails on Keras 3 Sequential models (tensorflow-onnx #2448).
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4), keras.layers.Dense(2)])
    assert to_onnx(model, tmp_path / "seq.onnx").passed


def test_unsupported_op_names_layer(tmp_path):
    with pytest.raises(UnsupportedOpsError, match=r"Cumprod \(layer 'running_product'\)") as info:
        to_onnx(make_unsupported_model(), tmp_path / "odd.onnx")
    assert info.value.ops == [("Cumprod", "running_product")]
    assert not os.listdir(tmp_path)


def test_failed_export_keeps_existing_file(float_model, tmp_path):
    path = tmp_path / "model.onnx"
    original = b"keep me"
    path.write_bytes(original)
    with pytest.raises(UnsupportedOpsError):
        to_onnx(make_unsupported_model(), path)
    with pytest.raises(VerificationError, match="Nothing was written"):
        to_onnx(float_model, path, tolerance=-1.0)
    assert path.read_bytes() == original
    assert os.listdir(tmp_path) == ["model.onnx"]


def test_argument_errors(float_model, tmp_path):
    with pytest.raises(ValueError, match="`opset` must be an integer >= 13"):
        to_onnx(float_model, tmp_path / "a.onnx", opset=11)
    with pytest.raises(ValueError, match="folder of `path` does not exist"):
        to_onnx(float_model, tmp_path / "nope" / "a.onnx")
    with pytest.raises(ValueError, match="`on_mismatch` must be one of"):
        to_onnx(float_model, tmp_path / "a.onnx", on_mismatch="ignore")
    with pytest.raises(ValueError, match=r"expected batches of \(shape=\(None, 8, 8, 3\)"):
        to_onnx(float_model, tmp_path / "a.onnx", sample_data=np.zeros((2, 8, 8, 1), "float32"))
    assert not os.listdir(tmp_path)


def test_mixed_float16_model_exports_float32(tmp_path):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = make_float_model()
    finally:
        keras.config.set_dtype_policy(previous)
    report = to_onnx(model, tmp_path / "mixed.onnx")
    assert report.passed and report.inputs[0]["dtype"] == "float32"
    assert any("float32" in note for note in report.notes)
    x = np.random.default_rng(0).uniform(0, 1, (3, 8, 8, 3)).astype("float32")
    (out,) = run_onnx(tmp_path / "mixed.onnx", [x])
    np.testing.assert_allclose(out, model(x, training=False), atol=5e-3)


def _count_graph_copies(monkeypatch):
    """Counts tf2onnx's defensive deep copies of the ONNX graph (one per optimizer pass)."""
    import copy

    from tf2onnx import graph as onnx_graph
    from tf2onnx import optimizer

    copies = []
    deepcopy = copy.deepcopy

    def counting(value, *args, **kwargs):
        if isinstance(value, onnx_graph.Graph):
            copies.append(1)
        return deepcopy(value, *args, **kwargs)

    monkeypatch.setattr(optimizer.copy, "deepcopy", counting)
    return copies


def test_same_file_as_tf2onnx_default_without_its_graph_copies(float_model, tmp_path, monkeypatch):
    from tf2onnx import optimizer

    copies = _count_graph_copies(monkeypatch)
    to_onnx(float_model, tmp_path / "fast.onnx")
    assert copies == []

    class Failing:
        calls = 0

        def optimize(self, graph, iteration):
            Failing.calls += 1
            raise RuntimeError("a broken pass")

    monkeypatch.setattr(optimizer, "_optimizers", dict(optimizer._optimizers, broken=Failing))
    report = to_onnx(float_model, tmp_path / "default.onnx")
    # The pass raised once without the copies; the conversion ran again with tf2onnx's default
    # (a copy before every pass), which skipped it and gave the same file.
    assert report.passed and Failing.calls >= 2 and len(copies) > 10
    assert "TF2ONNX_CATCH_ERRORS" not in os.environ
    assert _structure(tmp_path / "fast.onnx") == _structure(tmp_path / "default.onnx")


def _structure(path):
    """A file's ops with their attributes, and its constants (tf2onnx numbers names per process)."""
    import onnx

    graph = onnx.load(path).graph
    ops = [(node.op_type, [a.SerializeToString() for a in node.attribute]) for node in graph.node]
    constants = sorted((tuple(t.dims), t.data_type, t.raw_data) for t in graph.initializer)
    return ops, constants


def _expressions(path):
    """Each output of a file as the expression computing it: ops, attributes, constants and
    inputs, whatever the order and the names of the nodes."""
    import onnx

    graph = onnx.load(path).graph
    producers = {out: node for node in graph.node for out in node.output}
    leaves = {t.name: (tuple(t.dims), t.data_type, t.raw_data) for t in graph.initializer}
    leaves.update({x.name: ("input", i) for i, x in enumerate(graph.input)})
    leaves[""] = "absent optional input"
    memo = {}

    def of(name):
        if name not in memo:
            if name in leaves:
                key = leaves[name]
            else:
                node = producers[name]
                attributes = [a.SerializeToString() for a in node.attribute]
                inputs = [of(i) for i in node.input]
                key = (node.op_type, node.domain, attributes, inputs, list(node.output).index(name))
            memo[name] = hashlib.sha256(repr(key).encode()).hexdigest()
        return memo[name]

    return [of(out.name) for out in graph.output]


@pytest.mark.parametrize("fixture", ["float_model", "qat_model"])
def test_freezes_without_rebuilding_a_function_and_writes_the_same_graph(
    fixture, request, tmp_path, monkeypatch, function_rebuilds
):
    from keras_cnn_ext.export import onnx as onnx_export

    model = request.getfixturevalue(fixture)
    assert to_onnx(model, tmp_path / "ours.onnx").passed
    assert function_rebuilds == []
    # tf2onnx's own freeze, for comparison: it builds a function from the frozen graph.
    monkeypatch.setattr(onnx_export, "_freeze_without_rebuilding", contextlib.nullcontext)
    assert to_onnx(model, tmp_path / "tf2onnx.onnx").passed
    assert function_rebuilds
    # The same graph; only the order of its nodes may differ.
    assert _expressions(tmp_path / "ours.onnx") == _expressions(tmp_path / "tf2onnx.onnx")
