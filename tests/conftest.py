"""Shared test set-up.

The CPU is split into two logical devices before TensorFlow initialises, so that
`tf.distribute.MirroredStrategy` runs two real replicas in the contract's distribute check.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# One TensorFlow thread per op and one for the graph in each test process and in the training
# processes tests start (they inherit the environment). Under `-n 2` two workers with default
# pools oversubscribe 2 cores, and TF's pools spin while they wait; the tests' ops are small
# anyway (the MNIST proofs alone: 160 s with one thread, 170 s with the default pools).
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
# XLA's CPU backend without LLVM's optimisation passes and with its classic loop emitters
# instead of the MLIR fusion emitters: the tests check that steps compile and compute the right
# values (bit-exact against TF where the ops promise it, which holds with both), not how fast
# the compiled code runs, and most of their XLA time is compiling many small shapes once each.
# Measured: the whole-step XLA check of DenseNet-BC-22 38 -> 29 CPU-s with -O0; the two pooling
# op modules 182 -> 160 CPU-s with the classic emitters; 12 pooling gradients on 6 shapes
# 12.4 -> 4.6 CPU-s with both. Benchmarks and users keep XLA's defaults.
os.environ.setdefault(
    "XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
)

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


# pytest-xdist runs each module on one worker (`--dist loadfile` in pyproject's addopts): under
# its default, "load", tests go out one by one and both workers built the same module-scoped
# fixtures (the SIGKILL resume module's five training runs, 54.5 s and 52.5 s in one run).
# (`--dist loadgroup` with `xdist_group` marks does not group at all on pytest 9.2:
# pytest-dev/pytest-xdist#1386.) The modules costing the most CPU go first, largest first, so
# that the short ones fill in at the end instead of one long module running alone.
_SLOW_MODULES_FIRST = (
    "tests/quantization/test_mnist_proof.py",
    "tests/models/test_resnet.py",
    "tests/export/test_coverage.py",
    "tests/ops/test_adaptive_pool.py",
    "tests/ops/test_fractional_max_pool.py",
    "tests/training/test_precision.py",
    "tests/test_demo.py",
    "tests/models/test_densenet.py",
    "tests/training/test_multi_worker.py",
    "tests/test_cli_commands.py",
    "tests/training/test_resume.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {path: index for index, path in enumerate(_SLOW_MODULES_FIRST)}
    # A stable sort: every other test keeps its collected order (and xdist needs the same
    # order on every worker, which a pure function of the node ids gives).
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))
