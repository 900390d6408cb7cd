"""Small teacher/student builders shared by the distillation tests."""

import keras
import numpy as np

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def conv_net(widths, dense, name, classes=10, input_shape=(28, 28, 1), seed=0, count=False):
    """`[conv-relu-maxpool] * len(widths)`, then a dense layer and a logits layer.

    The convolutions are named `{name}_conv1`, `{name}_conv2`, ...; with `count`, a
    `CountCalls` layer named `{name}_count` counts the model's executed forward passes.
    """
    init = keras.initializers.GlorotUniform(seed=seed)
    inputs = keras.Input(input_shape)
    h = CountCalls("call", name=f"{name}_count")(inputs) if count else inputs
    for i, width in enumerate(widths):
        h = keras.layers.Conv2D(
            width,
            3,
            padding="same",
            activation="relu",
            kernel_initializer=init,
            name=f"{name}_conv{i + 1}",
        )(h)
        h = keras.layers.MaxPooling2D(name=f"{name}_pool{i + 1}")(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(dense, activation="relu", kernel_initializer=init)(h)
    outputs = keras.layers.Dense(classes, kernel_initializer=init, name=f"{name}_logits")(h)
    return keras.Model(inputs, outputs, name=name)


def compiled(model, learning_rate=1e-3, metrics=("accuracy",)):
    model.compile(keras.optimizers.Adam(learning_rate), LOSS, metrics=list(metrics))
    return model


def student_net(seed=0, widths=(4, 8), name="s", **kwargs):
    return conv_net(list(widths), 16, name, seed=seed, **kwargs)


def weights_close(a, b, atol):
    for u, v in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_allclose(u, v, atol=atol, rtol=0)


@keras.saving.register_keras_serializable(package="keras_cnn_ext_tests")
class CountCalls(keras.layers.Layer):
    """Identity that counts its executed calls (`per="call"`) or the samples it saw."""

    def __init__(self, per="call", **kwargs):
        super().__init__(**kwargs)
        self.per = per

    def build(self, input_shape):
        self.count = self.add_weight(shape=(), initializer="zeros", trainable=False, name="count")

    def call(self, inputs):
        step = 1.0 if self.per == "call" else keras.ops.cast(keras.ops.shape(inputs)[0], "float32")
        self.count.assign_add(step)
        return inputs

    def get_config(self):
        return {**super().get_config(), "per": self.per}


def counted(model, per="samples", name=None):
    """`model` behind a `CountCalls` layer (the count is `result.get_layer("count").count`)."""
    inputs = keras.Input(model.inputs[0].shape[1:])
    outputs = model(CountCalls(per, name="count")(inputs))
    return keras.Model(inputs, outputs, name=name or f"counted_{model.name}")
