import numpy as np
import pytest

from keras_cnn_ext.layers import GroupPooling
from keras_cnn_ext.ops.group_conv import transform_group_map, transform_image
from keras_cnn_ext.testing import CONTRACT_CHECKS, LayerSpec, run_contract_check

SPEC = LayerSpec(
    GroupPooling,
    {"group": "p4", "reduction": "max"},
    input_shape=(2, 4, 4, 8),
    expected_output_shape=(2, 4, 4, 2),
    expected_trainable_weights=0,
)


@pytest.mark.parametrize("check", CONTRACT_CHECKS)
def test_contract(check):
    run_contract_check(check, SPEC)


@pytest.mark.parametrize("reduction", ["max", "avg"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_pooled_maps_transform_like_images(reduction, data_format):
    x = np.random.default_rng(0).normal(size=(2, 5, 5, 16)).astype("float32")
    if data_format == "channels_first":
        x = x.transpose(0, 3, 1, 2)
    pool = GroupPooling("p4m", reduction, data_format)
    y = pool(x)
    assert y.shape[1 if data_format == "channels_first" else 3] == 2
    for g in range(8):
        np.testing.assert_allclose(
            pool(transform_group_map(x, g, "p4m", data_format)),
            transform_image(y, g, "p4m", data_format),
            atol=1e-6,
        )


def test_bad_input():
    with pytest.raises(ValueError, match="`reduction`"):
        GroupPooling(reduction="sum")
    with pytest.raises(ValueError, match="`group`"):
        GroupPooling(group="c4")
    with pytest.raises(ValueError, match="multiple of \\|G\\| = 8"):
        GroupPooling("p4m")(np.ones((1, 2, 2, 12), "float32"))
