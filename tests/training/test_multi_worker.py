"""Multi-worker `fit`: 2 worker processes on loopback ports against one-process runs."""

import importlib.util
import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from keras_cnn_ext.training import (
    enable_multi_worker_fit,
    global_batch_size,
    make_tf_config,
    shard_options,
)

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "multi_worker_fit.py"
KINDS = ("net", "qat")


def _load_example():
    spec = importlib.util.spec_from_file_location("multi_worker_fit_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example():
    return _load_example()


@pytest.fixture(scope="module")
def workers(example, tmp_path_factory):
    """Runs the example on 2 local workers (started and killed by the example, bounded)."""
    out = tmp_path_factory.mktemp("multi_worker")
    example.launch_local(2, str(out), KINDS, epochs=2, timeout=400)
    results = [json.loads((out / "history.json").read_text())]
    results.append(json.loads((out / "worker-1" / "history.json").read_text()))
    weights = {k: np.load(out / f"{k}_weights.npz") for k in KINDS}
    return out, results, weights


@pytest.fixture(scope="module")
def mirrored_runs(example):
    if len(tf.config.list_logical_devices("CPU")) < 2:
        pytest.skip("needs 2 logical CPU devices (tests/conftest.py splits the CPU)")
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    return {kind: example.train(strategy, kind) for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_two_workers_equal_one_process_mirrored_exactly(workers, mirrored_runs, kind):
    out, results, weights = workers
    history, batch_losses, final = mirrored_runs[kind]
    for worker in results:
        # Epoch logs (loss, accuracy, val_loss, val_accuracy, learning_rate) and every batch.
        assert worker[kind]["history"] == history
        assert worker[kind]["batch_losses"] == batch_losses
    assert set(history) >= {"loss", "val_loss", "val_accuracy", "learning_rate"}
    assert len(batch_losses) == 2 * 64 // 16
    for i, w in enumerate(final):
        np.testing.assert_array_equal(weights[kind][f"arr_{i}"], w)
    # The non-chief wrote only under its own folder.
    assert (out / "worker-1" / f"{kind}_weights.npz").exists()


def test_two_workers_with_sync_bn_match_single_device(example, workers):
    _, results, weights = workers
    history, batch_losses = results[0]["net"]["history"], results[0]["net"]["batch_losses"]
    final = [weights["net"][f"arr_{i}"] for i in range(len(weights["net"].files))]
    single_history, single_losses, single_final = example.train(
        tf.distribute.get_strategy(), "net", per_replica_batch=16
    )
    np.testing.assert_allclose(single_losses, batch_losses, atol=1e-5, rtol=0)
    np.testing.assert_allclose(single_history["val_loss"], history["val_loss"], atol=1e-5)
    for a, b in zip(single_final, final, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_enable_multi_worker_fit_is_explicit_and_idempotent():
    from keras.src.backend.tensorflow import trainer

    first = enable_multi_worker_fit()
    assert first == {"symbolic_build": True, "reduce_per_replica": True}  # Keras 3.15 needs both
    assert enable_multi_worker_fit() == first
    assert hasattr(trainer.reduce_per_replica, "__wrapped__")
    # The single-process branch is Keras' own.
    strategy = tf.distribute.get_strategy()
    assert trainer.reduce_per_replica({"a": tf.constant(1.0)}, strategy, "auto")["a"] == 1.0


def test_global_batch_and_sharding_helpers():
    assert global_batch_size(8, tf.distribute.get_strategy()) == 8
    options = shard_options()
    assert options.experimental_distribute.auto_shard_policy == (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    config = json.loads(make_tf_config(["localhost:1", "localhost:2"], 1))
    assert config == {
        "cluster": {"worker": ["localhost:1", "localhost:2"]},
        "task": {"type": "worker", "index": 1},
    }


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: global_batch_size(0), ValueError),
        (lambda: global_batch_size(2.0), TypeError),
        (lambda: shard_options("rows"), ValueError),
        (lambda: make_tf_config(["localhost:1"], 1), ValueError),
        (lambda: make_tf_config([], 0), ValueError),
    ],
)
def test_bad_input(call, error):
    with pytest.raises(error, match="`"):
        call()
