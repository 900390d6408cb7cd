"""What every layer of the package shares: the integer-input rule.

Keras 3.15 is not consistent about integer inputs: `Dense`, `BatchNormalization`,
`GlobalAveragePooling2D` and the preprocessing layers return floats in the compute dtype, while
`Conv2D` and `DepthwiseConv2D` fail inside TensorFlow ("Incompatible type conversion requested
to type int32 for tf.Variable", "Value for attr 'T' of int32 is not in the list of allowed
values") and `Dropout`/`SpatialDropout2D` raise a ValueError. Left alone, integer inputs gave
silently wrong results here (integer arithmetic dropping a rescaling, an `alpha` truncated to
0). The package rule is the useful half of Keras': every layer casts integer and boolean inputs
to its compute dtype before `call`, as Keras' `Layer.__call__` already casts floating inputs
(`DTypePolicy.convert_input`); other dtypes (strings, complex numbers) raise a TypeError naming
the layer and the dtype.
"""

from __future__ import annotations

import keras


def cast_integer_inputs(inputs, dtype, layer_name):
    """Casts integer and boolean tensors in `inputs` (a tensor or a nest) to `dtype`.

    Floating-point tensors are returned unchanged (Keras' autocasting handles them); entries
    without a dtype (Python numbers, `None`) too.

    Raises:
        TypeError: for a tensor of another dtype (string, complex), naming `layer_name`.
    """

    def cast(x):
        x_dtype = getattr(x, "dtype", None)
        if x_dtype is None:
            return x
        try:
            name = keras.backend.standardize_dtype(x_dtype)
        except ValueError:
            name = str(x_dtype)
        if name == "bool" or name.startswith(("int", "uint")):
            return keras.ops.cast(x, dtype)
        if keras.backend.is_float_dtype(name):
            return x
        raise TypeError(
            f"`{layer_name}` accepts inputs of a floating-point, integer or bool dtype (integers "
            f"and bools are cast to its compute dtype, {dtype}). Received: inputs of dtype {name}"
        )

    return keras.tree.map_structure(cast, inputs)


class CastsIntegerInputs:
    """Mixin that applies the package's integer-input rule in `__call__`, before Keras' own.

    Put it first in the bases of a layer (`class L(CastsIntegerInputs, keras.layers.Conv2D)`);
    `keras_cnn_ext.layers.base.Layer` is `keras.layers.Layer` with it.
    """

    def __call__(self, *args, **kwargs):
        name = type(self).__name__
        if args:
            args = (cast_integer_inputs(args[0], self.compute_dtype, name), *args[1:])
        elif "inputs" in kwargs:
            kwargs["inputs"] = cast_integer_inputs(kwargs["inputs"], self.compute_dtype, name)
        return super().__call__(*args, **kwargs)


class Layer(CastsIntegerInputs, keras.layers.Layer):
    """The base of the package's layers: `keras.layers.Layer` with the integer-input rule."""
