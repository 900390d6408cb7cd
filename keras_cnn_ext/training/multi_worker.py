"""`model.fit` on several worker processes with `tf.distribute.MultiWorkerMirroredStrategy`.

Keras 3.15's TensorFlow trainer cannot run `fit` under a multi-worker strategy (keras #20585;
tensorflow #72388 was closed as stale). Two lines fail:

1. `TensorFlowTrainer._maybe_symbolic_build` reduces the first distributed batch with
   `strategy.reduce("MEAN", batch, axis=None)`. Under the collective (multi-worker) strategy that
   reduce converts the `PerReplica` value to a tensor and raises "Attempt to convert a value
   (PerReplica...) to a Tensor". The batch is only needed for its shapes, so the fix builds from
   this worker's first local replica instead.
2. The multi-worker branch of `reduce_per_replica` reduces every log with
   `strategy.reduce("MEAN", v, axis=0)`, which fails on scalar losses and metrics ("Invalid
   reduction dimension 0 for input with 0 dimensions"). The fix reduces scalars with `axis=None`
   (the mean over replicas, which is what the single-machine `MirroredStrategy` branch computes).

`enable_multi_worker_fit()` applies both, explicitly (never at import), only where the installed
Keras still has the faulty code (detected in its source, so a Keras with the fix gets no patch),
and only once. Everything else stays Keras': callbacks, validation, the distributed dataset.

Input pipelines: Keras hands a `tf.data.Dataset` to `strategy.experimental_distribute_dataset`.
Batch it with the *global* batch size (`global_batch_size(per_replica, strategy)` = per-replica
batch x `strategy.num_replicas_in_sync`); tf.distribute re-batches it per replica and shards it
with `tf.data.experimental.AutoShardPolicy.DATA` (`shard_options()`): every worker reads the whole
pipeline and keeps its replicas' slices of each global batch, so the batches, their order and the
loss history are the same as one process with the same number of replicas. Use
`AutoShardPolicy.FILE` (one file set per worker) only for file-based input with at least as many
files as workers.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import socket

import tensorflow as tf

# The Keras versions whose TF trainer these fixes were written against (and tested with).
_TESTED_KERAS = ((3, 0), (3, 16))
_APPLIED = {}


def _keras_version():
    import keras

    parts = []
    for piece in keras.__version__.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def _source(obj):
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):  # pragma: no cover - a Keras installed without sources
        return ""


def _symbolic_build_needs_fix(trainer_module):
    src = _source(trainer_module.TensorFlowTrainer._maybe_symbolic_build)
    return "distribute_strategy.reduce(" in src


def _reduce_needs_fix(trainer_module):
    src = _source(trainer_module.reduce_per_replica)
    return 'strategy.reduce("MEAN", v, axis=0)' in src


def enable_multi_worker_fit():
    """Makes `model.fit`/`evaluate` work under `MultiWorkerMirroredStrategy` on Keras 3.15.

    Patches the two faulty spots of Keras' TensorFlow trainer described in this module's
    docstring. Call it once, before `fit`, in every worker process (it is not applied at import
    time). It is a no-op when the installed Keras no longer contains the faulty code, when it is
    outside the tested versions (3.0 to 3.15), or when it was already applied. Single-process
    strategies are unaffected: both fixes only change the multi-worker branches.

    Returns:
        A dict `{"symbolic_build": bool, "reduce_per_replica": bool}` saying which fix is in
        effect in this process.

    Example:

    >>> from keras_cnn_ext.training import enable_multi_worker_fit
    >>> sorted(enable_multi_worker_fit())
    ['reduce_per_replica', 'symbolic_build']
    """
    from keras.src.backend.tensorflow import trainer as tf_trainer

    if _APPLIED:
        return dict(_APPLIED)
    version = _keras_version()
    in_range = _TESTED_KERAS[0] <= version < _TESTED_KERAS[1]
    applied = {"symbolic_build": False, "reduce_per_replica": False}

    if in_range and _symbolic_build_needs_fix(tf_trainer):
        original_build = tf_trainer.TensorFlowTrainer._maybe_symbolic_build

        def _maybe_symbolic_build(self, iterator=None, data_batch=None):
            strategy = self._distribute_strategy
            if strategy is None or iterator is None or not _is_multi_worker(strategy):
                return original_build(self, iterator=iterator, data_batch=data_batch)
            # The batch only gives `_symbolic_build` its shapes: this worker's first replica
            # has the per-replica shapes that the MEAN reduce would have produced.
            for _, _, it in iterator:
                batch = next(it)
                data_batch = tf.nest.map_structure(
                    lambda v: (
                        strategy.experimental_local_results(v)[0]
                        if isinstance(v, tf.distribute.DistributedValues)
                        else v
                    ),
                    batch,
                )
                break
            with strategy.scope():
                self._symbolic_build(data_batch=data_batch)

        _maybe_symbolic_build.__wrapped__ = original_build
        tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
        applied["symbolic_build"] = True

    if in_range and _reduce_needs_fix(tf_trainer):
        original_reduce = tf_trainer.reduce_per_replica

        def reduce_per_replica(values, strategy, reduction):
            if not _is_multi_worker(strategy) or reduction not in ("auto", "mean"):
                return original_reduce(values, strategy, reduction)

            def _reduce(v):
                if v.shape.rank == 0:
                    return strategy.reduce("MEAN", v, axis=None)
                return original_reduce(v, strategy, reduction)

            return tf.nest.map_structure(_reduce, values)

        reduce_per_replica.__wrapped__ = original_reduce
        tf_trainer.reduce_per_replica = reduce_per_replica
        applied["reduce_per_replica"] = True

    _APPLIED.update(applied)
    return dict(applied)


def _is_multi_worker(strategy):
    return (
        isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        and strategy.extended._in_multi_worker_mode()
    )


def global_batch_size(per_replica_batch_size, strategy=None):
    """The batch size to give `tf.data.Dataset.batch`: per-replica size x replicas in sync.

    Args:
        per_replica_batch_size: the batch each replica computes on, an int >= 1.
        strategy: the strategy; default the current one (`tf.distribute.get_strategy()`).
    """
    if isinstance(per_replica_batch_size, bool) or not isinstance(per_replica_batch_size, int):
        raise TypeError(
            "`per_replica_batch_size` must be a positive integer. "
            f"Received: {per_replica_batch_size!r} of type {type(per_replica_batch_size)}"
        )
    if per_replica_batch_size < 1:
        raise ValueError(
            f"`per_replica_batch_size` must be >= 1. Received: {per_replica_batch_size!r}"
        )
    strategy = strategy or tf.distribute.get_strategy()
    return per_replica_batch_size * strategy.num_replicas_in_sync


def shard_options(policy="data"):
    """`tf.data.Options` with the auto-shard policy set (`"data"`, `"file"`, `"auto"`, `"off"`).

    `"data"` (default here, and what in-memory arrays fall back to anyway): every worker keeps its
    replicas' slices of each global batch. Apply with `dataset.with_options(shard_options())`.
    """
    policies = {
        "data": tf.data.experimental.AutoShardPolicy.DATA,
        "file": tf.data.experimental.AutoShardPolicy.FILE,
        "auto": tf.data.experimental.AutoShardPolicy.AUTO,
        "off": tf.data.experimental.AutoShardPolicy.OFF,
    }
    if not isinstance(policy, str) or policy.lower() not in policies:
        raise ValueError(f"`policy` must be one of {sorted(policies)}. Received: {policy!r}")
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = policies[policy.lower()]
    return options


def free_ports(count, host="localhost"):
    """`count` TCP ports that are free on `host` now (for local workers in tests/examples)."""
    with contextlib.ExitStack() as stack:
        sockets = []
        for _ in range(count):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]


def make_tf_config(workers, index, task_type="worker"):
    """The `TF_CONFIG` JSON string for task `index` of a cluster of `workers` ("host:port").

    Worker 0 is the chief (it writes checkpoints and logs). A launcher (Kubeflow's TFJob, a Slurm
    script) writes exactly this variable into each task's environment.
    """
    workers = [str(w) for w in workers]
    if not workers:
        raise ValueError("`workers` must list at least one 'host:port'. Received: []")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(workers):
        raise ValueError(f"`index` must be an integer in [0, {len(workers)}). Received: {index!r}")
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": task_type, "index": index}})


def is_chief(strategy=None):
    """Whether this process writes checkpoints: task 0 under multi-worker, always otherwise."""
    strategy = strategy or tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not _is_multi_worker(strategy):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief":
        return True
    has_chief = "chief" in (resolver.cluster_spec().as_dict() or {})
    return task_type == "worker" and task_id == 0 and not has_chief


def tf_config_task():
    """The `(task_type, index)` of this process from `TF_CONFIG`, or `None` without one."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    task = json.loads(raw).get("task", {})
    return task.get("type"), task.get("index")
