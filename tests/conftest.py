"""Shared test set-up.

The CPU is split into two logical devices before TensorFlow initialises, so that
`tf.distribute.MirroredStrategy` runs two real replicas in the contract's distribute check.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_cnn_ext.testing import configure_logical_cpus  # noqa: E402

configure_logical_cpus(2)
