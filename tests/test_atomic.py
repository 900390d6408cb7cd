"""Atomic writes: the target is replaced whole or left as it was."""

import os
import stat

import pytest

from keras_cnn_ext.atomic import atomic_path


def test_writes_the_file_with_ordinary_permissions(tmp_path):
    target = tmp_path / "out.bin"
    with atomic_path(target, suffix=".bin") as tmp:
        assert tmp.endswith(".bin") and os.path.dirname(tmp) == str(tmp_path)
        with open(tmp, "wb") as f:
            f.write(b"new")
    assert target.read_bytes() == b"new"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert os.listdir(tmp_path) == ["out.bin"]


def test_a_failed_write_leaves_the_existing_file_and_no_partial(tmp_path):
    target = tmp_path / "model.keras"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"), atomic_path(target) as tmp:
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["model.keras"]
