"""Train one model on N worker processes with `MultiWorkerMirroredStrategy` and Keras' `fit`.

Each worker runs this same script with its own `TF_CONFIG` (a cluster launcher such as
Kubeflow's TFJob or a Slurm script writes it; see docs/multi_worker.md). To try it on one
machine, let the script start the workers itself on free loopback ports::

    python examples/multi_worker_fit.py --local-workers 2 --out /tmp/mw

Worker 0 is the chief: it writes `history.json` and the weights into `--out`; the other workers
write theirs under `--out/worker-<i>` (tf.distribute expects non-chief writes to go to
temporary places). The global batch is `--per-replica-batch` x the number of replicas; the
in-memory dataset is sharded with the DATA auto-shard policy.

`--model net` is a CIFAR ResNet-8 builder backbone with this package's layers (ResidualBlock,
SqueezeExcitation, DropBlock2D, AdaptiveAveragePooling2D) and synchronized batch
normalisation, so that N replicas train like one device with the global batch; `--model qat`
is a quantization-aware (`keras_cnn_ext.quantization.quantize_model`) conv net.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np


def make_data(samples=64, val_samples=16, size=8, classes=4, seed=0):
    """Seeded random images and labels (the same on every worker)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples + val_samples, size, size, 3)).astype("float32")
    y = rng.integers(0, classes, size=samples + val_samples).astype("int64")
    return (x[:samples], y[:samples]), (x[samples:], y[samples:])


def build_model(kind, size=8, classes=4, seed=0):
    """`"net"`: a builder backbone with this package's layers; `"qat"`: its QAT copy.

    `"net"` is a CIFAR ResNet-8 (one residual block per stage, half width, squeeze-and-excitation
    in every block, synchronized batch normalisation) followed by DropBlock2D at rate 0 (so that
    one device and N replicas compute the same function), AdaptiveAveragePooling2D and a softmax
    classifier. `"qat"` is a small conv net through `keras_cnn_ext.quantization.quantize_model`
    (fake-quantized weights and activations with moving-average ranges).
    """
    import keras

    from keras_cnn_ext import layers as ext
    from keras_cnn_ext.models import ResNet8

    keras.utils.set_random_seed(seed)
    if kind == "net":
        backbone = ResNet8(
            input_shape=(size, size, 3),
            include_top=False,
            norm="sync_batch",
            attention="se",
            width_multiplier=0.5,
        )
        x = ext.DropBlock2D(0.0, 3, seed=seed)(backbone.output)
        x = ext.AdaptiveAveragePooling2D(1)(x)
        x = keras.layers.Flatten()(x)
        outputs = keras.layers.Dense(classes, activation="softmax")(x)
        return keras.Model(backbone.input, outputs, name="resnet8_ext")
    if kind == "qat":
        from keras_cnn_ext.quantization import quantize_model

        inputs = keras.Input((size, size, 3))
        x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inputs)
        x = keras.layers.BatchNormalization(synchronized=True)(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling2D(2)(x)
        x = keras.layers.Flatten()(x)
        outputs = keras.layers.Dense(classes, activation="softmax")(x)
        return quantize_model(keras.Model(inputs, outputs, name="small_qat"))
    raise ValueError(f"`kind` must be 'net' or 'qat'. Received: {kind!r}")


class BatchLossLogger:
    """Factory for a callback recording every batch's loss (built lazily to import Keras late)."""

    def __new__(cls):
        import keras

        class _Logger(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.losses = []

            def on_train_batch_end(self, batch, logs=None):
                self.losses.append(float(logs["loss"]))

        return _Logger()


def train(strategy, kind, per_replica_batch=8, epochs=2, seed=0):
    """Fits `kind` under `strategy`; returns (epoch history, batch losses, final weights)."""
    import keras
    import tensorflow as tf

    from keras_cnn_ext.training import global_batch_size, shard_options

    (x, y), (vx, vy) = make_data(seed=seed)
    batch = global_batch_size(per_replica_batch, strategy)
    train_ds = (
        tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).with_options(shard_options("data"))
    )
    val_ds = (
        tf.data.Dataset.from_tensor_slices((vx, vy))
        .batch(batch)
        .with_options(shard_options("data"))
    )
    with strategy.scope():
        model = build_model(kind, seed=seed)
        model.compile(
            # Plain SGD: with momentum 0.9 (and the schedule below), one device and two
            # replicas agreed to 1e-7 in the first epoch but drifted to 2e-4 in the second;
            # without momentum they agree to 1.2e-7 throughout (not yet explained).
            optimizer=keras.optimizers.SGD(0.05),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
    logger = BatchLossLogger()
    schedule = keras.callbacks.LearningRateScheduler(lambda epoch, lr: 0.05 * 0.5**epoch)
    history = model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=epochs,
        callbacks=[logger, schedule],
        verbose=0,
    )
    weights = [np.asarray(w) for w in model.get_weights()]
    return history.history, logger.losses, weights


def run_worker(out, kinds, epochs):
    """The body every worker runs: strategy from TF_CONFIG, the fix, `fit`, results saved."""
    import tensorflow as tf

    from keras_cnn_ext.training import enable_multi_worker_fit, is_chief

    enable_multi_worker_fit()
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    chief = is_chief(strategy)
    task_id = strategy.cluster_resolver.task_id
    folder = out if chief else os.path.join(out, f"worker-{task_id}")
    os.makedirs(folder, exist_ok=True)
    results = {}
    for kind in kinds:
        history, batch_losses, weights = train(strategy, kind, epochs=epochs)
        results[kind] = {"history": history, "batch_losses": batch_losses}
        np.savez(os.path.join(folder, f"{kind}_weights.npz"), *weights)
    with open(os.path.join(folder, "history.json"), "w") as f:
        json.dump(results, f)


def launch_local(n, out, kinds, epochs, timeout=300):
    """Starts `n` workers of this script on free loopback ports and waits for all of them.

    A worker that fails or outlives `timeout` seconds gets the others killed: collective
    training cannot continue without every worker.
    """
    from keras_cnn_ext.training import free_ports, make_tf_config

    workers = [f"localhost:{p}" for p in free_ports(n)]
    procs = []
    try:
        for i in range(n):
            env = dict(os.environ, TF_CONFIG=make_tf_config(workers, i))
            env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            cmd = [sys.executable, os.path.abspath(__file__), "--out", out, "--epochs", str(epochs)]
            cmd += ["--model", *kinds]
            procs.append(subprocess.Popen(cmd, env=env))
        codes = [p.wait(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    if any(codes):
        raise RuntimeError(f"workers exited with codes {codes}")
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for history.json and weights")
    parser.add_argument("--model", nargs="+", default=["net", "qat"])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument(
        "--local-workers", type=int, default=0, help="start this many workers on loopback ports"
    )
    args = parser.parse_args(argv)
    if args.local_workers:
        launch_local(args.local_workers, args.out, args.model, args.epochs)
    else:
        run_worker(args.out, args.model, args.epochs)


if __name__ == "__main__":
    main()
