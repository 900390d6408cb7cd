"""Plain convolution stacks: `stack_stages` predicts the sizes `conv_stack` builds."""

import keras
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_cnn_ext.models.inputs import check_min_size, min_input_size
from keras_cnn_ext.models.plain import Conv, Pool, conv_stack, stack_stages

_ENTRIES = st.sampled_from(
    [
        Conv(2, 3),
        Conv(2, 5, padding="valid"),
        Conv(2, 3, 2, "valid"),
        Conv(2, 3, 2, 1),
        Conv(2, 5, 2),
        Pool(2, 2),
        Pool(3, 2),
        Pool(2, 2, "same"),
    ]
)


@settings(max_examples=15, deadline=None)
@given(table=st.lists(_ENTRIES, min_size=1, max_size=4), extra=st.integers(0, 5))
def test_min_input_size_is_tight(table, extra):
    stages = stack_stages(table)
    minimum = min_input_size(stages)
    size = minimum + extra
    inputs = keras.Input((size, size, 1))
    out = conv_stack(inputs, table)
    expected = size
    for stage in stages:
        expected = stage.output_size(expected)
    assert out.shape[1] == expected >= 1
    if minimum > 1:
        with pytest.raises(ValueError, match=f"minimum input size is {minimum}x{minimum}"):
            check_min_size((minimum - 1, minimum, 1), stages)
