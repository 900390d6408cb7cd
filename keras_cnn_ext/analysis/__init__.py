"""Model analysis: parameters, MACs/FLOPs, activation memory, receptive field.

`profile(model)` walks any built Keras model and returns per-layer records and totals;
`keras_cnn_ext.analysis.formulas` holds the closed forms it is built on; `register_counter` adds
counters for new layer types.
"""

from keras_cnn_ext.analysis.counters import (
    Geometry,
    LayerCost,
    get_counter,
    register_counter,
    unregister_counter,
)
from keras_cnn_ext.analysis.formulas import (
    conv_macs,
    conv_output_size,
    conv_params,
    conv_transpose_output_size,
    conv_transpose_params,
    depthwise_conv_params,
    effective_kernel_size,
    receptive_field_step,
    separable_conv_params,
    separable_param_ratio,
)
from keras_cnn_ext.analysis.profile import profile
from keras_cnn_ext.analysis.report import LayerRecord, ProfileResult

__all__ = [
    "Geometry",
    "LayerCost",
    "LayerRecord",
    "ProfileResult",
    "conv_macs",
    "conv_output_size",
    "conv_params",
    "conv_transpose_output_size",
    "conv_transpose_params",
    "depthwise_conv_params",
    "effective_kernel_size",
    "get_counter",
    "profile",
    "receptive_field_step",
    "register_counter",
    "separable_conv_params",
    "separable_param_ratio",
    "unregister_counter",
]
