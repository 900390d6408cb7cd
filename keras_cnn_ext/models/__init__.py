"""Architecture builders from configuration tables."""

from keras_cnn_ext.models.registry import get_builder, list_builders, register_builder  # noqa: F401
