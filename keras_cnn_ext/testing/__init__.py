"""The public layer contract: checks every keras_cnn_ext layer passes, usable on your own layers."""

from keras_cnn_ext.testing.contract import (  # noqa: F401
    CONTRACT_CHECKS,
    LayerSpec,
    run_contract_check,
    run_layer_contract,
)
from keras_cnn_ext.testing.devices import configure_logical_cpus  # noqa: F401
from keras_cnn_ext.testing.export_parity import (  # noqa: F401
    assert_onnx_parity,
    assert_tflite_parity,
    onnx_model_proto,
    run_onnx,
    run_tflite,
    tflite_builtin_bytes,
)
from keras_cnn_ext.testing.tracing import count_train_traces  # noqa: F401
