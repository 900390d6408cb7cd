"""Result objects of `profile()`: per-layer records, totals, a plain-text table and dicts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

BYTES_PER_WEIGHT = {"float32": 4, "float16": 2, "int8": 1}


@dataclass
class LayerRecord:
    """One call of one layer (a shared layer called twice gives two records).

    Attributes:
        name: the layer name, qualified by the enclosing models/blocks (`"outer/inner"`), with
            `"#k"` appended for the k-th further call of a shared layer.
        class_name: the layer's class.
        output_shape: the first output's shape, batch included (`output_shapes` has them all).
        trainable_params, non_trainable_params: weights first seen at this record (a shared
            layer's weights are counted once).
        macs: multiply-accumulates, bias excluded. `flops` is `2 * macs`.
        bias_macs: one MAC per biased output element; `macs + bias_macs` is the common
            `N*H*W*C_out*(K_h*K_w*C_in + 1)` form.
        other_ops: element-wise operations that are not MACs (normalisation, pooling, merges,
            activations); see `keras_cnn_ext.analysis.counters`.
        activation_bytes: bytes of the outputs, `prod(shape) * sizeof(dtype)`, with the dtype of
            the layer's compute dtype policy (the output tensor's dtype).
        receptive_field, jump: printable per-axis values (`"global"`, `"?"` when unknown, a
            `">="` prefix for a lower bound).
        counted: False when no counter knows the layer (its MACs are not counted).
        geometry_known: False when the layer's receptive-field geometry is unknown.
    """

    name: str
    class_name: str
    output_shape: tuple
    output_shapes: list
    dtype: str
    trainable_params: int = 0
    non_trainable_params: int = 0
    macs: int = 0
    bias_macs: int = 0
    other_ops: int = 0
    activation_bytes: int = 0
    receptive_field: str = "-"
    jump: str = "-"
    rf_values: tuple | None = None
    jump_values: tuple | None = None
    rf_global: bool = False
    rf_exact: bool = True
    counted: bool = True
    geometry_known: bool = True
    note: str = ""

    @property
    def params(self):
        return self.trainable_params + self.non_trainable_params

    @property
    def flops(self):
        return 2 * self.macs

    @property
    def macs_with_bias(self):
        return self.macs + self.bias_macs

    @property
    def backward_macs(self):
        # Gradients w.r.t. the input and w.r.t. the weights each cost about one forward pass.
        return 2 * self.macs

    def to_dict(self):
        d = asdict(self)
        d["rf_values"] = None if self.rf_values is None else [float(v) for v in self.rf_values]
        d["jump_values"] = (
            None if self.jump_values is None else [float(v) for v in self.jump_values]
        )
        d.update(
            params=self.params,
            flops=self.flops,
            macs_with_bias=self.macs_with_bias,
            backward_macs=self.backward_macs,
        )
        return d


@dataclass
class ProfileResult:
    """What `profile()` returns: `records` (one `LayerRecord` per layer call) and totals.

    Totals: `trainable_params`, `non_trainable_params`, `params`, `macs`, `flops` (`2 * macs`),
    `macs_with_bias` (the N·H·W·C·(K·K·C+1) form), `backward_macs` (about `2 * macs`: input and weight
    gradients), `training_macs` (forward + backward, about `3 * macs`), `other_ops`,
    `activation_bytes` (sum over all layer outputs: what training keeps for the backward pass),
    `peak_activation_bytes` (the largest sum of simultaneously live tensors while the layers run
    one by one in topological order, a tensor being freed after its last consumer: the inference
    working set; `peak_layer` names the layer running at the peak), `model_size_bytes` (weights
    stored as float32 / float16 / int8), `receptive_field`/`jump` of the outputs,
    `unknown_layers` (no counter: MACs not counted), `unknown_geometry` (receptive field unknown
    or a lower bound from there on) and `warnings`.
    """

    model_name: str
    batch_size: int
    input_shapes: list
    records: list = field(default_factory=list)
    peak_activation_bytes: int = 0
    peak_layer: str = ""
    output_receptive_field: list = field(default_factory=list)
    output_jump: list = field(default_factory=list)
    unknown_layers: list = field(default_factory=list)
    unknown_geometry: list = field(default_factory=list)
    warnings: list = field(default_factory=list)

    def _sum(self, attr):
        return sum(getattr(r, attr) for r in self.records)

    @property
    def trainable_params(self):
        return self._sum("trainable_params")

    @property
    def non_trainable_params(self):
        return self._sum("non_trainable_params")

    @property
    def params(self):
        return self.trainable_params + self.non_trainable_params

    @property
    def macs(self):
        return self._sum("macs")

    @property
    def flops(self):
        return 2 * self.macs

    @property
    def macs_with_bias(self):
        return self._sum("macs_with_bias")

    @property
    def backward_macs(self):
        return 2 * self.macs

    @property
    def training_macs(self):
        return self.macs + self.backward_macs

    @property
    def other_ops(self):
        return self._sum("other_ops")

    @property
    def activation_bytes(self):
        return self._sum("activation_bytes")

    @property
    def model_size_bytes(self):
        return {name: self.params * size for name, size in BYTES_PER_WEIGHT.items()}

    def totals(self):
        """The totals as a dict of plain numbers and strings."""
        return {
            "trainable_params": self.trainable_params,
            "non_trainable_params": self.non_trainable_params,
            "params": self.params,
            "macs": self.macs,
            "flops": self.flops,
            "macs_with_bias": self.macs_with_bias,
            "backward_macs": self.backward_macs,
            "training_macs": self.training_macs,
            "other_ops": self.other_ops,
            "activation_bytes": self.activation_bytes,
            "peak_activation_bytes": self.peak_activation_bytes,
            "peak_layer": self.peak_layer,
            "model_size_bytes": self.model_size_bytes,
            "receptive_field": self.output_receptive_field,
            "jump": self.output_jump,
        }

    def to_records(self):
        """One dict per layer record (for pandas, JSON, CSV)."""
        return [r.to_dict() for r in self.records]

    def to_dict(self):
        """Everything: model, batch, input shapes, records, totals and diagnostics."""
        return {
            "model": self.model_name,
            "batch_size": self.batch_size,
            "input_shapes": [list(s) for s in self.input_shapes],
            "records": self.to_records(),
            "totals": self.totals(),
            "unknown_layers": list(self.unknown_layers),
            "unknown_geometry": list(self.unknown_geometry),
            "warnings": list(self.warnings),
        }

    def table(self, max_name_width=40):
        """A plain-text table, one row per record, followed by the totals."""
        return format_table(self, max_name_width)

    def __str__(self):
        return self.table()


def human(value, unit=""):
    """Formats a count with a k/M/G/T suffix (powers of 1000; bytes use powers of 1024)."""
    base = 1024.0 if unit == "B" else 1000.0
    suffixes = ["", "Ki", "Mi", "Gi", "Ti"] if unit == "B" else ["", "k", "M", "G", "T"]
    value = float(value)
    for suffix in suffixes:
        if abs(value) < base or suffix == suffixes[-1]:
            text = f"{value:.0f}" if suffix == "" else f"{value:.2f}"
            return f"{text} {suffix}{unit}".strip() if unit else f"{text}{suffix}"
        value /= base
    return str(value)


def _shape_text(shape):
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def format_table(result, max_name_width=40):
    columns = [
        "Layer",
        "Type",
        "Output shape",
        "Params",
        "MACs",
        "Other ops",
        "Act. mem",
        "RF",
        "Jump",
    ]
    rows = []
    for r in result.records:
        name = r.name if len(r.name) <= max_name_width else "..." + r.name[-max_name_width + 3 :]
        flag = "" if r.counted else " (unknown)"
        rows.append(
            [
                name,
                r.class_name + flag,
                _shape_text(r.output_shape),
                f"{r.params:,}",
                human(r.macs),
                human(r.other_ops),
                human(r.activation_bytes, "B"),
                r.receptive_field,
                r.jump,
            ]
        )
    widths = [
        max(len(c), *(len(row[i]) for row in rows)) if rows else len(c)
        for i, c in enumerate(columns)
    ]
    right = {3, 4, 5, 6, 7, 8}

    def line(cells):
        return "  ".join(
            cell.rjust(w) if i in right else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=False))
        ).rstrip()

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    out = [
        f'Model "{result.model_name}", batch size {result.batch_size}, inputs '
        + ", ".join(_shape_text(s) for s in result.input_shapes),
        rule,
        line(columns),
        rule,
    ]
    out += [line(row) for row in rows]
    out.append(rule)
    size = result.model_size_bytes
    out += [
        f"Params: {result.params:,} (trainable {result.trainable_params:,}, "
        f"non-trainable {result.non_trainable_params:,})",
        f"Model size: float32 {human(size['float32'], 'B')}, float16 "
        f"{human(size['float16'], 'B')}, int8 {human(size['int8'], 'B')}",
        f"MACs: {human(result.macs)} ({result.macs:,}); FLOPs = 2 x MACs = {human(result.flops)}",
        f"MACs with bias as one MAC (N*H*W*C_out*(K_h*K_w*C_in + 1)): "
        f"{human(result.macs_with_bias)}",
        f"Backward ~2 x forward: {human(result.backward_macs)} MACs; training step ~3 x: "
        f"{human(result.training_macs)} MACs",
        f"Other (non-MAC) ops: {human(result.other_ops)}",
        f"Activations: total {human(result.activation_bytes, 'B')} (all outputs, kept for "
        f"training); peak {human(result.peak_activation_bytes, 'B')} at {result.peak_layer!r} "
        "(largest sum of live tensors, layers run in topological order)",
        "Output receptive field: "
        + ", ".join(result.output_receptive_field)
        + "; jump: "
        + ", ".join(result.output_jump),
    ]
    if result.unknown_layers:
        out.append("Not counted (no counter): " + ", ".join(result.unknown_layers))
    if result.unknown_geometry:
        out.append("Unknown receptive-field geometry: " + ", ".join(result.unknown_geometry))
    for w in result.warnings:
        out.append("Warning: " + w)
    return "\n".join(out)
