"""The `Example:` sections of the public docstrings run and print what they show."""

import doctest

import keras
import numpy as np
import pytest

from keras_cnn_ext import interpret

DOCUMENTED = [
    interpret.Saliency,
    interpret.IntegratedGradients,
    interpret.GuidedBackprop,
    interpret.SmoothGrad,
    interpret.GradCAM,
    interpret.Occlusion,
    interpret.overlay,
]


@pytest.mark.parametrize("obj", DOCUMENTED, ids=lambda o: o.__name__)
def test_docstring_example(obj):
    finder = doctest.DocTestFinder(recurse=False)
    globs = {"keras": keras, "np": np, **{n: getattr(interpret, n) for n in dir(interpret)}}
    tests = finder.find(obj, obj.__name__, globs=globs)
    assert tests and tests[0].examples, f"{obj.__name__} has no example"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    assert runner.failures == 0, f"{obj.__name__}: {runner.failures} example(s) failed"
