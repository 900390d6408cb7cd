"""RandomErasing and Cutout as tf.data augmentation, training LeNet-5 on real MNIST digits.

    python examples/erasing_in_tf_data.py --epochs 5 --figure erased.png

The layers run in the input pipeline (`dataset.map(..., num_parallel_calls)`), on the CPU,
beside training, and are not part of the saved model. RandomErasing follows Zhong et al. 2017
(random area and aspect ratio); Cutout follows DeVries and Taylor 2017 (fixed square holes).
"""

from __future__ import annotations

import argparse

import keras
import tensorflow as tf

from keras_cnn_ext.datasets import load_mnist_5k
from keras_cnn_ext.layers import Cutout, RandomErasing
from keras_cnn_ext.models import LeNet5


def make_pipeline(x, y, batch_size=64, seed=0, shuffle=True):
    erase = RandomErasing(probability=0.5, value_range=(0.0, 1.0), seed=seed)
    cutout = Cutout(num_holes=1, size=8, seed=seed + 1)

    def augment(images, labels):
        return cutout(erase(images, training=True), training=True), labels

    data = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        data = data.shuffle(len(x), seed=seed)
    data = data.batch(batch_size)
    return data.map(augment, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train-size", type=int, default=None, help="use only N training digits")
    parser.add_argument("--figure", default=None, help="save a PNG of augmented digits")
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = load_mnist_5k()
    x_train, y_train = x_train[: args.train_size], y_train[: args.train_size]
    pipeline = make_pipeline(x_train, y_train)
    batch = next(iter(pipeline))[0].numpy()
    if args.figure:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(8, 1.2))
        for i, ax in enumerate(fig.subplots(1, 8)):
            ax.imshow(batch[i, ..., 0], cmap="gray")
            ax.axis("off")
        fig.savefig(args.figure, bbox_inches="tight")

    model = LeNet5("modern", input_shape=(28, 28, 1), padding="same", norm="batch")
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(pipeline, epochs=args.epochs, verbose=2)
    accuracy = float(model.evaluate(x_test, y_test, verbose=0)[1])
    print(f"test accuracy {accuracy:.4f}")
    return {"batch": batch, "accuracy": accuracy}


if __name__ == "__main__":
    main()
