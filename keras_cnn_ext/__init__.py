"""keras_cnn_ext: convolutional-network extensions for Keras 3 on TensorFlow.

Submodules (`keras_cnn_ext.layers`, `keras_cnn_ext.ops`, `keras_cnn_ext.models`, ...) are
imported on first use, so `import keras_cnn_ext` and the `keras-cnn-ext --help` command line do
not import TensorFlow. `from keras_cnn_ext import layers` and `keras_cnn_ext.layers.DropPath`
work as usual. Import `keras_cnn_ext.layers` before `keras.saving.load_model` on a model that
holds this package's layers: importing it registers them for deserialisation.
"""

import importlib

__version__ = "0.1.0"


def __getattr__(name):
    # PEP 562: `keras_cnn_ext.layers` imports the submodule the first time it is read.
    if not name.startswith("_"):
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
