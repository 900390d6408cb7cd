"""Verified export of Keras 3 models to TFLite (builtin ops only by default) and ONNX.

Every export runs the written file in the real runtime (`ai_edge_litert`'s interpreter,
onnxruntime) on sample inputs and returns an `ExportReport`: max abs difference and top-1
agreement against Keras, the file's op counts, its int8 tensors and its size. Files are written
atomically. Needs the package's `export` extra (`tf2onnx`, `onnx`, `onnxruntime`,
`ai-edge-litert`).
"""

from keras_cnn_ext.export.onnx import inspect_onnx, run_onnx, to_onnx  # noqa: F401
from keras_cnn_ext.export.report import (  # noqa: F401
    ExportReport,
    UnsupportedOpsError,
    VerificationError,
)
from keras_cnn_ext.export.tflite import inspect_tflite, run_tflite, to_tflite  # noqa: F401
