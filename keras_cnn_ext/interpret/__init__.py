"""Attributions for Keras 3 CNNs: gradients, guided backprop, Grad-CAM/Grad-CAM++, occlusion.

Every method is a class built once on a model and called as `attribute(images, class_index=None)`
(the design of Captum's attribution classes), with a function of the same name for one-off use:

```python
from keras_cnn_ext import interpret

maps = interpret.grad_cam(model, images)                       # top prediction, auto layer
maps = interpret.GradCAM(model, layer="base/conv_pw_13").attribute(images, class_index=3)
smooth = interpret.smoothgrad(model, images, method="integrated_gradients", samples=8)
interpret.overlay(images[0], maps[0], path="cam.png")
```

Sequential, Functional, nested (a `keras.applications` base inside a Functional model) and
subclassed models work; the model is never modified. Sanity checks: `model_randomization_test`
(Adebayo et al. 2018) and `deletion_insertion_curves` (Petsiuk et al. 2018).
"""

from keras_cnn_ext.interpret.attribution import (  # noqa: F401
    Attribution,
    GradientAttribution,
    LayerAttribution,
)
from keras_cnn_ext.interpret.cam import GradCAM, GradCAMPlusPlus, GuidedGradCAM  # noqa: F401
from keras_cnn_ext.interpret.cli import explain_file, load_image  # noqa: F401
from keras_cnn_ext.interpret.gradients import (  # noqa: F401
    INTEGRATION_METHODS,
    GuidedBackprop,
    IntegratedGradients,
    Saliency,
    SmoothGrad,
)
from keras_cnn_ext.interpret.methods import (  # noqa: F401
    METHODS,
    build_method,
    explain,
    get_method,
    grad_cam,
    grad_cam_plus_plus,
    guided_backprop,
    guided_grad_cam,
    integrated_gradients,
    occlusion,
    saliency,
    smoothgrad,
)
from keras_cnn_ext.interpret.occlusion import Occlusion  # noqa: F401
from keras_cnn_ext.interpret.plot import normalize_map, overlay, plot_grid  # noqa: F401
from keras_cnn_ext.interpret.sanity import (  # noqa: F401
    deletion_insertion_curves,
    model_randomization_test,
    rank_correlation,
)
