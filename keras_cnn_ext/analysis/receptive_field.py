"""Receptive-field propagation through a layer graph.

Every tensor carries, per spatial axis, its receptive field `RF` (in input pixels) and its jump
`J` (the distance in input pixels between two neighbouring positions). A layer maps them with the
recursion of Araujo et al. ("Computing receptive fields of convolutional neural networks",
Distill 2019):

- sliding window (convolution, pooling) with kernel `k`, dilation `r` and stride `s`:
  `RF_l = RF_{l-1} + (k_eff - 1) * J_{l-1}`, `J_l = J_{l-1} * s`, `k_eff = 1 + (k - 1) * r`;
- transposed convolution / upsampling by `s`: an output position reads at most
  `ceil(k_eff / s)` neighbouring inputs, so `RF_l = RF_{l-1} + (ceil(k_eff / s) - 1) * J_{l-1}`
  and `J_l = J_{l-1} / s`;
- adaptive and fractional pooling: a window as wide as the widest bin and the fractional stride
  `n_in / n_out`;
- merges (add, concatenate, multiply): the largest receptive field over the incoming paths;
- global pooling, a dense layer on a flattened vector, or any merge with such a tensor: the
  whole input (`global`).

Padding moves where a receptive field sits but not its size, so it is ignored. Jumps are exact
fractions. A layer of unknown geometry makes the field unknown downstream, or a lower bound
(marked inexact) when the layer keeps the spatial size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from fractions import Fraction


@dataclass(frozen=True)
class RFState:
    """Receptive field of one tensor. `rf`/`jump` are per-axis tuples, `None` when unknown."""

    rf: tuple | None = None
    jump: tuple | None = None
    is_global: bool = False
    exact: bool = True
    flattened: bool = False

    @classmethod
    def input(cls, n_spatial):
        return cls(rf=(Fraction(1),) * n_spatial, jump=(Fraction(1),) * n_spatial)

    def format_rf(self):
        if self.is_global:
            return "global"
        if self.rf is None:
            return "?"
        if not self.rf:
            return "-"
        return ("" if self.exact else ">=") + _format_axes(self.rf)

    def format_jump(self):
        if self.is_global or self.jump is None:
            return "-" if self.is_global else "?"
        if not self.jump:
            return "-"
        return _format_axes(self.jump)


def _format_number(value):
    value = Fraction(value)
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.3g}"


def _format_axes(values):
    if len(set(values)) == 1:
        return _format_number(values[0])
    return "x".join(_format_number(v) for v in values)


def merge_states(states):
    """Combines the states of a layer's inputs: the largest field over the paths."""
    states = [s for s in states if s is not None]
    if not states:
        return RFState(rf=None, exact=False)
    if any(s.is_global for s in states):
        return RFState(is_global=True, exact=all(s.exact for s in states))
    known = [s for s in states if s.rf is not None]
    if not known:
        return RFState(rf=None, exact=False)
    lengths = {len(s.rf) for s in known}
    if len(lengths) > 1:
        return RFState(rf=None, exact=False)
    rf = tuple(max(axis) for axis in zip(*(s.rf for s in known), strict=False))
    jump = tuple(max(axis) for axis in zip(*(s.jump for s in known), strict=False))
    exact = len(known) == len(states) and all(s.exact for s in known)
    return RFState(rf=rf, jump=jump, exact=exact, flattened=any(s.flattened for s in known))


def apply_geometry(geometry, state, same_spatial_size=False):
    """Maps the merged input state through a layer's `Geometry`.

    Returns `(state, known)`, where `known` is False when the layer's geometry is unknown.
    """
    kind = geometry.kind
    if state.is_global:
        return state, True  # whatever the layer does, its outputs still see the whole input
    if kind == "global":
        return RFState(is_global=True, exact=state.exact), True
    if kind == "unknown":
        if state.rf is not None and same_spatial_size and not state.flattened:
            return replace(state, exact=False), False
        return RFState(rf=None, exact=False), False
    if kind == "identity" or state.rf is None:
        return state, True
    if kind == "flatten":
        return replace(state, flattened=True), True
    if state.flattened or len(geometry.kernel) != len(state.rf):
        return RFState(rf=None, exact=False), False
    rf, jump = [], []
    for r, j, k, s, d in zip(
        state.rf, state.jump, geometry.kernel, geometry.stride, geometry.dilation, strict=False
    ):
        k_eff = 1 + (k - 1) * d
        s = Fraction(s)
        if kind == "window":
            rf.append(r + (k_eff - 1) * j)
            jump.append(j * s)
        elif kind == "transposed":
            rf.append(r + (math.ceil(Fraction(k_eff) / s) - 1) * j)
            jump.append(j / s)
        else:
            raise ValueError(f"Unknown geometry kind {kind!r}.")
    return replace(state, rf=tuple(rf), jump=tuple(jump)), True
