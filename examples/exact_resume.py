"""Training that survives `kill -9`: restart the same command and it ends where it would have.

    python examples/exact_resume.py --backup-dir /tmp/run1 --out /tmp/run1/final.npz

Kill it at any moment (even while a checkpoint is being written) and run the same command again:
`ExactBackupAndRestore` restores the weights, the optimizer, every SeedGenerator, the global
random state and the position in the epoch, and `ResumableDataset` continues the epoch-keyed
shuffle and the per-example augmentation from the next batch. The final weights equal those of
a run that was never interrupted, bit for bit. The model uses Dropout, this package's
DropBlock2D and Cutout, and Keras' RandomFlip; the pipeline shuffles and augments (stateless
flips and brightness).

`--kill-at-batch N` and `--kill-in-write N` make the process SIGKILL itself before training
batch N (counted over the whole run, 1-based) or halfway through writing the checkpoint taken
after batch N; the tests use them.
"""

from __future__ import annotations

import argparse
import json
import os
import signal

import numpy as np

SAMPLES, SIZE, CLASSES, BATCH = 48, 8, 4, 8


def make_data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(SAMPLES, SIZE, SIZE, 3)).astype("float32")
    y = rng.integers(0, CLASSES, size=SAMPLES).astype("int64")
    return x, y


def augment(x, y, seed):
    """Stateless per-example augmentation: the same seed gives the same result after a resume."""
    import tensorflow as tf

    x = tf.image.stateless_random_flip_left_right(x, seed)
    x = tf.image.stateless_random_brightness(x, 0.2, seed + 1)
    return x, y


def build_model(seed=0):
    import keras

    from keras_cnn_ext.layers import Cutout, DropBlock2D

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.RandomFlip("vertical", seed=seed + 1)(inputs)
    x = Cutout(size=2, seed=seed + 2)(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = DropBlock2D(0.2, 3, seed=seed + 3)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.3, seed=seed + 4)(x)
    outputs = keras.layers.Dense(CLASSES, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    schedule = keras.optimizers.schedules.CosineDecay(0.0, 18, warmup_target=0.1, warmup_steps=4)
    model.compile(
        optimizer=keras.optimizers.SGD(schedule, momentum=0.9),
        loss="sparse_categorical_crossentropy",
    )
    return model


def run(backup_dir, out, epochs=3, save_freq=4, kill_at_batch=None, kill_in_write=None):
    import keras
    import tensorflow as tf

    from keras_cnn_ext.training import ExactBackupAndRestore, ResumableDataset

    tf.config.experimental.enable_op_determinism()
    x, y = make_data()
    data = ResumableDataset(x, y, batch_size=BATCH, shuffle=True, seed=7, augment=augment)
    model = build_model()

    class Backup(ExactBackupAndRestore):
        def _write_payload(self, folder, arrays, meta):
            if kill_in_write is not None and self._batches == kill_in_write:
                # Half a checkpoint on disk, then the process dies.
                with open(os.path.join(folder, "state.npz"), "wb") as f:
                    f.write(b"PK\x03\x04 half-written")
                os.kill(os.getpid(), signal.SIGKILL)
            super()._write_payload(folder, arrays, meta)

    backup = Backup(backup_dir, data=data, save_freq=save_freq)

    class Killer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if kill_at_batch is not None and backup._batches + 1 == kill_at_batch:
                os.kill(os.getpid(), signal.SIGKILL)

    model.fit(
        data.dataset,
        epochs=epochs,
        steps_per_epoch=data.steps_per_epoch,
        callbacks=[backup, Killer()],
        verbose=0,
    )
    np.savez(out, *[np.asarray(w) for w in model.get_weights()])
    with open(out + ".json", "w") as f:
        json.dump({"resumed_from": backup.resumed_from, "batches": backup._batches}, f)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backup-dir", required=True)
    parser.add_argument("--out", required=True, help="the final weights (.npz)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--save-freq", type=int, default=4)
    parser.add_argument("--kill-at-batch", type=int)
    parser.add_argument("--kill-in-write", type=int)
    args = parser.parse_args(argv)
    run(
        args.backup_dir,
        args.out,
        epochs=args.epochs,
        save_freq=args.save_freq,
        kill_at_batch=args.kill_at_batch,
        kill_in_write=args.kill_in_write,
    )


if __name__ == "__main__":
    main()
