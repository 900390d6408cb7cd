"""Keras 3 layers, each a thin wrapper over `keras_cnn_ext.ops`."""
