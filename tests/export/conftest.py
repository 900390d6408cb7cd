"""Fixtures of the export tests; makes `export_models` (beside this file) importable.

pytest runs with `--import-mode=importlib`, which does not put test folders on `sys.path`.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from export_models import make_float_model, make_qat_model  # noqa: E402


@pytest.fixture(scope="session")
def float_model():
    return make_float_model()


@pytest.fixture(scope="session")
def qat_model():
    return make_qat_model()


@pytest.fixture
def function_rebuilds(monkeypatch):
    """A list that grows by one each time TF's freeze builds a ConcreteFunction from the frozen
    GraphDef (`convert_to_constants._construct_concrete_function`), for the rest of the test."""
    from tensorflow.python.framework import convert_to_constants

    builds = []
    construct = convert_to_constants._construct_concrete_function

    def counting(*args, **kwargs):
        builds.append(1)
        return construct(*args, **kwargs)

    monkeypatch.setattr(convert_to_constants, "_construct_concrete_function", counting)
    return builds
