"""The former home of the builders' plumbing; its names now live in focused modules.

Kept so that `from keras_cnn_ext.models.common import copy_weights` (and the other names)
still works. New code imports from the modules themselves:

- `keras_cnn_ext.models.inputs`: `make_inputs`, `validate_builder_args`, `Downsample`, ...
- `keras_cnn_ext.models.heads`: `classifier_head`, `head_pooling_layer`, `HEAD_POOLINGS`, ...
- `keras_cnn_ext.models.weights`: `copy_weights`, `load_keras_applications_weights`, ...
- `keras_cnn_ext.models.plain`: `Conv`, `Pool`, `LRN`, `conv_stack`, `stack_stages`, ...
- `keras_cnn_ext.models.parts`: `make_norm`, `make_activation`, `make_pool`, `apply`.
- `keras_cnn_ext.models.builder`: `finalize_model`, `finish_model`, `named_variant`.
"""

from keras_cnn_ext.models.builder import finalize_model, finish_model  # noqa: F401
from keras_cnn_ext.models.heads import FEATURE_POOLINGS as POOLINGS  # noqa: F401
from keras_cnn_ext.models.heads import (  # noqa: F401
    FLATTEN_HEAD_POOLINGS,
    HEAD_POOLINGS,
    classifier_head,
    head_pooling_layer,
)
from keras_cnn_ext.models.inputs import (  # noqa: F401
    Downsample,
    check_min_size,
    check_multiplier,
    make_inputs,
    min_input_size,
    validate_builder_args,
)
from keras_cnn_ext.models.parts import (  # noqa: F401
    POOL_TYPES,
    apply,
    make_activation,
    make_norm,
    make_pool,
)
from keras_cnn_ext.models.plain import LRN, Conv, Pool, conv_stack, stack_stages  # noqa: F401
from keras_cnn_ext.models.weights import (  # noqa: F401
    WEIGHTS_SUFFIXES,
    copy_weights,
    load_keras_applications_weights,
)
