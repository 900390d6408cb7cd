"""The public layer contract: checks every keras_cnn_ext layer passes, usable on your own layers."""

from keras_cnn_ext.testing.devices import configure_logical_cpus  # noqa: F401
