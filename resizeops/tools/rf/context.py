"""What every op rule works with: one call (:class:`Call`) and the analysis' record (:class:`Context`).

A rule (``rules.py``, ``layout.py``) gets the :class:`Call` of one graph node —
its arguments, their receptive-field states, its output — and the
:class:`Context`, which

* applies a 2-D kernel and stride to a state (:meth:`Context.spatial`, the
  effective kernel of a dilated one by :meth:`Context.keff` unless dilation is
  ignored);
* names the node's row after its module or call site and records it
  (:meth:`Context.row`, :meth:`Context.layer`), with the notes and the
  assumed-pointwise ops the report lists;
* writes the error that names an op the analysis does not know (:meth:`Context.error`).

:func:`fn_name` gives a function node the name the rules dispatch on.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.fx
import torch.nn.functional as F

from .report import RFLayer
from .state import AXES, INF, Pair, TensorRF, is_tensor, leaves, spatial_size, tags_for, where
from .tracing import RFTraceError, _elastic_down, _elastic_merge

# =============================================================================
# Names of function nodes
# =============================================================================

FN_NAMES: Dict[Any, str] = {
    F.max_pool2d: "max_pool2d",
    F.max_pool2d_with_indices: "max_pool2d",
    F.avg_pool2d: "avg_pool2d",
    F.lp_pool2d: "lp_pool2d",
    F.conv2d: "conv2d",
    F.conv_transpose2d: "conv_transpose2d",
    F.adaptive_avg_pool2d: "adaptive_pool",
    F.adaptive_max_pool2d: "adaptive_pool",
    F.adaptive_max_pool2d_with_indices: "adaptive_pool",
    F.interpolate: "interpolate",
    F.upsample: "interpolate",
    F.upsample_bilinear: "upsample_bilinear",
    F.upsample_nearest: "upsample_nearest",
    F.pad: "pad",
    F.pixel_shuffle: "pixel_shuffle",
    F.pixel_unshuffle: "pixel_unshuffle",
    F.fractional_max_pool2d: "fractional_max_pool2d",
    _elastic_down: "elastic_down",
    _elastic_merge: "elastic_merge",
    torch.cat: "cat",
    torch.stack: "stack",
    operator.getitem: "getitem",
}
for _n in ("concat", "concatenate"):
    if hasattr(torch, _n):
        FN_NAMES[getattr(torch, _n)] = "cat"
for _n in ("max_pool2d", "avg_pool2d", "conv2d", "conv_transpose2d", "adaptive_avg_pool2d", "adaptive_max_pool2d",
           "pixel_shuffle", "pixel_unshuffle"):  # fmt: skip
    if hasattr(torch, _n):
        FN_NAMES.setdefault(getattr(torch, _n), "adaptive_pool" if _n.startswith("adaptive") else _n)


def fn_name(node: torch.fx.Node) -> str:
    """The op name of a call_function / call_method node: a method's name, a known function's
    entry of :data:`FN_NAMES`, a torch (or timm) function's ``__name__``, else ``module.name``."""
    t = node.target
    if node.op == "call_method":
        return str(t)
    if t in FN_NAMES:
        return FN_NAMES[t]
    name = getattr(t, "__name__", str(t))
    mod = getattr(t, "__module__", None) or ""
    if mod.startswith(("torch", "_operator", "operator", "builtins", "math", "timm")) or mod == "":
        return name
    return f"{mod}.{name}"


def is_torch_fn(t) -> bool:
    """A function of torch or of Python itself (as opposed to a user's wrapped function)."""
    mod = getattr(t, "__module__", None) or ""
    return mod.startswith(("torch", "_operator", "operator", "builtins", "math")) or t in FN_NAMES


def pairf(v) -> Tuple[float, float]:
    """A kernel / stride / dilation argument (a number, or a sequence ending in (H, W)) as a float pair."""
    if isinstance(v, (list, tuple)):
        if len(v) == 1:
            return float(v[0]), float(v[0])
        return float(v[-2]), float(v[-1])
    return float(v), float(v)


# =============================================================================
# One call, and the record
# =============================================================================


@dataclass
class Call:
    """One graph node as a rule sees it.

    ``args`` / ``kwargs``: its argument values; ``rargs``: the receptive-field
    states of ``args`` (same nesting; None where an argument has none);
    ``operands``: (state, value) of every argument that has a state, in order
    (the first is the input the rules act on); ``value``: the node's output;
    ``op``: the op's name in the report (a module's class, a function's name).
    """

    node: torch.fx.Node
    op: str
    args: tuple
    kwargs: Dict[str, Any]
    rargs: Any
    operands: List[Tuple[TensorRF, Any]]
    value: Any

    @property
    def rf(self) -> TensorRF:
        """The state of the first operand."""
        return self.operands[0][0]

    @property
    def x(self):
        """The value of the first operand."""
        return self.operands[0][1]

    @property
    def ins(self) -> List[TensorRF]:
        return [r for r, _ in self.operands]

    def arg(self, i: int, name: str, default=None):
        """Argument ``name``, given by keyword or at position ``i``."""
        return arg(self.args, self.kwargs, i, name, default)


def arg(args, kwargs, i: int, name: str, default=None):
    if name in kwargs:
        return kwargs[name]
    return args[i] if len(args) > i else default


class Context:
    """The analysis' record (rows, notes, ops taken as pointwise) and how a 2-D op applies to a state."""

    def __init__(self, gm: torch.fx.GraphModule, ignore_dilation: bool) -> None:
        self.module = gm
        self.ignore_dilation = ignore_dilation
        self.rows: List[RFLayer] = []
        self.notes: List[str] = []
        self.assumed: List[str] = []  # unknown non-torch ops taken as pointwise (they keep the spatial size)
        self._names: Dict[str, int] = {}

    # -- kernels --------------------------------------------------------------------

    def keff(self, k, d) -> Pair:
        """The effective kernel d(k − 1) + 1 per axis (k itself when dilation is ignored)."""
        kh, kw = pairf(k)
        if self.ignore_dilation:
            return kh, kw
        dh, dw = pairf(d)
        return dh * (kh - 1) + 1, dw * (kw - 1) + 1

    def spatial(self, n, rf: TensorRF, val, k_op: Pair, s_op: Pair) -> Tuple[TensorRF, Pair, Pair]:
        """Apply a 2-D op acting on dims (-2, -1) with kernel/stride ``k_op``/``s_op`` (in op-dim order).

        Returns the new state and the kernel and stride as (H, W) pairs.
        """
        if rf.is_global:
            return rf, k_op, s_op
        tags = rf.tags
        if tags is None or len(tags) < 2 or {tags[-2], tags[-1]} != {"h", "w"}:
            raise RFTraceError(
                f"rf.analyze: `{self.label(n)}` works on the last two dims, but the input's spatial dims are "
                f"at {where(tags)} of shape {tuple(val.shape) if is_tensor(val) else '?'}"
            )
        k = {tags[-2]: k_op[0], tags[-1]: k_op[1]}
        s = {tags[-2]: s_op[0], tags[-1]: s_op[1]}
        out = TensorRF(tags, rf.h.apply(k["h"], s["h"]), rf.w.apply(k["w"], s["w"]))
        return out, (k["h"], k["w"]), (s["h"], s["w"])

    def on_axes(self, n, rf: TensorRF, k_hw: Pair, s_hw: Pair, value) -> TensorRF:
        """An op acting on the spatial dims wherever they are (e.g. channels-last), same rank out."""
        if rf.is_global:
            return rf
        if rf.pos("h") is None or rf.pos("w") is None:
            raise RFTraceError(f"rf.analyze: `{self.label(n)}` resamples the map, but its spatial dims are unknown")
        return TensorRF(tags_for(rf.tags, value), rf.h.apply(k_hw[0], s_hw[0]), rf.w.apply(k_hw[1], s_hw[1]))

    def layer(self, c: Call, kind: str, k: Pair, s: Pair, *, op: Optional[str] = None,
              ins: Optional[Sequence[TensorRF]] = None, retag: bool = False) -> TensorRF:  # fmt: skip
        """A 2-D layer on the call's first operand: apply kernel ``k`` and stride ``s``, record its row.

        ``retag``: keep the tags only where they fit the output's rank; ``ins``: the
        inputs of the row (default: every operand); ``op``: the row's op (default the call's).
        """
        out, kk, ss = self.spatial(c.node, c.rf, c.x, k, s)
        if retag:
            out = out.with_tags(tags_for(out.tags, c.value))
        self.row(c.node, op or c.op, kind, kk, ss, out, c.value, c.ins if ins is None else ins)
        return out

    # -- the record -----------------------------------------------------------------

    def row(self, n, op: str, kind: str, kernel, stride, rf_out, value, ins: Sequence[TensorRF], name=None) -> None:
        """Record a row for node ``n`` with output state ``rf_out`` (the first tensor's of a tuple output)."""
        if not isinstance(rf_out, TensorRF):
            rf_out = next((r for r in leaves(rf_out) if isinstance(r, TensorRF)), None)
            value = next((v for v in leaves(value) if is_tensor(v)), None)
            if rf_out is None:
                return
        in_min = tuple(min((r.ax(t).r_min for r in ins), default=INF) for t in AXES)
        in_m = tuple(min((r.ax(t).m for r in ins), default=INF) for t in AXES)
        self.rows.append(
            RFLayer(
                name=name or self.name(n),
                op=op,
                kind=kind,
                kernel=tuple(float(k) for k in kernel),  # type: ignore[arg-type]
                stride=tuple(float(s) for s in stride),  # type: ignore[arg-type]
                r_min=(rf_out.h.r_min, rf_out.w.r_min),
                r_max=(rf_out.h.r_max, rf_out.w.r_max),
                r_max_finite=(rf_out.h.r_max_finite, rf_out.w.r_max_finite),
                m=(rf_out.h.m, rf_out.w.m),
                in_r_min=in_min,  # type: ignore[arg-type]
                size=spatial_size(rf_out, value),
                in_m=in_m,  # type: ignore[arg-type]
            )
        )

    def name(self, n: torch.fx.Node) -> str:
        """The row's name: a module call's path, else ``<calling module path>/<node name>``; unique (``#2`` …)."""
        if n.op == "call_module":
            base = str(n.target)
        else:
            stack = n.meta.get("nn_module_stack") or {}
            path = next(reversed(stack.values()))[0] if stack else ""
            base = f"{path}/{n.name}" if path else n.name
        k = self._names.get(base, 0) + 1
        self._names[base] = k
        return base if k == 1 else f"{base}#{k}"

    def caller(self, n) -> str:
        """The path of the module whose forward runs node ``n``."""
        stack = n.meta.get("nn_module_stack") or {}
        return next(reversed(stack.values()))[0] if stack else "the top-level forward"

    def label(self, n) -> str:
        """Node ``n`` in an error message (between backquotes)."""
        if n.op == "call_module":
            return f"{n.target}` ({type(self.module.get_submodule(n.target)).__name__})"
        return f"{fn_name(n)}` (in {self.caller(n)})"

    def error(self, n, what: str) -> RFTraceError:
        return RFTraceError(
            f"rf.analyze: cannot tell how `{self.label(n)}` changes the receptive field: {what}. "
            "Give it a rule: analyze(..., rules={<module class or function>: fn}) with fn(module_or_fn, in_size, "
            "out_size) returning (kernel, stride), 'global' or 'pointwise'."
        )

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def assume(self, label: str) -> None:
        if label not in self.assumed:
            self.assumed.append(label)
