"""Exact resume: SIGKILL a training subprocess twice, restart it, compare with an uninterrupted run."""

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
MID_EPOCH_KILLS = (5, 6, 10, 11)
CHECKPOINTS = (4, 6, 8, 12, 16, 18)
# Killed inside the write of a mid-epoch checkpoint (the previous one holds), after the
# checkpoint the first kill resumes from.
WRITE_KILLS = {4: (8, 16), 8: (16,)}
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


def _last_checkpoint_before(batch):
    return max(b for b in CHECKPOINTS if b < batch)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A reference run, beside one training killed twice and restarted each time: first killed
    mid-epoch, then (resumed) killed inside a checkpoint write, then resumed to the end.
    """
    root = tmp_path_factory.mktemp("resume")
    rng = random.Random()
    kill_at = rng.choice(MID_EPOCH_KILLS)
    kill_write = rng.choice(WRITE_KILLS[_last_checkpoint_before(kill_at)])
    ref = _start(root / "ref", root / "ref.npz")
    first = _start(root / "a", root / "a.npz", "--kill-at-batch", str(kill_at))
    first_rc, first_log = _wait(first)
    second = _start(root / "a", root / "a.npz", "--kill-in-write", str(kill_write))
    second_rc, second_log = _wait(second)
    after_write_kill = sorted(os.listdir(root / "a"))
    pointer = json.loads((root / "a" / resume_module.POINTER).read_text())
    last = _start(root / "a", root / "a.npz")
    last_rc, last_log = _wait(last)
    ref_rc, ref_log = _wait(ref)
    return {
        "root": root,
        "kill_at": kill_at,
        "kill_write": kill_write,
        "rc": {"ref": ref_rc, "first": first_rc, "second": second_rc, "last": last_rc},
        "logs": {"ref": ref_log, "first": first_log, "second": second_log, "last": last_log},
        "after_write_kill": after_write_kill,
        "pointer": pointer,
    }


def test_processes_were_killed_and_finished(runs):
    rc, logs = runs["rc"], runs["logs"]
    assert rc["first"] == -signal.SIGKILL, logs["first"]
    assert rc["second"] == -signal.SIGKILL, logs["second"]
    for name in ("ref", "last"):
        assert rc[name] == 0, logs[name]


def test_kill_mid_epoch_resumes_from_the_checkpoint_inside_the_epoch(runs):
    done = _last_checkpoint_before(runs["kill_at"])
    epoch, step = divmod(done, 6)
    assert step > 0  # inside an epoch
    assert f"resumed from epoch {epoch}, batch {step}" in runs["logs"]["second"], runs["kill_at"]
    assert "resumed from" not in runs["logs"]["first"] + runs["logs"]["ref"]


def test_kill_inside_checkpoint_write_keeps_the_previous_checkpoint(runs):
    # The kill left a half-written temporary folder; the pointer still named the previous one.
    assert any(e.startswith(".tmp-") for e in runs["after_write_kill"]), runs["after_write_kill"]
    previous = _last_checkpoint_before(runs["kill_write"])
    assert runs["pointer"]["checkpoint"].startswith(f"ckpt-{previous:012d}-")
    info = json.loads((runs["root"] / "a.npz.json").read_text())
    assert info["resumed_from"] == list(divmod(previous, 6))
    assert info["batches"] == 18
    assert f"resumed from epoch {previous // 6}, batch {previous % 6}" in runs["logs"]["last"]


def test_twice_killed_run_ends_exactly_where_the_uninterrupted_one_does(runs):
    root = runs["root"]
    for a, r in zip(_weights(root / "a.npz"), _weights(root / "ref.npz"), strict=True):
        assert np.max(np.abs(a - r)) == 0.0, (runs["kill_at"], runs["kill_write"])
    # Training ended normally: the checkpoints were deleted, as BackupAndRestore does.
    assert not (root / "a" / resume_module.POINTER).exists()


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
