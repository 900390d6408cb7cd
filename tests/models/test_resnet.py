"""ResNet builders: keras.applications/torchvision parameter counts, weight copy, checks."""

import keras
import numpy as np
import pytest
from builder_checks import (
    BUILDER_CHECKS,
    classification_data,
    run_builder_check,
    with_depth_row,
)

from keras_cnn_ext.analysis import profile
from keras_cnn_ext.layers import ResidualBlock
from keras_cnn_ext.models import get_builder, load_keras_applications_weights
from keras_cnn_ext.models.resnet import (
    CIFAR_RESNET_DEPTHS,
    RESNET_DEPTHS,
    ResNet,
    ResNet8,
    ResNet18,
    ResNet20,
    ResNet34,
    ResNet50,
    ResNet50V2,
    ResNet101,
    ResNet101V2,
    ResNet152,
    ResNet152V2,
    SEResNet18,
    SEResNet50,
)


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


# The deeper rows differ from ResNet-50's only in the number of blocks in stage 3 (and 2), whose
# code `test_keras_applications_weights_copy` compares with Keras' ResNet-50: their counts are
# keras.applications' (Keras 3.15 `count_params()`, the same at any input size), without
# building Keras' 100- and 150-layer networks again in every run.
@pytest.mark.parametrize(
    "ours, count",
    [
        (ResNet101, 44_707_176),
        (ResNet152, 60_419_944),
        (ResNet101V2, 44_675_560),
        (ResNet152V2, 60_380_648),
    ],
)
def test_deeper_parameter_counts_equal_keras_applications(ours, count):
    assert ours(input_shape=(32, 32, 3)).count_params() == count


@pytest.mark.parametrize(
    "ours, theirs",
    [(ResNet50, keras.applications.ResNet50), (ResNet50V2, keras.applications.ResNet50V2)],
)
def test_keras_applications_weights_copy(ours, theirs):
    shape = (64, 64, 3)
    model = ours(input_shape=shape, classifier_activation=None)
    reference = theirs(weights=None, input_shape=shape, classifier_activation=None)
    assert model.count_params() == reference.count_params()
    x = np.random.default_rng(0).normal(size=(2, *shape)).astype("float32")
    assert np.abs(model(x, training=False) - reference(x, training=False)).max() > 1e-3
    load_keras_applications_weights(model, reference)
    np.testing.assert_allclose(model(x, training=False), reference(x, training=False), atol=1e-5)


def test_weight_copy_rejects_other_architectures():
    with pytest.raises(ValueError, match="only one of them"):
        load_keras_applications_weights(
            ResNet18(input_shape=(32, 32, 3)),
            keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3)),
        )


@pytest.mark.parametrize("builder, count", [(ResNet18, 11_689_512), (ResNet34, 21_797_672)])
def test_basic_depths_match_torchvision(builder, count):
    # torchvision counts parameters only; Keras also counts BN moving statistics
    # (non-trainable), so compare trainable weights.
    assert _trainable(builder(input_shape=(32, 32, 3))) == count


def _option_a_counts_by_hand(n, classes=10):
    """(trainable parameters, BN channels) of the CIFAR ResNet-(6n + 2), option-A shortcuts."""
    convs = 3 * 3 * 3 * 16 + 2 * n * 3 * 3 * 16 * 16  # stem, stage 1
    convs += 3 * 3 * 16 * 32 + (2 * n - 1) * 3 * 3 * 32 * 32  # stage 2 (option A: no projection)
    convs += 3 * 3 * 32 * 64 + (2 * n - 1) * 3 * 3 * 64 * 64  # stage 3
    bn_channels = 16 + 2 * n * (16 + 32 + 64)
    return convs + 2 * bn_channels + 64 * classes + classes, bn_channels


def test_resnet20_option_a_count_by_hand():
    model = ResNet20(input_shape=(32, 32, 3), classes=10)
    trainable, bn_channels = _option_a_counts_by_hand(3)
    assert _trainable(model) == trainable == 269_722  # "0.27M" (He et al.)
    assert model.count_params() == 269_722 + 2 * bn_channels
    # Option B adds 1x1 projections + BN at the two stage changes.
    b = ResNet20(input_shape=(32, 32, 3), classes=10, shortcut="B")
    assert _trainable(b) - _trainable(model) == 16 * 32 + 2 * 32 + 32 * 64 + 2 * 64


def test_resnet8_is_the_n1_row_of_the_family():
    model = ResNet8(input_shape=(32, 32, 3), classes=10)
    assert model.name == "resnet8"
    assert _trainable(model) == _option_a_counts_by_hand(1)[0] == 75_290
    assert len([w for w in model.trainable_weights if len(w.shape) == 4]) == 7  # 6n + 1 convs


def test_seresnet50_is_hu_et_al():
    # Hu et al.'s SE-ResNet-50 (and timm's seresnet50): no convolution biases, SE of reduction
    # 16 in every block: 28,088,024 parameters. Built with defaults only: the ImageNet size.
    model = SEResNet50()
    assert model.input_shape == (None, 224, 224, 3)
    assert _trainable(model) == 28_088_024
    block = model.get_layer("conv5_block3")
    assert block.attention_layer.hidden_channels(2048) == 2048 // 16
    # The same reduction for `ResNet(attention="se")`, unless the caller sets one.
    small = dict(input_shape=(32, 32, 3), width_multiplier=0.25)
    se = ResNet(18, attention="se", **small).get_layer("conv5_block1")
    assert se.attention_layer.hidden_channels(128) == 8  # make_divisible(128 / 16, 8)
    quarter = ResNet(18, attention="se", attention_kwargs={"ratio": 0.25}, **small)
    assert quarter.get_layer("conv5_block1").attention_layer.hidden_channels(128) == 32


def test_imagenet_default_input_shape_is_keras_applications():
    # keras.applications.ResNet50(weights=None): input (None, 224, 224, 3), 25,636,712 params.
    model = ResNet50(weights=None)
    assert model.input_shape == (None, 224, 224, 3)
    # The profile needs a static input shape; the default now gives one.
    result = profile(model)
    assert result.params == model.count_params() == 25_636_712
    assert ResNet50(include_top=False).input_shape == (None, None, None, 3)
    assert ResNet20().input_shape == (None, 32, 32, 3)  # a CIFAR builder keeps its own size
    assert ResNet20(include_top=False).input_shape == (None, None, None, 3)
    # A global-pooling classifier also accepts unknown sizes when asked for.
    assert ResNet20(input_shape=(None, None, 3)).input_shape == (None, None, None, 3)
    tensor = keras.Input((40, 40, 3))
    assert ResNet20(input_tensor=tensor).input_shape == (None, 40, 40, 3)


def test_cifar_and_imagenet_layouts():
    model = ResNet(56, input_shape=(32, 32, 3), include_top=False)
    assert model.output_shape == (None, 8, 8, 64)
    blocks = [layer for layer in model.layers if isinstance(layer, ResidualBlock)]
    assert len(blocks) == 27 and 6 * 9 + 2 == 56
    v2 = ResNet50V2(input_shape=(64, 64, 3), include_top=False)
    strided = [b.name for b in v2.layers if isinstance(b, ResidualBlock) and b.strides == 2]
    assert strided == ["conv2_block3", "conv3_block4", "conv4_block6"]  # keras.applications
    v1 = ResNet50(input_shape=(64, 64, 3), include_top=False)
    strided = [b.name for b in v1.layers if isinstance(b, ResidualBlock) and b.strides == 2]
    assert strided == ["conv3_block1", "conv4_block1", "conv5_block1"]


@pytest.mark.parametrize("output_stride, size, dilations", [(16, 4, [1, 1, 2]), (8, 8, [2, 2, 4])])
def test_output_stride_dilates_last_stages(output_stride, size, dilations):
    model = ResNet(18, input_shape=(64, 64, 3), include_top=False, output_stride=output_stride)
    assert model.output_shape == (None, size, size, 512)
    blocks = [b for b in model.layers if isinstance(b, ResidualBlock)]
    # conv4_block2, conv5_block1, conv5_block2 (torchvision: the first dilated block keeps
    # the previous dilation).
    assert [b.dilation_rate for b in blocks[-3:]] == dilations


def test_drop_path_schedule_is_linear():
    model = ResNet(20, input_shape=(32, 32, 3), drop_path_rate=0.2, seed=1)
    rates = [b.drop_path_rate for b in model.layers if isinstance(b, ResidualBlock)]
    np.testing.assert_allclose(rates, np.linspace(0, 0.2, 9))


def test_width_multiplier_and_attention():
    model = ResNet(18, input_shape=(32, 32, 3), width_multiplier=0.5, attention="eca")
    blocks = [b for b in model.layers if isinstance(b, ResidualBlock)]
    assert [b.filters for b in blocks[::2]] == [32, 64, 128, 256]
    assert all(b.attention_layer is not None for b in blocks)


def test_registry_and_names():
    assert get_builder("resnet-50") is ResNet50
    assert ResNet50(input_shape=(32, 32, 3)).name == "resnet50"
    assert SEResNet18(input_shape=(32, 32, 3)).name == "seresnet18"
    assert ResNet50V2(input_shape=(32, 32, 3), name="x").name == "x"


def test_weights_file_round_trip(tmp_path):
    model = ResNet20(input_shape=(16, 16, 3), classes=3)
    path = str(tmp_path / "r20.weights.h5")
    model.save_weights(path)
    restored = ResNet20(input_shape=(16, 16, 3), classes=3, weights=path)
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(restored(x, training=False), model(x, training=False), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"depth": 77}, r"`depth` must be one of \[18, 26, 34, 50, 101, 152\]"),
        ({"depth": 50, "version": "v3"}, "`version`"),
        ({"depth": 50, "classes": 0}, "`classes`"),
        ({"depth": 50, "weights": "/no/such/file.weights.h5"}, "`weights`"),
        ({"depth": 20, "shortcut": "C"}, "`shortcut`"),
        ({"depth": 50, "output_stride": 12}, "`output_stride`"),
        ({"depth": 50, "head_pooling": "median"}, "`head_pooling`"),
        ({"depth": 50, "width_multiplier": 0}, "`width_multiplier`"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ResNet(input_shape=(32, 32, 3), **kwargs)


def test_depth_tables_are_consistent():
    for depth, (block, counts) in RESNET_DEPTHS.items():
        per_block = 3 if block == "bottleneck" else 2
        assert per_block * sum(counts) + 2 == depth
    for depth, (_, counts) in CIFAR_RESNET_DEPTHS.items():
        assert 2 * sum(counts) + 2 == depth


# Every builder path, on small widths and inputs: CIFAR option A (v1 basic), SE + drop path
# + max head (v1 basic, ImageNet stem), v1 bottleneck with ECA and a dilated last stage, v2.
# The block code is the same at every depth, so each path runs on a shortened depth row. The two
# paths XLA compiles whole use one block per stage (ResNet-8; SE-ResNet-18's row patched): stage
# 1's identity and the later stages' projection shortcuts, in half the compile time of ResNet-20
# and SE-ResNet-18. The bottleneck paths use ResNet-26's row cut from 8 blocks to 5: a second
# block in the dilated last stage (its dilation differs from the first block's) for v1, and in
# stage 1 for v2, so that each has an identity shortcut beside the projections.
BUILDS = {
    "resnet8": lambda: ResNet8(input_shape=(16, 16, 3), classes=3),
    "seresnet18_droppath_one_block": with_depth_row(
        RESNET_DEPTHS,
        18,
        ("basic", (1, 1, 1, 1)),
        lambda: SEResNet18(
            input_shape=(32, 32, 3),
            classes=3,
            width_multiplier=0.25,
            drop_path_rate=0.1,
            head_pooling="max",
            seed=0,
        ),
    ),
    "resnet26_eca_os16": with_depth_row(
        RESNET_DEPTHS,
        26,
        ("bottleneck", (1, 1, 1, 2)),
        lambda: ResNet(
            26,
            input_shape=(32, 32, 3),
            classes=3,
            width_multiplier=0.125,
            attention="eca",
            output_stride=16,
        ),
    ),
    "resnet26v2": with_depth_row(
        RESNET_DEPTHS,
        26,
        ("bottleneck", (2, 1, 1, 1)),
        lambda: ResNet(
            26, version="v2", input_shape=(32, 32, 3), classes=3, width_multiplier=0.125
        ),
    ),
}


# XLA compiles a whole training step of the CIFAR and the SE + DropPath ImageNet-stem variants;
# the bottleneck variants add ECA, dilation and pre-activation ordering, which the layer contract
# compiles with XLA layer by layer, and train their step as a plain tf.function.
_TF_FUNCTION_TRAIN = ("resnet26_eca_os16", "resnet26v2")
CHECKS = [
    (build, "train" if check == "train_xla" and build in _TF_FUNCTION_TRAIN else check)
    for build in sorted(BUILDS)
    for check in BUILDER_CHECKS
]


@pytest.mark.parametrize("build, check", CHECKS)
def test_builder_checks(build, check):
    model_fn = BUILDS[build]
    shape = (16, 16, 3) if build == "resnet8" else (32, 32, 3)
    x, y = classification_data(shape, 3)
    run_builder_check(check, model_fn, x, y, "categorical_crossentropy")


@pytest.mark.parametrize(
    "head_pooling, needs",
    [
        ("max", None),
        ("adaptive_avg", "AdaptiveAveragePooling2D"),
        ("adaptive_max", "AdaptiveMaxPooling2D"),
        ("fractional", "FractionalMaxPooling2D"),
    ],
)
def test_head_poolings(head_pooling, needs):
    import keras_cnn_ext.layers as ext_layers

    if needs and not hasattr(ext_layers, needs):
        pytest.skip(f"{needs} is not in this checkout yet")
    model = ResNet20(input_shape=(16, 16, 3), classes=4, head_pooling=head_pooling)
    reference = ResNet20(input_shape=(16, 16, 3), classes=4)
    assert model.count_params() == reference.count_params()
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype("float32")
    reference.set_weights(model.get_weights())
    y = model(x, training=False)
    assert y.shape == (2, 4)
    if head_pooling == "adaptive_avg":  # a 1x1 adaptive average is the global average
        np.testing.assert_allclose(y, reference(x, training=False), atol=1e-6)
