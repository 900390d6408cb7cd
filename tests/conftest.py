"""Shared test set-up.

The CPU is split into two logical devices before TensorFlow initialises, so that
`tf.distribute.MirroredStrategy` runs two real replicas in the contract's distribute check.
"""

import os

import pytest

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


# Modules whose shared fixtures take one to four minutes of a core (trained MNIST models, the
# 2-process multi-worker run, the quick demo, the SIGKILL resume runs, the builders' export):
# collected first, so that under pytest-xdist they start while the short tests keep the other
# worker busy, instead of one of them starting last and running alone at the end.
_SLOW_MODULES_FIRST = (
    "tests/quantization/test_mnist_proof.py",
    "tests/training/test_multi_worker.py",
    "tests/test_demo.py",
    "tests/training/test_resume.py",
    "tests/export/test_coverage.py",
)


def _shared_fixture_group(item):
    """The widest place (folder or module) defining a module- or session-scoped fixture `item`
    uses, directly or through other fixtures; None for a test that shares none."""
    places = [
        fixturedef.baseid
        for defs in item._fixtureinfo.name2fixturedefs.values()
        for fixturedef in defs
        if fixturedef.scope != "function" and fixturedef.baseid.startswith("tests/")
    ]
    return min(places, key=len) if places else None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    # pytest-xdist's default ("load") hands tests out one by one, so two workers can each build
    # the same shared fixture (the resume module's five training processes ran twice). With
    # `--dist loadgroup` (pyproject's addopts), every test using a shared fixture of one
    # module or folder is one unit of work that a single worker runs.
    for item in items:
        group = _shared_fixture_group(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
    rank = {path: index for index, path in enumerate(_SLOW_MODULES_FIRST)}
    # A stable sort: every other test keeps its collected order (and xdist needs the same
    # order on every worker, which a pure function of the node ids gives).
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))
