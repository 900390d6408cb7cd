"""Writing a benchmark's results file (no TensorFlow import, so `cli.py` can use it too)."""

import os

from keras_cnn_ext.atomic import atomic_path


def write_result(text, path):
    """Writes `text` to `path` atomically (an interrupted run leaves the previous table)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path, suffix=".md") as partial, open(partial, "w") as handle:
        handle.write(text)
