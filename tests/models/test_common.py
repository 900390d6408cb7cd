"""`keras_cnn_ext.models.common` keeps the names it held before the split."""

from keras_cnn_ext.models import builder, common, heads, inputs, parts, plain, weights

SPLIT = (builder, heads, inputs, parts, plain, weights)


def test_common_reexports_the_split_modules():
    assert common.POOLINGS is heads.FEATURE_POOLINGS  # the one renamed name
    public = [n for n in dir(common) if not n.startswith("_") and n != "POOLINGS"]
    for name in public:
        assert any(getattr(m, name, None) is getattr(common, name) for m in SPLIT), name
    for name in ("copy_weights", "load_keras_applications_weights", "make_inputs", "Conv"):
        assert name in public
