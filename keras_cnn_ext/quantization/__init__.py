"""Quantization-aware training for Keras 3 conv nets (TFMOT's default 8-bit scheme).

`quantize_model` returns a QAT copy of a Functional or Sequential model (nested models and
this package's blocks included); train it with `compile`/`fit` and the callbacks here, then
convert it with `keras_cnn_ext.export.to_tflite` to a fully int8 TFLite file. `affine`
holds the 8-bit arithmetic (`scale`, `zero_point`, quantize, dequantize) the converter uses.
"""

from keras_cnn_ext.quantization.affine import (  # noqa: F401
    affine_params,
    dequantize,
    quantize,
)
from keras_cnn_ext.quantization.callbacks import (  # noqa: F401
    FreezeBatchNormStatistics,
    FreezeQuantizationRanges,
    QuantizationRangeLogger,
)
from keras_cnn_ext.quantization.channel_pad import ChannelPad  # noqa: F401
from keras_cnn_ext.quantization.folding import FoldedConvBatchNorm  # noqa: F401
from keras_cnn_ext.quantization.qat import (  # noqa: F401
    QuantizeConfig,
    quantize_model,
    quantizers_of,
)
from keras_cnn_ext.quantization.quantizers import FakeQuant, WeightQuantizer  # noqa: F401
from keras_cnn_ext.quantization.registry import (  # noqa: F401
    QUANTIZE_REGISTRY,
    LayerQuantizeSpec,
)
from keras_cnn_ext.quantization.wrapper import QuantizeWrapper  # noqa: F401
