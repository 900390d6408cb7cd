"""Every method by name, and one function per method with the same calling convention.

`saliency(model, images, class_index=None, **options)` is `Saliency(model, **options)
.attribute(images, class_index)`. Each call builds the method anew and traces its gradients again;
to explain many batches, build the class once (`Saliency(model)`) and call its `attribute`, which
reuses the compiled functions.
"""

from __future__ import annotations

from keras_cnn_ext.interpret.cam import GradCAM, GradCAMPlusPlus, GuidedGradCAM
from keras_cnn_ext.interpret.gradients import (
    GuidedBackprop,
    IntegratedGradients,
    Saliency,
    SmoothGrad,
)
from keras_cnn_ext.interpret.occlusion import Occlusion

METHODS = {
    "saliency": Saliency,
    "integrated_gradients": IntegratedGradients,
    "guided_backprop": GuidedBackprop,
    "grad_cam": GradCAM,
    "grad_cam_plus_plus": GradCAMPlusPlus,
    "guided_grad_cam": GuidedGradCAM,
    "occlusion": Occlusion,
}
# Methods whose constructor takes a target `layer`.
LAYER_METHODS = ("grad_cam", "grad_cam_plus_plus", "guided_grad_cam")


def get_method(name):
    """Returns the attribution class registered under `name` (see `METHODS`)."""
    if isinstance(name, type) and name in METHODS.values():
        return name
    if name not in METHODS:
        raise ValueError(f"`method` must be one of {sorted(METHODS)}. Received: {name!r}")
    return METHODS[name]


def build_method(model, method, **options):
    """Returns `METHODS[method](model, **options)` (`method` a name or one of those classes)."""
    return get_method(method)(model, **options)


def explain(model, images, method="grad_cam", class_index=None, **options):
    """Runs the method named `method` on `images`; `options` go to its constructor."""
    return build_method(model, method, **options).attribute(images, class_index)


def saliency(model, images, class_index=None, **options):
    """Vanilla-gradient maps `max_c |dy/dx|`, shape (batch, height, width). See `Saliency`."""
    return explain(model, images, "saliency", class_index, **options)


def integrated_gradients(
    model, images, class_index=None, baseline=None, return_convergence_delta=False, **options
):
    """Integrated-gradients maps, with the completeness error per image on request.

    See `IntegratedGradients` for `steps` and `integration` (the quadrature), passed in `options`.
    """
    return build_method(model, "integrated_gradients", **options).attribute(
        images, class_index, baseline=baseline, return_convergence_delta=return_convergence_delta
    )


def guided_backprop(model, images, class_index=None, **options):
    """Guided-backpropagation maps; the model is never changed. See `GuidedBackprop`."""
    return explain(model, images, "guided_backprop", class_index, **options)


def grad_cam(model, images, class_index=None, layer=None, **options):
    """Grad-CAM maps upsampled to the input size. See `GradCAM`."""
    return explain(model, images, "grad_cam", class_index, layer=layer, **options)


def grad_cam_plus_plus(model, images, class_index=None, layer=None, **options):
    """Grad-CAM++ maps upsampled to the input size. See `GradCAMPlusPlus`."""
    return explain(model, images, "grad_cam_plus_plus", class_index, layer=layer, **options)


def guided_grad_cam(model, images, class_index=None, layer=None, **options):
    """Guided Grad-CAM maps (guided backprop times Grad-CAM). See `GuidedGradCAM`."""
    return explain(model, images, "guided_grad_cam", class_index, layer=layer, **options)


def occlusion(model, images, class_index=None, **options):
    """Occlusion maps (score drop per occluded window). See `Occlusion`."""
    return explain(model, images, "occlusion", class_index, **options)


def smoothgrad(
    model,
    images,
    class_index=None,
    method="saliency",
    samples=25,
    noise_level=0.15,
    kind="smoothgrad",
    seed=None,
    **method_options,
):
    """A noise tunnel over any method (default saliency). See `SmoothGrad`.

    `method` is a name from `METHODS` (its `method_options` go to its constructor) or an
    attribution instance built on `model`.
    """
    base = method if not isinstance(method, str) else build_method(model, method, **method_options)
    if getattr(base, "model", model) is not model:
        raise ValueError("`method` must be built on the same `model` that is passed.")
    tunnel = SmoothGrad(base, samples=samples, noise_level=noise_level, kind=kind, seed=seed)
    return tunnel.attribute(images, class_index)
