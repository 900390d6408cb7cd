import keras
import numpy as np
import pytest

from keras_cnn_ext.layers import GroupBatchNormalization
from keras_cnn_ext.ops.group_conv import transform_group_map
from keras_cnn_ext.testing import CONTRACT_CHECKS, LayerSpec, run_contract_check

SPEC = LayerSpec(
    GroupBatchNormalization,
    {"group": "p4"},
    input_shape=(4, 3, 3, 8),
    expected_output_shape=(4, 3, 3, 8),
    training_changes_output=True,
    expected_trainable_weights=2,
    expected_non_trainable_weights=2,
)


@pytest.mark.parametrize("check", CONTRACT_CHECKS)
def test_contract(check):
    run_contract_check(check, SPEC)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_statistics_are_shared_over_the_group_axis(data_format):
    x = np.random.default_rng(0).normal(size=(4, 5, 5, 3, 8)) * np.arange(1, 9)
    x = x.reshape(4, 5, 5, 24).astype("float32")
    if data_format == "channels_first":
        x = x.transpose(0, 3, 1, 2)
    bn = GroupBatchNormalization("p4m", data_format=data_format, momentum=0.0)
    y = np.asarray(bn(x, training=True))
    fields = (
        x.reshape(4, 5, 5, 3, 8) if data_format == "channels_last" else x.reshape(4, 3, 8, 5, 5)
    )
    axes = (0, 1, 2, 4) if data_format == "channels_last" else (0, 2, 3, 4)
    np.testing.assert_allclose(np.asarray(bn.moving_mean), fields.mean(axes), atol=1e-5)
    expected = (fields - fields.mean(axes, keepdims=True)) / np.sqrt(
        fields.var(axes, keepdims=True) + bn.epsilon
    )
    np.testing.assert_allclose(y, expected.reshape(x.shape), atol=1e-4)
    for g in range(8):
        for training in (True, False):
            np.testing.assert_allclose(
                bn(transform_group_map(x, g, "p4m", data_format), training=training),
                transform_group_map(bn(x, training=training), g, "p4m", data_format),
                atol=1e-5,
            )
    if data_format == "channels_last":  # a plain BN's per-channel moving statistics are not shared
        plain = keras.layers.BatchNormalization(momentum=0.0)
        plain(x, training=True)
        moved = transform_group_map(x, 1, "p4m")
        assert not np.allclose(plain(moved), transform_group_map(plain(x), 1, "p4m"), atol=1e-3)


def test_bad_input():
    with pytest.raises(TypeError, match="`axis`"):
        GroupBatchNormalization(axis=1)
    with pytest.raises(ValueError, match="`group`"):
        GroupBatchNormalization(group="p3")
    with pytest.raises(ValueError, match="multiple of \\|G\\| = 4"):
        GroupBatchNormalization()(np.ones((2, 2, 2, 6), "float32"))
