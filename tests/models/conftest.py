"""Makes `builder_checks` (the shared builder checks beside this file) importable.

pytest runs with `--import-mode=importlib`, which does not put test folders on `sys.path`.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
