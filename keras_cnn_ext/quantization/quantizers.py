"""Fake quantizers: symmetric last-value weight quantizers and the moving-average activation one.

Both call TF's `fake_quant_with_min_max_vars(_per_channel)`, the ops the TFLite converter reads
ranges from (Keras' `keras.quantizers.fake_quant_with_min_max_vars` maps to the same ops).
"""

from __future__ import annotations

import keras
import tensorflow as tf

# The smallest weight range: an all-zero channel would give a zero scale (a NaN fake quant).
_MIN_RANGE = 1e-8


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class WeightQuantizer:
    """Symmetric 8-bit fake quantization of a weight from its current extremes (last value).

    TFMOT's default 8-bit scheme for conv weights (`LastValueQuantizer(8, per_axis=True,
    symmetric=True, narrow_range=True)`): the range is `[-m, m]` with `m = max |w|` over the
    channel (per axis) or the whole tensor, the integers `[-127, 127]`, the zero point 0.

    Args:
        per_axis: one range per output channel (the last axis). Default True.
        depthwise: the weight is a `DepthwiseConv2D` kernel `(kh, kw, in, multiplier)`: the
            channels are the flattened `in * multiplier` axis, TFLite's depthwise output
            channels (TFMOT uses the multiplier axis instead, its issue #808). Default False.
        num_bits: bit width. Default 8.
        narrow_range: use `[-127, 127]`. Default True.
    """

    def __init__(self, per_axis=True, depthwise=False, num_bits=8, narrow_range=True):
        self.per_axis = bool(per_axis)
        self.depthwise = bool(depthwise)
        self.num_bits = int(num_bits)
        self.narrow_range = bool(narrow_range)

    def ranges(self, weight):
        """The `(min, max)` the fake quant uses for `weight`: per channel or scalars."""
        # The range is a statistic, not a function to differentiate: TFMOT assigns it to a
        # variable and reads that back, so no gradient reaches the weight through it.
        w = tf.stop_gradient(self._channels_last(weight))
        axes = list(range(len(w.shape) - 1)) if self.per_axis else None
        bound = tf.maximum(tf.reduce_max(tf.abs(w), axis=axes), _MIN_RANGE)
        return -bound, bound

    def _channels_last(self, weight):
        weight = tf.convert_to_tensor(weight)
        if self.depthwise:
            kh, kw, cin, mult = weight.shape
            return tf.reshape(weight, (kh, kw, 1, cin * mult))
        return weight

    def __call__(self, weight):
        w = self._channels_last(weight)
        lo, hi = self.ranges(weight)
        if self.per_axis:
            q = tf.quantization.fake_quant_with_min_max_vars_per_channel(
                w, lo, hi, num_bits=self.num_bits, narrow_range=self.narrow_range, name="fq"
            )
        else:
            q = tf.quantization.fake_quant_with_min_max_vars(
                w, lo, hi, num_bits=self.num_bits, narrow_range=self.narrow_range, name="fq"
            )
        return tf.reshape(q, tf.shape(weight)) if self.depthwise else q

    def get_config(self):
        return {
            "per_axis": self.per_axis,
            "depthwise": self.depthwise,
            "num_bits": self.num_bits,
            "narrow_range": self.narrow_range,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"WeightQuantizer({args})"


def cross_replica_min_max(values):
    """Global `(min, max)` of `values` over every replica of a `tf.distribute` strategy.

    A statistic updated in `call` is per replica by default: each replica would average its
    own sub-batch's extremes and reads would return replica 0's. Gathering the per-replica
    extremes first gives every replica the full batch's, as single-device training sees.
    """
    lo = tf.reduce_min(values)
    hi = tf.reduce_max(values)
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        gathered = context.all_gather(tf.stack([lo, hi])[None], axis=0)
        lo = tf.reduce_min(gathered[:, 0])
        hi = tf.reduce_max(gathered[:, 1])
    return lo, hi


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class FakeQuant(keras.layers.Layer):
    """Per-tensor asymmetric 8-bit fake quantization with moving-average min/max.

    TFMOT's `MovingAverageQuantizer(8, per_axis=False, symmetric=False, narrow_range=False)`:
    in training, the batch's minimum and maximum (widened to contain 0) update exponential
    moving averages `v = decay * v + (1 - decay) * batch`, initialised from the first batch;
    the input is fake-quantized with the updated range. At inference, and once `frozen`, the
    stored range is used unchanged. Under `tf.distribute` the extremes are reduced over the
    replicas before the update, so every replica holds the same range as single-device
    training.

    Args:
        ema_decay: the moving averages' decay. Default 0.999.
        num_bits: bit width. Default 8.
        narrow_range: use `[1, 255]` instead of `[0, 255]`. Default False.
        frozen: start with the range frozen (see `FreezeQuantizationRanges`). Default False.
        fixed_range: a constant `(min, max)` instead of a learned one, e.g. `(0, 255 / 256)`
            after a sigmoid, the range TFLite's int8 LOGISTIC always outputs. Default None.

    Input shape:
        Any float tensor. Output shape: the same.

    Example:

    >>> fq = FakeQuant()
    >>> _ = fq(keras.ops.convert_to_tensor([[-1.0, 0.5, 3.0]]), training=True)
    >>> [round(float(v), 3) for v in (fq.range_min, fq.range_max)]
    [-1.0, 3.0]
    """

    def __init__(
        self,
        ema_decay=0.999,
        num_bits=8,
        narrow_range=False,
        frozen=False,
        fixed_range=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not 0.0 <= float(ema_decay) < 1.0:
            raise ValueError(f"`ema_decay` must be in [0, 1). Received: ema_decay={ema_decay!r}")
        if fixed_range is not None:
            lo, hi = (float(v) for v in fixed_range)
            if not lo <= 0.0 <= hi or lo == hi:
                raise ValueError(
                    "`fixed_range` must be a (min, max) pair with min <= 0 <= max, min < max. "
                    f"Received: fixed_range={fixed_range!r}"
                )
            fixed_range = (lo, hi)
        self.ema_decay = float(ema_decay)
        self.num_bits = int(num_bits)
        self.narrow_range = bool(narrow_range)
        self.fixed_range = fixed_range
        self.frozen = bool(frozen) or fixed_range is not None

    def build(self, input_shape):
        def stat(name, value):
            # "mean" lets replicas assign in replica context; their values are equal already.
            return self.add_weight(
                name=name,
                shape=(),
                initializer=keras.initializers.Constant(value),
                trainable=False,
                aggregation="mean",
            )

        # TFMOT's initial range, used only before the first training batch.
        lo, hi = self.fixed_range or (-6.0, 6.0)
        self.range_min = stat("range_min", lo)
        self.range_max = stat("range_max", hi)
        self.initialized = stat("initialized", 0.0 if self.fixed_range is None else 1.0)

    def call(self, inputs, training=None):
        x = tf.cast(inputs, tf.float32)
        if training and not self.frozen:
            # The batch's extremes only update the range: as in TFMOT (which assigns the moving
            # averages and reads the variables back), no gradient flows through them.
            lo, hi = cross_replica_min_max(tf.stop_gradient(x))
            lo, hi = tf.minimum(lo, 0.0), tf.maximum(hi, 0.0)
            # `decay * v + (1 - decay) * batch`, or the batch's value before the first update.
            decay = self.ema_decay * tf.convert_to_tensor(self.initialized)
            new_min = lo + decay * (tf.convert_to_tensor(self.range_min) - lo)
            new_max = hi + decay * (tf.convert_to_tensor(self.range_max) - hi)
            self.range_min.assign(new_min)
            self.range_max.assign(new_max)
            self.initialized.assign(1.0)
        else:
            new_min = tf.convert_to_tensor(self.range_min)
            new_max = tf.convert_to_tensor(self.range_max)
        # Short op names: the converter writes every fused op's name into the file.
        out = tf.quantization.fake_quant_with_min_max_vars(
            x, new_min, new_max, num_bits=self.num_bits, narrow_range=self.narrow_range, name="fq"
        )
        return tf.cast(out, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "ema_decay": self.ema_decay,
                "num_bits": self.num_bits,
                "narrow_range": self.narrow_range,
                "frozen": self.frozen,
                "fixed_range": self.fixed_range,
            }
        )
        return config
