"""Shared test set-up.

The CPU is split into two logical devices before TensorFlow initialises, so that
`tf.distribute.MirroredStrategy` runs two real replicas in the contract's distribute check.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_cnn_ext.testing import configure_logical_cpus  # noqa: E402

configure_logical_cpus(2)


def _distinct_collective_keys():
    # Every MirroredStrategy in a process starts its collective group and instance keys at the
    # same base (TF 2.21's `MirroredStrategy._collective_key_base = 0`), and TF's collective
    # executor remembers an (group, instance) pair's op type process-wide. A second strategy whose
    # first collective is a gather where an earlier one's was a reduce then aborts with
    # "Collective instance 100 expected type 0 ... but got type 2". Tests create many strategies
    # in one worker process, so each gets a key base of its own.
    import itertools

    from tensorflow.python.distribute import mirrored_strategy

    bases = itertools.count(1)
    original = mirrored_strategy.MirroredStrategy.__init__

    def __init__(self, *args, **kwargs):
        self._collective_key_base = next(bases) * 100_000
        original(self, *args, **kwargs)

    mirrored_strategy.MirroredStrategy.__init__ = __init__


_distinct_collective_keys()
