"""Spatial dropout: Keras' own `SpatialDropout2D`, re-exported (not re-implemented).

`keras.layers.SpatialDropout2D` (Tompson et al., 2015) drops whole channel maps with
probability `rate` and scales the rest by `1 / (1 - rate)`; it is available here as
`keras_cnn_ext.layers.SpatialDropout2D` so the regularizers are found in one place.

Caveat under `tf.distribute` (measured, Keras 3.15.1, MirroredStrategy on 2 replicas, and
asserted in `tests/layers/test_spatial_dropout.py`): it draws its mask with
`keras.random.dropout(..., seed=SeedGenerator)`, whose state is mirrored, so **every replica
drops the same channels of the same samples** (given identical sub-batch shapes). The
replicas' gradients are then correlated and the effective randomness of a step is that of
one replica. If that matters, `DropBlock2D(rate, block_size=<map size>)` is a replica-safe
spatial dropout (it folds the replica id into its seed; it rescales by numel / kept over the
batch rather than by 1 / (1 - rate)).
"""

from keras.layers import SpatialDropout2D  # noqa: F401 (re-export)
