"""Atomic file writes: a file appears whole at its path or not at all.

Standard library only, so the command line can use it before TensorFlow is imported.

Example:

>>> import os, tempfile
>>> folder = tempfile.mkdtemp()
>>> target = os.path.join(folder, "table.md")
>>> with atomic_path(target) as tmp:
...     with open(tmp, "w") as f:
...         _ = f.write("| a |\\n")
>>> open(target).read()
'| a |\\n'
>>> os.listdir(folder)
['table.md']
"""

from __future__ import annotations

import contextlib
import os
import tempfile


def _default_mode():
    # The permissions `open(path, "w")` would give: 0666 less the process umask. mkstemp's
    # temporary files are 0600, which a saved model or figure should not keep.
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yields a temporary path beside `path`; on success it replaces `path` in one rename.

    Write the whole file to the yielded path inside the `with` block. When the block finishes
    without an exception the file gets ordinary permissions (0666 less the umask) and
    `os.replace` moves it onto `path` (atomic on POSIX and Windows); otherwise it is deleted.
    Either way `path` is never half written, and an existing file there survives any failure.

    Args:
        path: the final file path; its folder must exist.
        suffix: the temporary file's ending, for writers that choose a format by it
            (e.g. `".keras"`, `".png"`). Default `""`.
    """
    path = os.fspath(path)
    folder, base = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{base}.", suffix=f".partial{suffix}")
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
