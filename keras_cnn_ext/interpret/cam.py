"""Class activation maps: Grad-CAM, Grad-CAM++ and guided Grad-CAM."""

from __future__ import annotations

import tensorflow as tf

from keras_cnn_ext.interpret.attribution import LayerAttribution, _check_reduction
from keras_cnn_ext.interpret.gradients import GuidedBackprop


class GradCAM(LayerAttribution):
    """Grad-CAM (Selvaraju et al. 2017): `ReLU(sum_k alpha_k^c A^k)`, upsampled to the input size.

    `alpha_k^c` is the spatial mean of `d y_c / d A^k` over the target layer's activations `A`.
    The target layer is found automatically (the last layer with a 4-D output, inside a nested
    base model if that is where it is) or named, `"base/conv_pw_13"` for a layer of a nested model.

    Args:
        model: a built `keras.Model` returning `(batch, classes)` scores.
        layer: the target layer name, `"outer/inner"` path, layer instance, or None (automatic).
        relu: apply the ReLU of the paper (default True); False keeps negative evidence.
        upsample: resize the maps to the input's height and width (default True).
        interpolation, batch_size, jit_compile, data_format: see `LayerAttribution`/`Attribution`.

    Example:

    >>> model = keras.Sequential([keras.Input((16, 16, 1)),
    ...                           keras.layers.Conv2D(4, 3, activation="relu", name="features"),
    ...                           keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    >>> cam = GradCAM(model)
    >>> cam.layer_name, cam.attribute(np.ones((3, 16, 16, 1), "float32")).shape
    ('features', (3, 16, 16))
    """

    def __init__(self, model, layer=None, *, relu=True, upsample=True, **kwargs):
        super().__init__(model, layer, **kwargs)
        self.relu = bool(relu)
        self.upsample_maps = bool(upsample)

    def channel_weights(self, activations, grads):
        """`alpha_k^c`, shape (batch, channels): the spatial mean of the gradients."""
        return tf.reduce_mean(grads, axis=(1, 2))

    def _attribute_batch(self, images, indices):
        activations, grads, _ = self.layer_gradients(images, indices)
        weights = self.channel_weights(activations, grads)
        maps = tf.einsum("bhwk,bk->bhw", activations, weights)
        if self.relu:
            maps = tf.nn.relu(maps)
        if self.upsample_maps:
            return self.upsample(maps, self._spatial_shape(images))
        return maps.numpy()


class GradCAMPlusPlus(GradCAM):
    """Grad-CAM++ (Chattopadhay et al. 2018): pixel-weighted positive gradients.

    With `g = d y_c / d A^k` and the exponential-score closed form of the paper (eq. 19), the
    weight of location (i, j) is `a_ij = g^2 / (2 g^2 + sum_ab A_ab g^3)` and
    `w_k = sum_ij a_ij ReLU(g_ij)`; the map is `ReLU(sum_k w_k A^k)`.
    Arguments as `GradCAM`.
    """

    def channel_weights(self, activations, grads):
        grads2 = tf.square(grads)
        grads3 = grads2 * grads
        spatial_sum = tf.reduce_sum(activations, axis=(1, 2), keepdims=True)
        denominator = 2.0 * grads2 + spatial_sum * grads3
        denominator = tf.where(denominator != 0, denominator, tf.ones_like(denominator))
        alphas = grads2 / denominator
        return tf.reduce_sum(alphas * tf.nn.relu(grads), axis=(1, 2))


class GuidedGradCAM(GradCAM):
    """Guided Grad-CAM (Selvaraju et al. 2017): guided backprop times the upsampled Grad-CAM.

    Args:
        model: a built `keras.Model` returning `(batch, classes)` scores.
        layer: the Grad-CAM target layer (as in `GradCAM`).
        reduction: channel reduction of the product: `"max_abs"` (default), `"abs_sum"`, `"sum"`
            or `"none"` (input-shaped).
        interpolation, batch_size, jit_compile, data_format: see `LayerAttribution`.
    """

    def __init__(self, model, layer=None, *, reduction="max_abs", **kwargs):
        super().__init__(model, layer, **kwargs)
        self.reduction = _check_reduction(reduction)
        self.guided_backprop = GuidedBackprop(
            model,
            reduction="none",
            batch_size=self.batch_size,
            jit_compile=self.jit_compile,
            data_format=self.data_format,
        )

    def _attribute_batch(self, images, indices):
        cam = super()._attribute_batch(images, indices)
        guided = self.guided_backprop._attribute_batch(images, indices)
        cam = cam[..., None] if self.data_format == "channels_last" else cam[:, None]
        return self._reduce(guided * cam, self.reduction)
