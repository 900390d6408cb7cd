"""Shared, session-scoped trained models for the quantization proofs (trained once per run).

LeNet-5 + BN (modern variant, "same" first padding for 28x28) on the 5,000 real MNIST digits:
4 float epochs, then 1 QAT epoch. ResNet-20 with SE, reduced for time: quarter width (8, 8, 16
channels, the narrowest multiple of 8), 3 float epochs on the 4,000 training digits (batch 64,
Adam on a cosine schedule from 5e-3), the BN statistics re-estimated once, then 1 QAT epoch on
2,000 of them at 5e-5. Both are seeded before the model is built, so every run trains the same
network. At 2e-4 the QAT epoch cost ResNet-20 0.6-0.7 test points with seeds 2 and 3 (over the
proof's half-point bound); at 5e-5 seeds 2-5 measured -0.2, -0.1, +0.1 and 0.0 points.
Both output logits (no softmax): an int8 softmax turns a one-step difference of its int8
input into several steps of its 1/256 output, so "within one output step" is checked on the
logits, the last quantized tensor the file and the QAT model share.
"""

import keras
import numpy as np
import pytest

from keras_cnn_ext.datasets import load_mnist_5k
from keras_cnn_ext.models import LeNet5, ResNet20
from keras_cnn_ext.quantization import quantize_model
from keras_cnn_ext.training import build_for_fit


@pytest.fixture(scope="session")
def mnist():
    return load_mnist_5k()


def _accuracy(model, x, y):
    # 250 divides the 1,000 test digits: no second trace for a smaller last batch.
    return float(np.mean(np.argmax(model.predict(x, batch_size=250, verbose=0), -1) == y))


def _train(
    build,
    mnist,
    float_epochs,
    qat_epochs,
    seed,
    qat_size=None,
    batch_size=32,
    cosine_lr=None,
    qat_lr=1e-4,
):
    (x_train, y_train), (x_test, y_test) = mnist
    # Seeded before the model is built: unseeded initializers would draw from whatever state
    # earlier tests left (or a fresh random one), and each run would train another network.
    keras.utils.set_random_seed(seed)
    model = build()
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if cosine_lr is None:
        model.compile(keras.optimizers.Adam(1e-3), loss)
        build_for_fit(model, x_train, y_train)  # one trace of the first step, not two
        model.fit(x_train, y_train, batch_size=batch_size, epochs=float_epochs - 1, verbose=0)
        model.optimizer.learning_rate.assign(1e-4)
        model.fit(x_train, y_train, batch_size=batch_size, epochs=1, verbose=0)
    else:
        # A short, high-rate cosine schedule: few epochs that still reach a trained net.
        steps = float_epochs * -(-len(x_train) // batch_size)
        schedule = keras.optimizers.schedules.CosineDecay(cosine_lr, steps)
        model.compile(keras.optimizers.Adam(schedule), loss)
        build_for_fit(model, x_train, y_train)
        model.fit(x_train, y_train, batch_size=batch_size, epochs=float_epochs, verbose=0)
    # Few steps leave the BN moving statistics behind the weights (momentum 0.99): estimate
    # them once on 512 training digits, as torch.optim.swa_utils.update_bn does.
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    norms += [
        layer
        for block in model.layers
        for layer in block._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    for layer in norms:
        layer.momentum = 0.0
    model(x_train[:512], training=True)
    for layer in norms:
        layer.momentum = 0.99
    float_weights = [w.copy() for w in model.get_weights()]
    qat = quantize_model(model)
    qat.compile(keras.optimizers.Adam(qat_lr), loss)
    build_for_fit(qat, x_train, y_train)
    qat.fit(
        x_train[:qat_size], y_train[:qat_size], batch_size=batch_size, epochs=qat_epochs, verbose=0
    )
    return {
        "float": model,
        "float_weights": float_weights,
        "qat": qat,
        "float_accuracy": _accuracy(model, x_test, y_test),
        "qat_accuracy": _accuracy(qat, x_test, y_test),
    }


@pytest.fixture(scope="session")
def lenet(mnist):
    def build():
        return LeNet5(
            "modern",
            input_shape=(28, 28, 1),
            padding="same",
            norm="batch",
            classifier_activation=None,
        )

    return _train(build, mnist, float_epochs=4, qat_epochs=1, seed=1)


@pytest.fixture(scope="session")
def se_resnet20(mnist):
    def build():
        return ResNet20(
            input_shape=(28, 28, 1),
            classes=10,
            attention="se",
            width_multiplier=0.25,
            classifier_activation=None,
        )

    return _train(
        build, mnist, float_epochs=3, qat_epochs=1, seed=2, qat_size=2000, batch_size=64,
        cosine_lr=5e-3, qat_lr=5e-5,
    )  # fmt: skip
