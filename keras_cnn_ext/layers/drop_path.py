"""DropPath: per-sample stochastic depth (Huang et al., 2016)."""

from __future__ import annotations

import keras

from keras_cnn_ext.layers.base import Layer
from keras_cnn_ext.ops.drop_path import drop_path, drop_path_rates  # noqa: F401 (re-export)
from keras_cnn_ext.utils import check_rate, check_seed, replica_seed


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class DropPath(Layer):
    """Drops a residual branch for random samples of the batch during training.

    Stochastic depth (Huang et al., 2016, "Deep networks with stochastic depth"): put it on
    the residual branch, `x + DropPath(rate)(branch(x))`. Each sample's branch is zeroed with
    probability `rate` and kept samples are scaled by `1 / (1 - rate)`, so the expectation is
    unchanged and the layer is the identity at inference. This is the per-sample, inverted
    convention of timm's `DropPath`, torchvision's `StochasticDepth(mode="row")` and TF Model
    Garden (not old TF-Addons' per-batch drop with test-time scaling). Masks are drawn with
    stateless ops seeded per replica, so replicas of a `tf.distribute` strategy drop
    different samples. `drop_path_rates(max_rate, num_blocks)` gives the usual linear
    schedule of rates over a network's blocks.

    Args:
        rate: float in [0, 1), the probability of dropping a sample's branch.
        seed: int or `None`, for reproducible masks.

    Input shape:
        Any tensor of rank >= 2 whose first axis is the batch.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.ops.ones((4, 8, 8, 16))
    >>> y = DropPath(rate=0.5, seed=1)(x, training=True)
    >>> tuple(y.shape)
    (4, 8, 8, 16)
    """

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = check_rate(rate)
        self.seed = check_seed(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        self.supports_masking = True

    def build(self, input_shape):
        if len(input_shape) < 2:
            raise ValueError(
                "`inputs` must have rank >= 2 (a batch axis and at least one more). "
                f"Received shape: {tuple(input_shape)}"
            )

    def call(self, inputs, training=None):
        if not training or self.rate == 0.0:
            return inputs
        return drop_path(inputs, self.rate, replica_seed(self.seed_generator.next()))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "seed": self.seed})
        return config
