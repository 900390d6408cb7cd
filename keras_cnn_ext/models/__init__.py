"""Architecture builders from configuration tables."""

from keras_cnn_ext.models.alexnet import AlexNet  # noqa: F401
from keras_cnn_ext.models.lenet import LeNet5  # noqa: F401
from keras_cnn_ext.models.mobilenet import MobileNetV1  # noqa: F401
from keras_cnn_ext.models.registry import get_builder, list_builders, register_builder  # noqa: F401
from keras_cnn_ext.models.unet import UNet  # noqa: F401
from keras_cnn_ext.models.vgg import VGG, VGG11, VGG13, VGG16, VGG19  # noqa: F401
