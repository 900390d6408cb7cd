"""Exact resume: SIGKILL a training subprocess, restart it, compare with an uninterrupted run."""

import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_cnn_ext.training import ExactBackupAndRestore, ResumableDataset
from keras_cnn_ext.training import resume as resume_module

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "exact_resume.py"
# 48 examples, batch 8: 6 batches an epoch, 3 epochs; checkpoints every 4 batches and at each
# epoch end (after batches 4, 6, 8, 12, 16, 18). A kill before one of these batches finds its
# last checkpoint in the middle of an epoch.
MID_EPOCH_KILLS = (5, 6, 10, 11, 17)
WRITE_KILLS = (8, 16)  # killed inside the write of a mid-epoch checkpoint; the previous holds
TIMEOUT = 240


def _start(backup, out, *flags):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    cmd = [sys.executable, str(EXAMPLE), "--backup-dir", str(backup), "--out", str(out), *flags]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait(proc):
    try:
        output, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return proc.returncode, output.decode(errors="replace")[-3000:]


def _weights(path):
    with np.load(path) as f:
        return [f[f"arr_{i}"] for i in range(len(f.files))]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Reference run, a run killed mid-epoch and one killed inside a write, each restarted.

    The three first runs go side by side, then the two restarts: two rounds instead of five.
    """
    root = tmp_path_factory.mktemp("resume")
    rng = random.Random()
    kill_at, kill_write = rng.choice(MID_EPOCH_KILLS), rng.choice(WRITE_KILLS)
    ref = _start(root / "ref", root / "ref.npz")
    a1 = _start(root / "a", root / "a.npz", "--kill-at-batch", str(kill_at))
    b1 = _start(root / "b", root / "b.npz", "--kill-in-write", str(kill_write))
    a1_rc, a1_log = _wait(a1)
    a2 = _start(root / "a", root / "a.npz")
    b1_rc, b1_log = _wait(b1)
    b_after_kill = sorted(os.listdir(root / "b"))
    b_pointer = json.loads((root / "b" / resume_module.POINTER).read_text())
    b2 = _start(root / "b", root / "b.npz")
    ref_rc, ref_log = _wait(ref)
    a2_rc, a2_log = _wait(a2)
    b2_rc, b2_log = _wait(b2)
    return {
        "root": root,
        "kill_at": kill_at,
        "kill_write": kill_write,
        "rc": {"ref": ref_rc, "a1": a1_rc, "a2": a2_rc, "b1": b1_rc, "b2": b2_rc},
        "logs": {"ref": ref_log, "a1": a1_log, "a2": a2_log, "b1": b1_log, "b2": b2_log},
        "b_after_kill": b_after_kill,
        "b_pointer": b_pointer,
    }


def test_processes_were_killed_and_finished(runs):
    rc, logs = runs["rc"], runs["logs"]
    assert rc["a1"] == -signal.SIGKILL, logs["a1"]
    assert rc["b1"] == -signal.SIGKILL, logs["b1"]
    for name in ("ref", "a2", "b2"):
        assert rc[name] == 0, logs[name]


def test_kill_mid_epoch_resumes_exactly(runs):
    root = runs["root"]
    info = json.loads((root / "a.npz.json").read_text())
    done = max(b for b in (4, 6, 8, 12, 16) if b < runs["kill_at"])
    assert info["resumed_from"] == list(divmod(done, 6)), runs["kill_at"]
    assert info["resumed_from"][1] > 0  # inside an epoch
    assert info["batches"] == 18
    for a, r in zip(_weights(root / "a.npz"), _weights(root / "ref.npz"), strict=True):
        assert np.max(np.abs(a - r)) == 0.0, f"killed before batch {runs['kill_at']}"


def test_kill_inside_checkpoint_write_resumes_exactly(runs):
    root = runs["root"]
    # The kill left a half-written temporary folder; the pointer still named the previous one.
    assert any(e.startswith(".tmp-") for e in runs["b_after_kill"]), runs["b_after_kill"]
    previous = {8: 6, 16: 12}[runs["kill_write"]]
    assert runs["b_pointer"]["checkpoint"].startswith(f"ckpt-{previous:012d}-")
    info = json.loads((root / "b.npz.json").read_text())
    assert info["resumed_from"] == list(divmod(previous, 6))
    for b, r in zip(_weights(root / "b.npz"), _weights(root / "ref.npz"), strict=True):
        assert np.max(np.abs(b - r)) == 0.0, f"killed inside write {runs['kill_write']}"
    # Training ended normally: the checkpoints were deleted, as BackupAndRestore does.
    assert not (root / "b" / resume_module.POINTER).exists()


# ---- in-process checks (small, fast) ------------------------------------------------------


def _fit(folder, units=2, epochs=1, data=None, steps=None, **kwargs):
    data = data or ResumableDataset(np.ones((8, 3)), np.zeros((8, units)), batch_size=4)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(units)])
    model.compile(keras.optimizers.Adam(0.01), "mse")
    backup = ExactBackupAndRestore(folder, data=data, **kwargs)
    model.fit(
        data.dataset,
        epochs=epochs,
        steps_per_epoch=steps or data.steps_per_epoch,
        callbacks=[backup],
        verbose=0,
    )
    return model, backup


def _snapshot(folder):
    return {
        p.relative_to(folder): p.read_bytes()
        for p in pathlib.Path(folder).rglob("*")
        if p.is_file()
    }


def test_wrong_model_checkpoint_is_refused_and_kept(tmp_path):
    _fit(tmp_path, units=2, delete_checkpoint=False)
    before = _snapshot(tmp_path)
    with pytest.raises(ValueError, match="different model"):
        _fit(tmp_path, units=3)
    assert _snapshot(tmp_path) == before


def test_half_written_checkpoint_is_refused(tmp_path):
    _fit(tmp_path, delete_checkpoint=False)
    pointer = json.loads((tmp_path / resume_module.POINTER).read_text())
    state = tmp_path / pointer["checkpoint"] / "state.npz"
    state.write_bytes(state.read_bytes()[:100])
    with pytest.raises(ValueError, match="half-written or corrupted"):
        _fit(tmp_path)
    shutil.rmtree(tmp_path / pointer["checkpoint"])
    with pytest.raises(ValueError, match="incomplete"):
        _fit(tmp_path)
    (tmp_path / resume_module.POINTER).write_text('{"format": ')
    with pytest.raises(ValueError, match="unreadable or half-written"):
        _fit(tmp_path)


def test_foreign_folder_is_refused(tmp_path):
    (tmp_path / "model.weights.h5").write_bytes(b"someone's weights")
    with pytest.raises(ValueError, match="not an exact-resume checkpoint"):
        _fit(tmp_path)
    assert (tmp_path / "model.weights.h5").read_bytes() == b"someone's weights"


def test_only_unfinished_writes_start_fresh_with_a_warning(tmp_path):
    (tmp_path / ".tmp-0123").mkdir()
    with pytest.warns(UserWarning, match="no checkpoint was completed"):
        _, backup = _fit(tmp_path)
    assert backup.resumed_from is None


def test_non_chief_workers_do_not_write_the_backup_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(resume_module, "is_chief", lambda strategy=None: False)
    _fit(tmp_path / "backup", save_freq=1, delete_checkpoint=False)
    assert os.listdir(tmp_path / "backup") == []  # its temporary folders are gone too


def test_epoch_shuffle_is_a_permutation_and_skips_exactly():
    data = ResumableDataset(np.arange(10), np.arange(10), batch_size=4, seed=3)
    batches = [b[1].numpy().tolist() for b in data.dataset.take(6)]
    assert sorted(sum(batches[:3], [])) == list(range(10))
    assert sorted(sum(batches[3:], [])) == list(range(10))
    assert batches[:3] != batches[3:]  # a new order every epoch
    data.set_position(1, 1)
    assert [b[1].numpy().tolist() for b in data.dataset.take(2)] == batches[4:6]


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: ExactBackupAndRestore("d", save_freq=0, data=_data()), ValueError, "save_freq"),
        (lambda: ExactBackupAndRestore("d", save_freq=5), ValueError, "needs `data="),
        (lambda: ExactBackupAndRestore("d", data=[1, 2]), TypeError, "`data`"),
        (lambda: ResumableDataset(np.ones(4), np.ones(3)), ValueError, "same number"),
        (lambda: ResumableDataset(np.ones(4), batch_size=0), ValueError, "batch_size"),
        (lambda: _data().set_position(0, 9), ValueError, "`step`"),
    ],
)
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


def _data():
    return ResumableDataset(np.ones((8, 3)), np.zeros((8, 2)), batch_size=4)


def test_steps_per_epoch_must_match_the_data(tmp_path):
    with pytest.raises(ValueError, match="steps_per_epoch"):
        _fit(tmp_path, steps=1)


def test_epoch_frequency_has_no_batch_hook_and_resumes_at_epochs(tmp_path):
    data = _data()
    backup = ExactBackupAndRestore(tmp_path, data=data)
    # Keras dispatches batch hooks asynchronously only when none is overridden.
    assert getattr(backup.on_train_batch_end, "_is_default", False)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile("sgd", "mse")
    model.fit(data.dataset, epochs=2, steps_per_epoch=2, callbacks=[backup], verbose=0)
    assert backup._batches == 4
    # A mid-epoch checkpoint (written with save_freq in steps) needs save_freq in steps.
    _fit(tmp_path / "mid", save_freq=1, delete_checkpoint=False, epochs=1)
    pointer = json.loads((tmp_path / "mid" / resume_module.POINTER).read_text())
    assert (pointer["epoch"], pointer["step"]) == (1, 0)
