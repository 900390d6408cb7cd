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
