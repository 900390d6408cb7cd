"""keras_cnn_ext: convolutional-network extensions for Keras 3 on TensorFlow.

Submodules (`keras_cnn_ext.layers`, `keras_cnn_ext.ops`, `keras_cnn_ext.models`, ...) are
imported on first use, so the `keras-cnn-ext --help` command line answers without importing
TensorFlow. `from keras_cnn_ext import layers` and `keras_cnn_ext.layers.DropPath` work as usual.

Keras finds this package's classes when it loads a `.keras` file only once they are registered,
which importing their modules does. `import keras_cnn_ext` registers them all when Keras or
TensorFlow is already imported (the usual order: `import keras` sorts first); otherwise call
`keras_cnn_ext.register_serializables()` (or import `keras_cnn_ext.layers`) before
`keras.saving.load_model`.
"""

import importlib
import sys

__version__ = "0.2.0"

# The submodules that hold classes registered with `keras.saving.register_keras_serializable`.
SERIALIZABLE_MODULES = (
    "layers",
    "losses",
    "quantization",
    "distillation",
    "training.losses",
)


def register_serializables():
    """Imports every submodule whose classes Keras must find when it loads a `.keras` file."""
    for name in SERIALIZABLE_MODULES:
        importlib.import_module(f"{__name__}.{name}")


def __getattr__(name):
    # PEP 562: `keras_cnn_ext.layers` imports the submodule the first time it is read.
    if not name.startswith("_"):
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if "keras" in sys.modules or "tensorflow" in sys.modules:
    register_serializables()
