"""The verification report every export returns, and the comparison that fills it."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np


class VerificationError(RuntimeError):
    """An exported file's outputs differ from the Keras model's beyond the tolerance.

    The file was not written (or, with `on_mismatch="warn"`, written anyway with a warning).
    `error.report` holds the `ExportReport` with the measured differences.
    """

    def __init__(self, message, report):
        super().__init__(message)
        self.report = report


class UnsupportedOpsError(ValueError):
    """The model needs ops that the target runtime's builtin kernels do not have.

    `error.ops` lists `(op_type, layer_name)` pairs; `layer_name` is `None` where the op could not
    be traced back to a Keras layer.
    """

    def __init__(self, message, ops):
        super().__init__(message)
        self.ops = ops


@dataclasses.dataclass
class ExportReport:
    """What an export wrote and how its runtime's outputs compare with the Keras model's.

    Attributes:
        format: `"tflite"` or `"onnx"`.
        path: the file written (absolute).
        file_size: its size in bytes.
        quantization: `None` (float32), `"dynamic"`, `"float16"`, `"int8"` (post-training) or
            `"qat"` (a quantization-aware model's own ranges); ONNX: `None` or `"qdq"`.
        runtime: the runtime that ran the file for verification, with its version.
        verified: whether the file was run and compared (`verify=True`).
        passed: whether the comparison stayed within `tolerance` and, where
            `min_top1_agreement` is set, kept at least that top-1 agreement (`None` when not
            verified).
        max_abs_diff: the largest absolute difference between the file's outputs and Keras'.
        tolerance: the accepted `max_abs_diff`.
        top1_agreement: the fraction of samples whose arg-max (over the last axis) agrees, for
            outputs with more than one class; `None` otherwise.
        min_top1_agreement: the least accepted `top1_agreement` (`None`: not checked).
        num_samples: how many samples were compared.
        samples: where they came from (`sample_data`, the calibration data, or a random range:
            a QAT file's own input quantization range, else [0, 1)).
        ops: op type -> count in the file (all subgraphs).
        int8_tensors: names of the file's int8 tensors (weights and activations).
        float_ops: TFLite: op type -> count of the ops computing on float tensors (QUANTIZE and
            DEQUANTIZE aside); empty for a fully int8 file. ONNX: not filled.
        inputs, outputs: per tensor `name`, `shape` (`-1`/`None` = dynamic), `dtype`, and for
            quantized TFLite tensors `scale` and `zero_point`.
        notes: what the exporter changed on the way (e.g. a mixed-precision model exported as
            float32).

    Example:

    >>> import os, tempfile
    >>> from keras_cnn_ext.export import to_onnx
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, use_bias=False)])
    >>> report = to_onnx(model, os.path.join(tempfile.mkdtemp(), "model.onnx"))
    >>> report.passed, report.ops
    (True, {'MatMul': 1})
    >>> print(report.to_markdown().splitlines()[2])
    | format | onnx |
    """

    format: str
    path: str
    file_size: int
    quantization: str | None
    runtime: str
    verified: bool = False
    passed: bool | None = None
    max_abs_diff: float | None = None
    tolerance: float | None = None
    top1_agreement: float | None = None
    min_top1_agreement: float | None = None
    num_samples: int = 0
    samples: str | None = None
    ops: dict = dataclasses.field(default_factory=dict)
    int8_tensors: list = dataclasses.field(default_factory=list)
    float_ops: dict = dataclasses.field(default_factory=dict)
    inputs: list = dataclasses.field(default_factory=list)
    outputs: list = dataclasses.field(default_factory=list)
    notes: list = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict of every field."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=_json_default))

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def to_markdown(self) -> str:
        """Two markdown tables: the summary, then the op counts."""

        def fmt(value):
            if value is None:
                return "—"
            if isinstance(value, float):
                return f"{value:.3g}"
            return str(value)

        rows = [
            ("format", self.format),
            ("file", self.path),
            ("file size", f"{self.file_size / 1024:.1f} KiB ({self.file_size} bytes)"),
            ("quantization", self.quantization or "float32"),
            ("runtime", self.runtime),
            ("passed", self.passed),
            ("max abs diff vs Keras", self.max_abs_diff),
            ("tolerance", self.tolerance),
            ("top-1 agreement", self.top1_agreement),
            ("least accepted top-1 agreement", self.min_top1_agreement),
            ("samples", f"{self.num_samples} ({self.samples})" if self.samples else 0),
            ("int8 tensors", len(self.int8_tensors)),
            ("float ops", ", ".join(f"{k} x{v}" for k, v in sorted(self.float_ops.items()))),
        ]
        for kind, tensors in (("input", self.inputs), ("output", self.outputs)):
            for t in tensors:
                quant = ""
                if t.get("scale") is not None:
                    quant = f", scale {_short(t['scale'])}, zero point {_short(t['zero_point'])}"
                rows.append((f"{kind} {t['name']}", f"{t['shape']} {t['dtype']}{quant}"))
        rows.extend(("note", n) for n in self.notes)
        lines = ["| | |", "|---|---|"]
        lines += [f"| {k} | {fmt(v)} |" for k, v in rows]
        lines += ["", "| op | count |", "|---|---:|"]
        lines += [f"| {op} | {n} |" for op, n in sorted(self.ops.items())]
        return "\n".join(lines)

    def __str__(self):
        return self.to_markdown()


def _short(values):
    values = list(np.ravel(values))
    if len(values) == 1:
        return f"{values[0]:.6g}"
    return f"[{len(values)} values]"


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def compare(report, actual, expected, tolerance, min_top1_agreement=None):
    """Fills `report`'s comparison fields from lists of runtime and Keras output arrays.

    The file passes when its max abs difference is within `tolerance` and, where
    `min_top1_agreement` is given and the outputs have classes, its top-1 agreement is at least
    that.
    """
    if len(actual) != len(expected):
        raise AssertionError(
            f"The exported file has {len(actual)} outputs; the Keras model has {len(expected)}."
        )
    diffs, agreements = [], []
    for got, want in zip(actual, expected, strict=True):
        got = np.asarray(got, dtype=np.float64)
        want = np.asarray(want, dtype=np.float64)
        if got.shape != want.shape:
            raise AssertionError(
                f"An exported output has shape {got.shape}; Keras' has shape {want.shape}."
            )
        finite = np.isfinite(got) == np.isfinite(want)
        diffs.append(
            float(np.max(np.abs(np.nan_to_num(got - want, nan=np.inf)))) if got.size else 0.0
        )
        if not np.all(finite):
            diffs[-1] = float("inf")
        if want.ndim >= 2 and want.shape[-1] > 1:
            agreements.append(float(np.mean(got.argmax(-1) == want.argmax(-1))))
    report.verified = True
    report.max_abs_diff = max(diffs) if diffs else 0.0
    report.tolerance = float(tolerance)
    report.top1_agreement = min(agreements) if agreements else None
    report.num_samples = int(len(expected[0])) if expected else 0
    report.passed = bool(report.max_abs_diff <= tolerance)
    if min_top1_agreement is not None:
        report.min_top1_agreement = float(min_top1_agreement)
        if report.top1_agreement is not None:
            report.passed = report.passed and report.top1_agreement >= min_top1_agreement
    return report


def scaled_tolerance(atol, expected):
    """`atol` relative to the outputs' magnitude (never below `atol` itself)."""
    scale = max([1.0] + [float(np.max(np.abs(e))) for e in expected if np.size(e)])
    return atol * scale
