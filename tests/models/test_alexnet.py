import gc

import keras
import numpy as np
import pytest
from builder_checks import BUILDER_CHECKS, classification_data, run_builder_check

from keras_cnn_ext.models import AlexNet, get_builder


def _conv(k, c_in, c_out, groups=1):
    return k * k * (c_in // groups) * c_out + c_out


def _dense(n_in, n_out):
    return n_in * n_out + n_out


# Hand computations of the published counts (1000 classes, 6x6x256 final feature map).
_FC = _dense(6 * 6 * 256, 4096) + _dense(4096, 4096) + _dense(4096, 1000)


def _hand(filters, groups=(1, 1, 1, 1, 1), kernels=(11, 5, 3, 3, 3)):
    total, c_in = _FC, 3
    for k, f, g in zip(kernels, filters, groups, strict=True):
        total, c_in = total + _conv(k, c_in, f, g), f
    return total


HAND = {
    # Krizhevsky et al. 2012, two GPUs (conv2, conv4, conv5 grouped): the cited 60,965,224.
    "paper": _hand((96, 256, 384, 384, 256), groups=(1, 2, 1, 2, 2)),
    "single": _hand((96, 256, 384, 384, 256)),
    # torchvision.models.alexnet: 61,100,840 in its documentation.
    "torchvision": _hand((64, 192, 384, 256, 256)),
}
PUBLISHED = {"paper": 60_965_224, "single": 62_378_344, "torchvision": 61_100_840}


@pytest.mark.parametrize("variant", ["paper", "single", "torchvision"])
def test_param_counts(variant):
    assert HAND[variant] == PUBLISHED[variant]
    model = AlexNet(variant)
    assert model.count_params() == PUBLISHED[variant]
    assert model.get_layer("block3_pool").output.shape == (None, 6, 6, 256)
    del model
    gc.collect()


def test_feature_map_sizes_follow_the_paper():
    model = AlexNet(include_top=False, input_shape=(227, 227, 3))
    assert model.input_shape == (None, 227, 227, 3)
    sizes = [model.get_layer(n).output.shape[1] for n in ("block1_conv1", "block1_pool")]
    assert sizes == [55, 27]
    assert model.get_layer("block2_conv1").groups == 2
    assert model.get_layer("block2_conv1").__class__.__name__ == "GroupedConv2D"


def test_options():
    model = AlexNet(
        include_top=False,
        input_shape=(67, 67, 3),
        pooling="avg",
        norm="batch",
        width_multiplier=0.5,
    )
    assert model.output_shape == (None, 128)
    assert isinstance(model.get_layer("block1_conv1_bn"), keras.layers.BatchNormalization)
    assert get_builder("alexnet") is AlexNet


def test_bad_input():
    with pytest.raises(ValueError, match="`variant` must be one of"):
        AlexNet("caffenet")
    with pytest.raises(ValueError, match="`block3_pool`.*minimum input size is 67x67"):
        AlexNet(input_shape=(66, 66, 3))
    with pytest.raises(ValueError, match="minimum input size is 63x63"):
        AlexNet("torchvision", input_shape=(62, 100, 3))
    with pytest.raises(ValueError, match="`classes`"):
        AlexNet(classes=-1)


X, Y = classification_data((67, 67, 3), 4)


# The checks on the paper's network (grouped convolutions, LRN). Both variants' exports,
# torchvision's with its adaptive head included, are in tests/export/test_coverage.py.
@pytest.mark.parametrize("check", BUILDER_CHECKS)
def test_builder_checks(check):
    def build():
        return AlexNet(
            "paper", input_shape=(67, 67, 3), classes=4, width_multiplier=0.125, fc_units=(16, 16)
        )

    run_builder_check(check, build, X, Y, "categorical_crossentropy")


def test_output_is_a_distribution():
    out = np.asarray(AlexNet(input_shape=(67, 67, 3), classes=4, fc_units=(8, 8))(X))
    np.testing.assert_allclose(out.sum(axis=-1), 1.0, atol=1e-5)


def test_local_response_normalization_placement():
    names = [layer.name for layer in AlexNet(input_shape=(67, 67, 3), fc_units=(8, 8)).layers]
    # Section 3.5: ReLU, then response normalisation, then max pooling (conv1 and conv2).
    for block in (1, 2):
        i = names.index(f"block{block}_conv1_relu")
        assert names[i + 1 : i + 3] == [f"block{block}_lrn", f"block{block}_pool"]
    for model in (
        AlexNet(input_shape=(67, 67, 3), fc_units=(8, 8), lrn=False),
        AlexNet("torchvision", input_shape=(67, 67, 3), fc_units=(8, 8)),
    ):
        assert not any(layer.name.endswith("_lrn") for layer in model.layers)


def test_adaptive_head_keeps_the_published_count_for_any_size():
    model = AlexNet("torchvision", head_pooling="adaptive_avg", input_shape=(100, 90, 3))
    assert model.count_params() == PUBLISHED["torchvision"]
    assert model.get_layer("head_pool").output.shape == (None, 6, 6, 256)
    with pytest.raises(ValueError, match="`head_pooling` must be one of"):
        AlexNet(head_pooling="avg")
