"""Runs the `>>>` examples in every docstring of the package, so they cannot rot.

Each module's examples run with its own globals plus `keras`, `np` and `tf` (the names the
examples assume, as in Keras' docstrings). Examples that differ only by the documented
object's name (a family of generated builders) run once per module.
"""

import doctest
import importlib
import pkgutil

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_cnn_ext


def _modules():
    names = [keras_cnn_ext.__name__]
    for info in pkgutil.walk_packages(keras_cnn_ext.__path__, prefix="keras_cnn_ext."):
        names.append(info.name)
    return sorted(names)


def _template(test):
    """The examples with the documented object's own name blanked out."""
    name = test.name.rsplit(".", 1)[-1]
    return tuple((e.source.replace(name, "{}"), e.want) for e in test.examples)


def _examples(module):
    finder = doctest.DocTestFinder(exclude_empty=True)
    globs = {**vars(module), "keras": keras, "np": np, "tf": tf}
    tests, seen = [], set()
    for test in finder.find(module, globs=globs):
        # Generated builders (ResNet18 ... ResNet152) share one example template: run it once.
        if test.examples and _template(test) not in seen:
            seen.add(_template(test))
            tests.append(test)
    return tests


MODULES = _modules()


def test_every_module_is_searched():
    assert "keras_cnn_ext.layers.drop_path" in MODULES and "keras_cnn_ext.cli" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    tests = _examples(module)
    if not tests:
        pytest.skip("no examples")
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    report = []
    for test in tests:
        keras.utils.clear_session(free_memory=False)
        runner.run(test, out=report.append)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, "".join(report)
