"""`profile()`: walks a built Keras model and counts parameters, MACs, memory and receptive fields.

The walk never runs the model. Functional and Sequential models (nested ones included) are
walked node by node in topological order, reading the shapes Keras already inferred, or, when
`input_shape` asks for another size, re-inferring them with each layer's `compute_output_spec`.
Subclassed models and blocks made of sublayers with no counter of their own are traced once with
`tf.function` (symbolic tensors, nothing computed) while their sublayers' calls are recorded.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import keras
import numpy as np

from keras_cnn_ext.analysis.counters import UNKNOWN, LayerCost, get_counter, numel
from keras_cnn_ext.analysis.receptive_field import RFState, apply_geometry, merge_states
from keras_cnn_ext.analysis.report import LayerRecord, ProfileResult

__all__ = ["profile"]

# TF ops that move each value to the same position (or only copy/cast it): a receptive field
# passes through them unchanged when they sit between two traced sublayers.
_POSITIONWISE_OPS = frozenset(
    {
        "Identity",
        "Cast",
        "AddV2",
        "Add",
        "Sub",
        "Mul",
        "RealDiv",
        "Maximum",
        "Minimum",
        "Relu",
        "Relu6",
        "Sigmoid",
        "Tanh",
        "Elu",
        "Selu",
        "Softplus",
        "Neg",
        "Square",
        "Sqrt",
        "Rsqrt",
        "Exp",
        "Log",
        "LeakyRelu",
        "ConcatV2",
        "BiasAdd",
        "StopGradient",
        "IdentityN",
    }
)


@dataclass
class _Value:
    """A tensor during the walk: a memory key, its batched shape, dtype, spec and RF state."""

    key: int
    shape: tuple
    dtype: str
    spec: object
    rf: RFState


def _graph_of(op):
    """The Functional graph of a Functional/Sequential model, or `None` (subclassed, layer)."""
    if isinstance(op, keras.Sequential):
        return getattr(op, "_functional", None)
    if isinstance(op, keras.Model) and hasattr(op, "_nodes_by_depth") and hasattr(op, "inputs"):
        try:
            op.inputs  # noqa: B018 - raises for subclassed models
        except (AttributeError, ValueError):
            return None
        return op if op.inputs is not None else None
    return None


def _dtype_name(dtype):
    try:
        return keras.backend.standardize_dtype(dtype)
    except (ValueError, TypeError):
        return str(dtype)


def _itemsize(dtype):
    try:
        return np.dtype(dtype).itemsize
    except TypeError:
        return 2 if "16" in str(dtype) else 4  # bfloat16 is not a NumPy dtype


def _sublayers(layer):
    try:
        return layer._flatten_layers(include_self=False, recursive=False)
    except AttributeError:
        return []


class _Walker:
    def __init__(self, batch_size, reinfer):
        self.batch_size = batch_size
        self.reinfer = reinfer
        self.records = []
        self.steps = []  # (input keys, output keys, record name) in execution order
        self.sizes = {}  # key -> bytes
        self.seen_weights = set()
        self.unknown_layers = []
        self.unknown_geometry = []
        self.warnings = []
        self._next_key = 0
        self._call_counts = {}

    # -- helpers -----------------------------------------------------------------------------

    def batched(self, shape):
        shape = tuple(shape)
        if shape and shape[0] is None:
            shape = (self.batch_size,) + shape[1:]
        return shape

    def new_value(self, spec, rf, shape=None, dtype=None):
        key = self._next_key
        self._next_key += 1
        shape = self.batched(spec.shape if shape is None else shape)
        dtype = _dtype_name(spec.dtype if dtype is None else dtype)
        n = numel(shape)
        self.sizes[key] = 0 if n is None else n * _itemsize(dtype)
        return _Value(key, shape, dtype, spec, rf)

    def take_params(self, layer):
        trainable = non_trainable = 0
        for weight in getattr(layer, "weights", []):
            if id(weight) in self.seen_weights:
                continue
            self.seen_weights.add(id(weight))
            count = int(np.prod(weight.shape))
            if weight.trainable:
                trainable += count
            else:
                non_trainable += count
        return trainable, non_trainable

    def record_name(self, prefix, op):
        base = prefix + op.name
        k = self._call_counts.get(base, 0)
        self._call_counts[base] = k + 1
        return base if k == 0 else f"{base}#{k + 1}"

    # -- graph walking -----------------------------------------------------------------------

    def walk_functional(self, graph, prefix, in_values):
        env = {id(x): v for x, v in zip(graph.inputs, in_values, strict=False)}
        for depth in sorted(graph._nodes_by_depth, reverse=True):
            for node in graph._nodes_by_depth[depth]:
                if node.is_input or not node.operation:
                    continue
                if any(id(x) not in env for x in node.input_tensors):
                    continue  # not reachable from these inputs, as in Keras' own walk
                op = node.operation
                vals = [env[id(x)] for x in node.input_tensors]
                if self.reinfer:
                    args, kwargs = node.arguments.fill_in({k: v.spec for k, v in env.items()})
                    out_specs = None
                else:
                    args = kwargs = None
                    out_specs = list(node.outputs)
                outs = self.visit(op, prefix, vals, out_specs, args, kwargs, node=node)
                for x, v in zip(node.outputs, outs, strict=False):
                    env[id(x)] = v
        return [env[id(x)] for x in graph.outputs]

    def visit(self, op, prefix, vals, out_specs, args=None, kwargs=None, node=None, in_shapes=None):
        """Counts one call of `op` on `vals`; returns the output values."""
        graph = _graph_of(op)
        if graph is not None:
            return self.walk_functional(graph, f"{prefix}{op.name}/", vals)
        counter = get_counter(op)
        if counter is None and isinstance(op, keras.layers.Layer) and _sublayers(op):
            try:
                return self.trace(op, prefix, vals, node=node)
            except Exception as e:  # an untraceable block is reported, not fatal
                self.warnings.append(
                    f"{prefix}{op.name} ({type(op).__name__}): its sublayers could not be "
                    f"traced ({type(e).__name__}: {e}); counted as one unknown layer"
                )
        if out_specs is None:
            try:
                out_specs = keras.tree.flatten(op.compute_output_spec(*args, **kwargs))
            except Exception as e:
                raise ValueError(
                    f"Cannot infer the output shape of layer {prefix}{op.name!s} "
                    f"({type(op).__name__}) for the requested `input_shape`: "
                    f"{type(e).__name__}: {e}"
                ) from None
        return self.count(op, prefix, vals, out_specs, counter, in_shapes)

    def count(self, op, prefix, vals, out_specs, counter, in_shapes=None):
        name = self.record_name(prefix, op)
        in_shapes = [v.shape for v in vals] if in_shapes is None else in_shapes
        out_values_shapes = [self.batched(s.shape) for s in out_specs]
        cost, counted, note = None, counter is not None, ""
        if counter is not None:
            try:
                cost = counter(op, in_shapes, out_values_shapes)
            except Exception as e:  # a counter must never crash the profile
                counted, note = False, f"counter failed: {type(e).__name__}: {e}"
                self.warnings.append(f"{name}: {note}")
        if cost is None:
            cost = LayerCost(geometry=UNKNOWN)
            if not counted and not note:
                note = "no counter registered: MACs not counted"
                self.warnings.append(
                    f"{name} ({type(op).__name__}): no counter registered, its MACs are not "
                    "counted (add one with keras_cnn_ext.analysis.register_counter)"
                )
            self.unknown_layers.append(name)
            counted = False
        trainable, non_trainable = self.take_params(op)

        state = merge_states([v.rf for v in vals])
        same = bool(in_shapes) and _spatial_equal(in_shapes[0], out_values_shapes[0])
        state, known = apply_geometry(cost.geometry, state, same)
        if not known:
            self.unknown_geometry.append(name)
        outs = [
            self.new_value(s, state, shape=shp)
            for s, shp in zip(out_specs, out_values_shapes, strict=False)
        ]
        dtype = outs[0].dtype if outs else ""
        record = LayerRecord(
            name=name,
            class_name=type(op).__name__,
            output_shape=outs[0].shape if outs else (),
            output_shapes=[v.shape for v in outs],
            dtype=dtype,
            trainable_params=trainable,
            non_trainable_params=non_trainable,
            macs=int(cost.macs or 0),
            bias_macs=int(cost.bias_macs or 0),
            other_ops=int(cost.other_ops or 0),
            activation_bytes=sum(self.sizes[v.key] for v in outs),
            receptive_field=state.format_rf(),
            jump=state.format_jump(),
            rf_values=None if state.is_global else state.rf,
            jump_values=None if state.is_global else state.jump,
            rf_global=state.is_global,
            rf_exact=state.exact,
            counted=counted,
            geometry_known=known,
            note=note or cost.note,
        )
        self.records.append(record)
        self.steps.append(([v.key for v in vals], [v.key for v in outs], name))
        return outs

    # -- tracing (subclassed models, blocks without a counter) -------------------------------

    def trace(self, layer, prefix, vals, node=None, top=False):
        import tensorflow as tf

        calls = []
        path = []
        blocked = [0]
        patched = []

        def wrap(sub, original):
            leaf = get_counter(sub) is not None or _graph_of(sub) is not None or not _sublayers(sub)

            def call_and_record(*args, **kwargs):
                if blocked[0]:
                    return original(*args, **kwargs)
                if leaf:
                    blocked[0] += 1
                else:
                    path.append(sub.name)  # a block: its sublayers get qualified names
                try:
                    outputs = _stand_in(sub, args, kwargs) if leaf else None
                    if outputs is None:
                        outputs = original(*args, **kwargs)
                finally:
                    if leaf:
                        blocked[0] -= 1
                    else:
                        path.pop()
                if leaf:
                    ins = [t for t in keras.tree.flatten((args, kwargs)) if tf.is_tensor(t)]
                    outs = [t for t in keras.tree.flatten(outputs) if tf.is_tensor(t)]
                    calls.append((sub, ins, outs, "".join(p + "/" for p in path)))
                return outputs

            return call_and_record

        if not layer.built:
            # Build first (creating the sublayers' weights), outside the recorded pass: a
            # first call may run `call` more than once (Keras' symbolic build pass).
            with tf.__internal__.FuncGraph("profile_build").as_default():
                xs = [tf.compat.v1.placeholder(dtype=v.dtype, shape=v.shape) for v in vals]
                with tf.name_scope("profile"):
                    layer(xs[0] if len(xs) == 1 else xs)
        for sub in layer._flatten_layers(include_self=False, recursive=True):
            if "call" in sub.__dict__:
                continue
            object.__setattr__(sub, "call", wrap(sub, sub.call))
            patched.append(sub)

        results = []

        def call_layer(xs):
            if node is not None:
                args, kwargs = node.arguments.fill_in(
                    {id(x): t for x, t in zip(node.input_tensors, xs, strict=False)}
                )
                out = layer(*args, **kwargs)
            else:
                out = layer(xs[0] if len(xs) == 1 else list(xs), training=False)
            results.extend(keras.tree.flatten(out))

        # A scratch graph with placeholders, as Keras' own `compute_output_spec` does on
        # TensorFlow: much cheaper than tracing a `tf.function`, and nothing is computed. The
        # stateless scope keeps variable updates (BN statistics, seed generators) out.
        try:
            with keras.StatelessScope(), tf.__internal__.FuncGraph("profile").as_default():
                placeholders = [
                    tf.compat.v1.placeholder(dtype=v.dtype, shape=v.shape) for v in vals
                ]
                # Not a root scope: TF rejects root scope names such as "_block" (a layer
                # named after a private class) that Keras accepts inside a model.
                with tf.name_scope("profile"):
                    call_layer(placeholders)
        finally:
            for sub in patched:
                object.__delattr__(sub, "call")

        env = {id(t): v for t, v in zip(placeholders, vals, strict=False)}
        block_prefix = "" if top else f"{prefix}{layer.name}/"
        for sub, ins, outs, sub_path in calls:
            sub_vals, exact = self._resolve(ins, env)
            out_specs = [keras.KerasTensor(tuple(t.shape), dtype=t.dtype.name) for t in outs]
            in_shapes = [tuple(t.shape) for t in ins]
            new = self.visit(sub, block_prefix + sub_path, sub_vals, out_specs, in_shapes=in_shapes)
            for t, v in zip(outs, new, strict=False):
                if not exact:
                    v.rf = replace(v.rf, exact=False)
                env[id(t)] = v
        outputs = []
        for t in results:
            if id(t) in env:
                outputs.append(env[id(t)])
                continue
            sources, exact = self._resolve([t], env)
            state = merge_states([s.rf for s in sources])
            if not exact:
                state = replace(state, exact=False)
            spec = keras.KerasTensor(tuple(t.shape), dtype=t.dtype.name)
            value = self.new_value(spec, state)
            self.steps.append(([s.key for s in sources], [value.key], block_prefix))
            outputs.append(value)
        own = [w for w in layer.weights if id(w) not in self.seen_weights]
        if own:
            trainable, non_trainable = self.take_params(layer)
            name = self.record_name(prefix, layer)
            self.records.append(
                LayerRecord(
                    name=name,
                    class_name=type(layer).__name__,
                    output_shape=outputs[0].shape,
                    output_shapes=[v.shape for v in outputs],
                    dtype=outputs[0].dtype,
                    trainable_params=trainable,
                    non_trainable_params=non_trainable,
                    counted=False,
                    receptive_field=outputs[0].rf.format_rf(),
                    jump=outputs[0].rf.format_jump(),
                    note="weights used outside sublayers: their MACs are not counted",
                )
            )
            self.unknown_layers.append(name)
            self.warnings.append(
                f"{name} ({type(layer).__name__}) uses {trainable + non_trainable:,} weights "
                "outside its sublayers: their MACs are not counted (register a counter)"
            )
        return outputs

    def _resolve(self, tensors, env):
        """Values of traced tensors: known ones directly, others through their TF ancestors."""
        found, exact = [], True
        for t in tensors:
            if id(t) in env:
                found.append(env[id(t)])
                continue
            stack, seen = [t], set()
            while stack:
                cur = stack.pop()
                if id(cur) in seen:
                    continue
                seen.add(id(cur))
                if id(cur) in env:
                    found.append(env[id(cur)])
                    continue
                op = getattr(cur, "op", None)
                if op is None:
                    continue
                if op.type not in _POSITIONWISE_OPS and op.type not in ("Placeholder", "Const"):
                    exact = False
                stack.extend(op.inputs)
        return found, exact

    # -- memory ------------------------------------------------------------------------------

    def peak_memory(self, input_keys, output_keys):
        last_use = {}
        for i, (ins, _, _) in enumerate(self.steps):
            for k in ins:
                last_use[k] = i
        keep = set(output_keys)
        live = {k: self.sizes[k] for k in input_keys}
        peak, peak_at = sum(live.values()), "(inputs)"
        for i, (ins, outs, name) in enumerate(self.steps):
            for k in outs:
                live[k] = self.sizes[k]
            total = sum(live.values())
            if total > peak:
                peak, peak_at = total, name
            for k in set(ins) | set(outs):
                if k not in keep and last_use.get(k, -1) <= i:
                    live.pop(k, None)
        return peak, peak_at


def _stand_in(layer, args, kwargs):
    """Placeholders shaped like `layer`'s outputs, or `None` to run the layer instead.

    A counted layer only needs its output shapes: building its real ops (variable reads, convs)
    in the scratch graph is what made tracing slow.
    """
    import tensorflow as tf

    def to_spec(x):
        return keras.KerasTensor(tuple(x.shape), dtype=x.dtype.name) if tf.is_tensor(x) else x

    def to_placeholder(x):
        if isinstance(x, keras.KerasTensor):
            return tf.compat.v1.placeholder(dtype=x.dtype, shape=x.shape)
        return x

    try:
        spec_args, spec_kwargs = keras.tree.map_structure(to_spec, (args, kwargs))
        spec = layer.compute_output_spec(*spec_args, **spec_kwargs)
        return keras.tree.map_structure(to_placeholder, spec)
    except Exception:  # a layer whose shape inference fails is run for real
        return None


def _spatial_equal(a, b):
    return len(a) == len(b) and tuple(a[1:]) == tuple(b[1:])


def _normalize_input_shapes(model, input_shape, batch_size):
    """Returns the batched input shapes to profile with, and whether they differ from the model's."""
    graph = _graph_of(model)
    if graph is not None:
        model_shapes = [tuple(x.shape) for x in graph.inputs]
    elif input_shape is not None:
        model_shapes = []  # a subclassed model: the given shapes are the only ones known
    else:
        build = getattr(model, "_build_shapes_dict", None) or {}
        model_shapes = [tuple(s) for s in build.values() if s is not None][:1]
        model_shapes = [s for s in model_shapes if all(isinstance(d, (int, type(None))) for d in s)]
    if input_shape is None:
        shapes = model_shapes
        if not shapes:
            raise ValueError(
                "`input_shape` is required: the model has no known input shape (a subclassed "
                "model that was never built). Pass e.g. input_shape=(224, 224, 3)."
            )
    else:
        given = list(input_shape) if _is_list_of_shapes(input_shape) else [input_shape]
        if model_shapes and len(given) != len(model_shapes):
            raise ValueError(
                f"`input_shape` must give {len(model_shapes)} shape(s), one per model input. "
                f"Received: {input_shape!r}"
            )
        shapes = []
        for i, s in enumerate(given):
            s = tuple(s)
            if not all(d is None or (isinstance(d, (int, np.integer)) and d > 0) for d in s):
                raise ValueError(
                    f"`input_shape` must hold positive integers. Received: {input_shape!r}"
                )
            rank = len(model_shapes[i]) if model_shapes else len(s) + 1
            if len(s) == rank - 1:
                s = (None,) + s
            elif len(s) != rank:
                raise ValueError(
                    f"`input_shape` must have {rank - 1} dimensions (without the batch) or "
                    f"{rank} (with it) for this model. Received: {input_shape!r}"
                )
            shapes.append(tuple(None if d is None else int(d) for d in s))
    batched = []
    for s in shapes:
        if any(d is None for d in s[1:]):
            raise ValueError(
                f"`input_shape` is required: the model input has unknown dimensions {s}. "
                "Pass e.g. input_shape=(224, 224, 3)."
            )
        batched.append(s)
    reinfer = bool(model_shapes) and any(
        a[1:] != b[1:] for a, b in zip(batched, model_shapes, strict=False)
    )
    return batched, reinfer


def _is_list_of_shapes(value):
    return isinstance(value, list) and value and all(isinstance(v, (list, tuple)) for v in value)


def profile(model, input_shape=None, batch_size=1):
    """Counts parameters, MACs, activation memory and receptive fields of a Keras model.

    Works on built Functional and Sequential models (nested models are walked and their layers
    named `outer/inner`), on subclassed models and on blocks made of sublayers (traced once,
    symbolically). The model is never run on data. Counting conventions: a MAC is one
    multiply-accumulate, bias excluded, and FLOPs are `2 * MACs` (the count `tf.profiler`
    reports for convolutions and matrix products); `macs_with_bias` also counts each bias add as
    one MAC (the `N*H*W*C_out*(K_h*K_w*C_in + 1)` form); the backward pass is estimated at
    `2 * MACs`. See `keras_cnn_ext.analysis.counters` for the non-MAC operation counts.

    Layers that no counter knows still get a record (params, output shape, memory) marked
    `counted=False` and named in `unknown_layers`, with a warning; layers whose receptive-field
    geometry is unknown are named in `unknown_geometry`.

    Args:
        model: a built Keras model (or layer graph).
        input_shape: the input shape to profile, without the batch dimension (e.g.
            `(224, 224, 3)`), or with it; a list of shapes for several inputs. Defaults to
            `None`: the model's own input shapes, which must then be fully known.
        batch_size: the batch size `N` used where the batch dimension is not fixed. Defaults
            to 1.

    Returns:
        A `ProfileResult` (`print(result)` shows the table; `result.to_dict()` gives data).

    Example:

    >>> model = keras.applications.MobileNet(weights=None)
    >>> result = profile(model)
    >>> round(result.macs / 1e9, 2)
    0.57
    """
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(
            f"`model` must be a Keras model or layer. Received: {model!r} of type {type(model)}"
        )
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or (batch_size < 1)
    ):
        raise ValueError(f"`batch_size` must be a positive integer. Received: {batch_size!r}")
    if isinstance(model, keras.Sequential) and _graph_of(model) is None:
        raise ValueError(
            "`model` must be built: call `model.build(input_shape)` or give it an "
            "`keras.Input` first."
        )
    shapes, reinfer = _normalize_input_shapes(model, input_shape, batch_size)
    if shapes[0][0] is not None:  # an explicit batch in `input_shape` wins
        batch_size = shapes[0][0]
    walker = _Walker(int(batch_size), reinfer)
    graph = _graph_of(model)
    n_inputs = len(shapes)
    dtypes = [x.dtype for x in graph.inputs] if graph is not None else [model.compute_dtype]
    in_values = []
    for i, shape in enumerate(shapes):
        spec = keras.KerasTensor(shape, dtype=dtypes[min(i, len(dtypes) - 1)])
        value = walker.new_value(spec, RFState.input(max(len(shape) - 2, 0)))
        in_values.append(value)
    if graph is not None:
        # The input layers get records of their own (shape and memory of the inputs).
        for x, value in zip(graph.inputs, in_values, strict=False):
            layer = x._keras_history.operation
            walker.records.append(
                LayerRecord(
                    name=layer.name,
                    class_name=type(layer).__name__,
                    output_shape=value.shape,
                    output_shapes=[value.shape],
                    dtype=value.dtype,
                    activation_bytes=walker.sizes[value.key],
                    receptive_field=value.rf.format_rf(),
                    jump=value.rf.format_jump(),
                    rf_values=value.rf.rf,
                    jump_values=value.rf.jump,
                )
            )
        outputs = walker.walk_functional(graph, "", in_values)
    else:
        outputs = walker.trace(model, "", in_values, top=True)
    unreached = [w for w in model.weights if id(w) not in walker.seen_weights]
    if unreached:
        trainable, non_trainable = walker.take_params(model)
        walker.records.append(
            LayerRecord(
                name="(weights not reached)",
                class_name="",
                output_shape=(),
                output_shapes=[],
                dtype="",
                trainable_params=trainable,
                non_trainable_params=non_trainable,
                counted=False,
                receptive_field="-",
                jump="-",
            )
        )
        walker.warnings.append(
            f"{trainable + non_trainable:,} parameters belong to layers the walk did not reach "
            "(unused layers, or weights used outside any layer call)"
        )
    peak, peak_at = walker.peak_memory([v.key for v in in_values], [v.key for v in outputs])
    result = ProfileResult(
        model_name=model.name,
        batch_size=int(batch_size),
        input_shapes=[v.shape for v in in_values][:n_inputs],
        records=walker.records,
        peak_activation_bytes=peak,
        peak_layer=peak_at,
        output_receptive_field=[v.rf.format_rf() for v in outputs],
        output_jump=[v.rf.format_jump() for v in outputs],
        unknown_layers=walker.unknown_layers,
        unknown_geometry=walker.unknown_geometry,
        warnings=walker.warnings,
    )
    for message in walker.warnings:
        warnings.warn(message, stacklevel=2)
    return result
