"""Architecture builders from configuration tables."""

from keras_cnn_ext.models.alexnet import AlexNet  # noqa: F401
from keras_cnn_ext.models.densenet import (  # noqa: F401
    DenseNet,
    DenseNet121,
    DenseNet169,
    DenseNet201,
    DenseNet264,
    DenseNetBC,
)
from keras_cnn_ext.models.group_cnn import P4CNN, P4MCNN, GroupCNN  # noqa: F401
from keras_cnn_ext.models.lenet import LeNet5  # noqa: F401
from keras_cnn_ext.models.mobilenet import MobileNetV1  # noqa: F401
from keras_cnn_ext.models.registry import get_builder, list_builders, register_builder  # noqa: F401
from keras_cnn_ext.models.resnet import (  # noqa: F401
    ResNet,
    ResNet8,
    ResNet18,
    ResNet18V2,
    ResNet20,
    ResNet26,
    ResNet26V2,
    ResNet32,
    ResNet34,
    ResNet34V2,
    ResNet44,
    ResNet50,
    ResNet50V2,
    ResNet56,
    ResNet101,
    ResNet101V2,
    ResNet110,
    ResNet152,
    ResNet152V2,
    SEResNet18,
    SEResNet26,
    SEResNet34,
    SEResNet50,
    SEResNet101,
    SEResNet152,
)
from keras_cnn_ext.models.unet import UNet  # noqa: F401
from keras_cnn_ext.models.vgg import VGG, VGG11, VGG13, VGG16, VGG19  # noqa: F401
from keras_cnn_ext.models.weights import copy_weights, load_keras_applications_weights  # noqa: F401
