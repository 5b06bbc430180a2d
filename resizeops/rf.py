"""Receptive-field analysis (issue 6, SPEC §2.6; receptive-field refinement §3).

``resizeops.rf.analyze(model, input_size=(224, 224))`` traces ``model`` with
``torch.fx`` (no TorchScript, no system binaries), propagates per node and per
spatial axis the set of receptive fields over all paths from the input, and
returns an :class:`RFReport`: per layer its kernel, stride, r_min, r_max, the
cumulative stride and the feature-map size at ``input_size``; the minimal and
maximal feasible input resolution; the unproductive layers at a resolution; a
table and a plot.

Semantics (SPEC §2.6). Along each axis a path from the input carries
(r, m): its receptive field and cumulative stride. A layer of effective kernel
``k_eff = d(k − 1) + 1`` and stride ``s`` maps it to ``(r + (k_eff − 1)·m, m·s)``;
global and adaptive pooling (and global context: squeeze-and-excitation,
attention, normalisation statistics over the map) give r = ∞. r_min and r_max
of a node are the minimum and maximum over all paths. A node keeps, per axis and
per distinct cumulative stride m, the smallest and the largest r of the paths
reaching it with that m: a path's receptive field later on is ``r + m·C`` with
C ≥ 0 fixed by the layers after the node, so these extremes are exact for every
later min and max (keeping only the overall smallest and largest r is not, when
paths of different strides meet). Learnable resizers enter at their current
scale: :class:`~resizeops.nn.DynOPool2d` with stride 1/r and kernel 1 + 1/(2r),
:class:`~resizeops.nn.ShapeAdaptor` with stride 1/s on the full-resolution
branch, its low branch joining it.

Feature-map sizes come from running the traced graph on a fake (or meta) input of
``input_size``: no real computation, so the whole zoo of torchvision
classifiers is analysed in about a second each on the CPU.
"""

from __future__ import annotations

import importlib
import math
import numbers
import operator
import sys
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from .nn import DynOPool2d, ElasticBlock, ShapeAdaptor, ShapeAdaptorMaxPool2d, _half_resolution, _Resizer
from . import ops as _ops

__all__ = ["analyze", "RFReport", "RFLayer", "RFTraceError", "load_model", "main"]

INF = math.inf
Pair = Tuple[float, float]
AXES = ("h", "w")


class RFTraceError(ValueError):
    """The model cannot be analysed: torch.fx cannot trace it, or an op's effect on the receptive field is unknown."""


# =============================================================================
# The per-axis set of paths
# =============================================================================


def _key(m: float) -> float:
    # Cumulative strides are products of (possibly fractional) strides; merge float noise.
    return float(f"{m:.12g}")


class _Axis:
    """Paths reaching a node along one axis: {cumulative stride m: (smallest r, largest r)} and
    whether an infinite path (global pooling / context) reaches it."""

    __slots__ = ("paths", "inf")

    def __init__(self, paths: Optional[Dict[float, Pair]] = None, inf: bool = False) -> None:
        self.paths: Dict[float, Pair] = paths or {}
        self.inf = bool(inf)

    @classmethod
    def origin(cls) -> "_Axis":
        return cls({1.0: (1.0, 1.0)})

    @classmethod
    def infinite(cls) -> "_Axis":
        return cls({}, True)

    def apply(self, k: float, s: float) -> "_Axis":
        if k == INF or s == INF:
            return _Axis.infinite()
        out: Dict[float, Pair] = {}
        for m, (a, b) in self.paths.items():
            g = (k - 1.0) * m
            _merge(out, _key(m * s), a + g, b + g)
        return _Axis(out, self.inf)

    @staticmethod
    def join(axes: Iterable["_Axis"]) -> "_Axis":
        out: Dict[float, Pair] = {}
        inf = False
        for ax in axes:
            inf = inf or ax.inf
            for m, (a, b) in ax.paths.items():
                _merge(out, m, a, b)
        return _Axis(out, inf)

    @property
    def r_min(self) -> float:
        return min((a for a, _ in self.paths.values()), default=INF)

    @property
    def r_max(self) -> float:
        return INF if self.inf or not self.paths else max(b for _, b in self.paths.values())

    @property
    def r_max_finite(self) -> float:
        """Largest r over the finite paths (∞ when there are none)."""
        return max((b for _, b in self.paths.values()), default=INF)

    @property
    def m(self) -> float:
        """The largest cumulative stride over the finite paths (∞ when there are none)."""
        return max(self.paths, default=INF)


def _merge(out: Dict[float, Pair], m: float, a: float, b: float) -> None:
    old = out.get(m)
    out[m] = (a, b) if old is None else (min(old[0], a), max(old[1], b))


Tags = Tuple[Optional[str], ...]


class _RF:
    """The receptive-field state of one tensor: which dims are the input's H and W
    (``tags``, None where a dim is not spatial; None altogether when unknown) and the
    paths per axis."""

    __slots__ = ("tags", "h", "w")

    def __init__(self, tags: Optional[Tags], h: _Axis, w: _Axis) -> None:
        self.tags, self.h, self.w = tags, h, w

    def ax(self, t: str) -> _Axis:
        return self.h if t == "h" else self.w

    @property
    def is_global(self) -> bool:
        return not self.h.paths and not self.w.paths

    @classmethod
    def global_(cls, tags: Optional[Tags] = None) -> "_RF":
        return cls(tags, _Axis.infinite(), _Axis.infinite())

    def with_tags(self, tags: Optional[Tags]) -> "_RF":
        return _RF(tags, self.h, self.w)

    def pos(self, t: str) -> Optional[int]:
        if self.tags is None:
            return None
        for i, u in enumerate(self.tags):
            if u == t:
                return i
        return None


def _join(rfs: Sequence[_RF], tags: Optional[Tags]) -> _RF:
    return _RF(tags, _Axis.join(r.h for r in rfs), _Axis.join(r.w for r in rfs))


# =============================================================================
# The report
# =============================================================================


def _fmt(v: Optional[float], digits: int = 2) -> str:
    if v is None:
        return "-"
    if v == INF:
        return "∞"
    if abs(v - round(v)) < 1e-9:
        return str(int(round(v)))
    return f"{v:.{digits}f}".rstrip("0").rstrip(".")


def _fmt_pair(p: Optional[Sequence[Optional[float]]], sep: str = "×") -> str:
    if p is None:
        return "-"
    a, b = _fmt(p[0]), _fmt(p[1])
    return a if a == b else f"{a}{sep}{b}"


def _num(v: float) -> Union[int, float]:
    return int(round(v)) if v != INF and abs(v - round(v)) < 1e-9 else v


#: kinds of rows that are layers in the paper's sense (they compute features or resample them)
LAYER_KINDS = ("conv", "linear", "pool", "resize")
#: the rules of :meth:`RFReport.unproductive`
UNPRODUCTIVE_RULES = ("rfa-toolbox", "eq5")


@dataclass(frozen=True)
class RFLayer:
    """One row of the report: a module call, or a function that changes or joins receptive fields.

    Every pair is (height axis, width axis). ``kernel`` is k_eff (dilation counted
    unless ``ignore_dilation``), ``stride`` the layer's own (fractional for
    learnable resizers and interpolation), ``m`` the cumulative stride at its
    output (the largest over the finite paths), ``r_min``/``r_max`` over all
    paths (∞: global pooling or context), ``r_max_finite`` over the finite paths
    only, ``in_r_min`` the smallest r_min of its inputs (Eq. 5), ``size`` the
    output feature map at the analysed input size (None once spatial dims are
    gone), ``in_m`` the cumulative stride of its input (with several inputs the
    smallest, the largest input map; ∞ when no finite path reaches it).
    """

    name: str
    op: str
    kind: str  # input, conv, linear, pool, resize, global, join, pointwise, reshape
    kernel: Pair
    stride: Pair
    r_min: Pair
    r_max: Pair
    r_max_finite: Pair
    m: Pair
    in_r_min: Pair
    size: Optional[Tuple[int, int]]
    in_m: Pair = (1.0, 1.0)

    @property
    def is_infinite(self) -> bool:
        """Every path is infinite on some axis (the head after global pooling, a squeeze-excitation branch)."""
        return INF in self.r_min

    @property
    def is_layer(self) -> bool:
        return self.kind in LAYER_KINDS


@dataclass
class RFReport:
    """What :func:`analyze` returns. ``layers`` in execution order (the input first)."""

    model: str
    input_size: Tuple[int, int]
    ignore_dilation: bool
    layers: List[RFLayer] = field(default_factory=list)
    filter_inf: bool = False
    #: ops from outside torch (wrapped functions, custom leaf modules) that kept the spatial size and
    #: were therefore taken as pointwise; give ``rules=`` for any that move spatial positions
    assumed_pointwise: List[str] = field(default_factory=list)
    #: where the analysis made a call the user should know about (a spatial dim merged into others)
    notes: List[str] = field(default_factory=list)

    # -- the numbers ------------------------------------------------------------

    def _extractor(self) -> List[RFLayer]:
        return [r for r in self.layers if not r.is_infinite]

    @property
    def min_feasible_resolution(self) -> Tuple[Union[int, float], Union[int, float]]:
        """(H, W): the smallest input for which no layer is unproductive (SPEC §2.6, refinement Eq. 7).

        Over every layer of the feature extractor (before global pooling: rows with
        a finite r_min), the largest of its r_min at the output and of k_eff·m, the
        kernel times the cumulative stride at its output.
        """
        return tuple(_num(max((v for v, _ in self._feasible_terms(i)), default=1.0)) for i in range(2))  # type: ignore

    def min_feasible_layers(self) -> Tuple[str, str]:
        """The layer that sets :attr:`min_feasible_resolution`, per axis (with the term: r_min or k·m)."""
        out = []
        for i in range(2):
            terms = self._feasible_terms(i)
            if not terms:
                out.append("-")
                continue
            best = max(v for v, _ in terms)
            out.append(next(w for v, w in terms if v == best))
        return tuple(out)  # type: ignore[return-value]

    def _feasible_terms(self, i: int) -> List[Tuple[float, str]]:
        terms = []
        for r in self._extractor():
            if r.r_min[i] == INF:
                continue
            terms.append((r.r_min[i], f"{r.name}: r_min {_fmt(r.r_min[i])}"))
            if r.m[i] != INF:
                terms.append((r.kernel[i] * r.m[i], f"{r.name}: k·m = {_fmt(r.kernel[i])}·{_fmt(r.m[i])}"))
        return terms

    @property
    def max_feasible_resolution(self) -> Tuple[Union[int, float], Union[int, float]]:
        """(H, W): the largest finite r_max (over the finite paths of every layer; SPEC §2.6)."""
        return tuple(
            _num(max((r.r_max_finite[i] for r in self.layers if r.r_max_finite[i] != INF), default=1.0))
            for i in range(2)
        )  # type: ignore[return-value]

    @property
    def lower_bound_resolution(self) -> Tuple[Union[int, float], Union[int, float]]:
        """(H, W): rfa-toolbox's lower bound (``input_resolution_range(..., lower_bound=True)``).

        The largest of: the r_min of the input of every layer whose kernel is larger
        than 1 (the resolution at or below which such a layer is unproductive), and
        k_eff·m of every layer of the feature extractor. Below
        :attr:`min_feasible_resolution` when the largest r_min belongs to a 1×1 layer
        or to a layer's own output. (The tool takes the first axis for both; here
        each axis is its own.)
        """
        out = []
        for i in range(2):
            terms = [r.in_r_min[i] for r in self.layers
                     if r.is_layer and 1 < r.kernel[i] < INF and r.in_r_min[i] < INF]  # fmt: skip
            terms += [r.kernel[i] * r.m[i] for r in self._extractor() if r.m[i] != INF]
            out.append(_num(max(terms, default=1.0)))
        return tuple(out)  # type: ignore[return-value]

    def unproductive(
        self, input_size: Union[int, Sequence[int], None] = None, filter_inf: bool = True, rule: str = "rfa-toolbox"
    ) -> List[RFLayer]:
        """The layers that cannot add context at ``input_size`` (default: the analysed one).

        ``rule="rfa-toolbox"`` (the default) flags what the authors' tool flags
        (rfa-toolbox 1.7.0's ``obtain_border_layers``): a layer (convolution, linear,
        pooling, resizer) is unproductive when

        * its input's r_min is at least the input resolution and its own r_min
          larger, on both axes (refinement Eq. 5; ``"r_min"`` in
          :meth:`unproductive_reasons`), or
        * its input feature map, ``floor(R / m)`` with m the input's cumulative
          stride, is no larger than its kernel on both axes: the kernel covers
          the whole map, so the layer acts as a dense one (the tool's
          "behaves like fully connected" test, the k·m term of Eq. 7; ``"map"``).

        ``rule="eq5"`` is the paper's Eq. 5 alone (the input's r_min at least the
        resolution on both axes), without the feature-map test. With ``filter_inf``
        (the default, as rfa-toolbox's ``filter_dense``) layers whose receptive field
        is already infinite (the classifier head, the squeeze-and-excitation layers)
        are left out.
        """
        return [r for r, _ in self.unproductive_reasons(input_size, filter_inf, rule)]

    def unproductive_reasons(
        self, input_size: Union[int, Sequence[int], None] = None, filter_inf: bool = True, rule: str = "rfa-toolbox"
    ) -> List[Tuple[RFLayer, str]]:
        """:meth:`unproductive` with the test(s) that flagged each layer: ``"r_min"``, ``"map"`` or ``"r_min+map"``."""
        if rule not in UNPRODUCTIVE_RULES:
            raise ValueError(f"rf.unproductive: `rule` must be one of {list(UNPRODUCTIVE_RULES)}, got {rule!r}")
        size = self.input_size if input_size is None else _size_pair(input_size, "unproductive")
        out = []
        for r in self.layers:
            if not r.is_layer or (filter_inf and r.is_infinite):
                continue
            if rule == "eq5":
                if all(r.in_r_min[i] >= size[i] for i in range(2)):
                    out.append((r, "r_min"))
                continue
            why = []
            if all(r.in_r_min[i] >= size[i] and r.r_min[i] > size[i] for i in range(2)):
                why.append("r_min")
            if all(r.kernel[i] < INF and r.in_m[i] < INF and size[i] // r.in_m[i] <= r.kernel[i] for i in range(2)):
                why.append("map")
            if why:
                out.append((r, "+".join(why)))
        return out

    def underutilised(self, input_size: Union[int, Sequence[int], None] = None, filter_inf: bool = True) -> List[RFLayer]:
        """The layers whose r_min goes past the input (larger than it on both axes) but that are not unproductive.

        The paper's "underutilized" layers (appendix F.4; rfa-toolbox's "critical"
        layers, orange in its plots): they still add context, but part of their
        receptive-field expansion falls outside the image. ``filter_inf`` as in
        :meth:`unproductive`.
        """
        size = self.input_size if input_size is None else _size_pair(input_size, "underutilised")
        bad = {id(r) for r in self.unproductive(size, filter_inf)}
        return [r for r in self.layers
                if r.is_layer and not (filter_inf and r.is_infinite) and id(r) not in bad
                and all(r.r_min[i] > size[i] for i in range(2))]  # fmt: skip

    def filtered(self) -> "RFReport":
        """The report without infinite paths (rfa-toolbox's ``filter_all_inf_rf``): rows whose
        receptive field is infinite (global pooling, the head, squeeze-excitation branches)
        are dropped and r_max is taken over the finite paths."""
        rows = [replace(r, r_max=r.r_max_finite) for r in self.layers if not r.is_infinite]
        return replace(self, layers=rows, filter_inf=True)

    # -- text -------------------------------------------------------------------

    def table(self, all_rows: bool = False) -> str:
        """The per-layer table. Without ``all_rows`` only layers, global ops and joins
        are listed (normalisations, activations and reshapes are in :attr:`layers`)."""
        rows = [r for r in self.layers if all_rows or r.kind not in ("pointwise", "reshape")]
        head = ["layer", "op", "kernel", "stride", "m", "r_min", "r_max", "size"]
        body = [
            [r.name, r.op, _fmt_pair(r.kernel), _fmt_pair(r.stride),
             _fmt_pair(tuple(None if v == INF else v for v in r.m)), _fmt_pair(r.r_min),
             _fmt_pair(r.r_max), _fmt_pair(r.size)]
            for r in rows
        ]  # fmt: skip
        widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
        widths[0] = min(widths[0], 48)
        lines = ["  ".join(h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths)))]
        for b in body:
            name = b[0] if len(b[0]) <= widths[0] else "…" + b[0][-(widths[0] - 1):]
            cells = [name] + b[1:]
            lines.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))))
        return "\n".join(lines)

    def summary(self) -> str:
        h, w = self.input_size
        n_layers = sum(r.is_layer for r in self.layers)
        n_inf = sum(r.is_layer and r.is_infinite for r in self.layers)
        lo, hi = self.min_feasible_resolution, self.max_feasible_resolution
        lines = [
            f"{self.model} at {h}×{w}: {n_layers} layers"
            + (f" ({n_inf} after global pooling or in global-context branches: r = ∞)" if n_inf else "")
            + ("; dilation ignored" if self.ignore_dilation else "")
            + ("; infinite paths filtered" if self.filter_inf else ""),
            f"min feasible resolution: {_fmt_pair(lo)}  (set by {self._min_source()})",
            f"lower bound (rfa-toolbox): {_fmt_pair(self.lower_bound_resolution)}",
            f"max feasible resolution: {_fmt_pair(hi)}  (largest finite r_max)",
        ]
        bad = self.unproductive_reasons()
        if bad:
            names = ", ".join(f"{r.name} ({why})" for r, why in bad[:8]) + (f", … ({len(bad)} in all)" if len(bad) > 8 else "")
            lines.append(f"unproductive at {h}×{w}: {len(bad)} layer{'s' if len(bad) > 1 else ''}: {names}")
            lines.append("  (r_min: the input's r_min reaches the image; map: the kernel covers the whole input map)")
        else:
            lines.append(f"unproductive at {h}×{w}: none")
        under = self.underutilised()
        if under:
            names = ", ".join(r.name for r in under[:8]) + (f", … ({len(under)} in all)" if len(under) > 8 else "")
            lines.append(f"underutilised at {h}×{w} (r_min past the image): {len(under)}: {names}")
        if self.assumed_pointwise:
            lines.append("taken as pointwise (unknown ops that keep the map size; pass rules= if they do not): "
                         + ", ".join(self.assumed_pointwise))
        lines += [f"note: {t}" for t in self.notes[:3]]
        if len(self.notes) > 3:
            lines.append(f"note: … and {len(self.notes) - 3} more reshapes taken as global")
        return "\n".join(lines)

    def _min_source(self) -> str:
        a, b = self.min_feasible_layers()
        return a if a == b else f"H: {a}; W: {b}"

    def __str__(self) -> str:
        return self.table() + "\n\n" + self.summary()

    # -- plot -------------------------------------------------------------------

    def plot(self, path: Optional[str] = None, title: Optional[str] = None, axis: str = "h"):
        """r_min and r_max per layer on a log scale, the input size as a horizontal line.

        One point per layer (convolution, linear, pooling, resizer) of the feature
        extractor and the head; r_max over the finite paths, with a ▲ at the top where
        an infinite path (global context) reaches the layer. Saved to ``path`` when
        given; returns the matplotlib figure.
        """
        import matplotlib

        if path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        i = AXES.index(axis)
        rows = [r for r in self.layers if r.is_layer and r.r_min[i] != INF]
        xs = list(range(len(rows)))
        rmin = [r.r_min[i] for r in rows]
        rmax = [r.r_max_finite[i] for r in rows]
        fig, ax = plt.subplots(figsize=(min(max(5.0, 0.12 * len(rows) + 3), 16), 3.8))
        ax.plot(xs, rmin, "-", color="C0", lw=1.5, label="r_min")
        ax.plot(xs, rmax, "--", color="C1", lw=1.2, label="r_max (finite paths)")
        inf_x = [x for x, r in zip(xs, rows) if r.r_max[i] == INF]
        if inf_x:
            top = max(rmax + [self.input_size[i]]) * 1.6
            ax.plot(inf_x, [top] * len(inf_x), "^", color="C1", ms=3, label="r_max = ∞ (global context)")
        res = self.input_size[i]
        bad = {id(r) for r in self.unproductive()}
        bad_x = [x for x, r in zip(xs, rows) if id(r) in bad]
        if bad_x:
            ax.plot(bad_x, [rows[x].r_min[i] for x in bad_x], "x", color="C3", ms=5, label="unproductive")
        ax.axhline(res, color="k", lw=1, label=f"input {res}")
        lo = self.min_feasible_resolution[i]
        ax.axhline(lo, color="C3", lw=0.8, ls=":", label=f"min feasible {_fmt(lo)}")
        ax.set_yscale("log")
        ax.set_xlabel("layer")
        ax.set_ylabel(f"receptive field ({'height' if axis == 'h' else 'width'}, px)")
        if len(rows) <= 40:
            ax.set_xticks(xs)
            ax.set_xticklabels([r.name for r in rows], rotation=70, ha="right", fontsize=6)
        ax.set_title(title or f"{self.model} at {self.input_size[0]}×{self.input_size[1]}")
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=120)
            plt.close(fig)
        return fig


def _size_pair(v, who: str) -> Tuple[int, int]:
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        v = (v, v)
    try:
        h, w = (int(t) for t in v)
        ok = all(isinstance(t, numbers.Integral) and not isinstance(t, bool) for t in v)
    except (TypeError, ValueError):
        ok = False
    if not ok or h < 1 or w < 1:
        raise ValueError(f"rf.{who}: `input_size` must be a positive int or a pair (H, W) of them, got {v!r}")
    return h, w


# =============================================================================
# Tracing
# =============================================================================


def _elastic_down(x: torch.Tensor) -> torch.Tensor:
    """ELASTIC's down-sampling (replicate-pad odd sides, AvgPool2d(2, 2)) as one graph node."""
    return _half_resolution(x)


def _elastic_merge(low: torch.Tensor, out: torch.Tensor, backend: Optional[str]) -> torch.Tensor:
    """ELASTIC's merge (bilinear ×2 up-sample of ``low``, crop, sum) as one graph node."""
    return _ops.resize_blend(low, out, 1.0, 1.0, out.shape[-2:], False, ((2.0, 2.0), None), backend=backend)


def _timm_notrace() -> Tuple[List[type], List[Callable]]:
    if "timm" not in sys.modules:
        return [], []
    for mod in ("timm.layers._fx", "timm.models.layers._fx", "timm.models.fx_features"):
        try:
            fx = importlib.import_module(mod)
            return list(fx.get_notrace_modules()), list(fx.get_notrace_functions())
        except Exception:  # noqa: BLE001 - timm version without it
            continue
    return [], []


class _Tracer(torch.fx.Tracer):
    """torch.fx tracer keeping resizeops' resizers (and ``leaf``) as leaves; ELASTIC blocks
    are traced through with their down-sampling and merge as single nodes."""

    def __init__(self, leaf: Sequence[Union[type, str]] = (), autowrap: Sequence[Callable] = ()) -> None:
        super().__init__(autowrap_functions=tuple(autowrap))
        self._leaf_types = tuple(t for t in leaf if isinstance(t, type))
        self._leaf_names = {t for t in leaf if isinstance(t, str)}

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, _Resizer) or isinstance(m, self._leaf_types) or qualname in self._leaf_names:
            return True
        return super().is_leaf_module(m, qualname)

    def path_of_module(self, mod: nn.Module) -> str:
        # A module registered under several names (a DynOPool2d shared by a residual block's
        # two paths) is named after the call site: the executing parent's child of that name.
        if self.module_stack:
            parent_path = next(reversed(self.module_stack.values()))[0]
            try:
                parent = self.root.get_submodule(parent_path) if parent_path else self.root
            except AttributeError:
                parent = None
            if parent is not None:
                for name, child in parent._modules.items():
                    if child is mod:
                        return f"{parent_path}.{name}" if parent_path else name
        return super().path_of_module(mod)

    def call_module(self, m, forward, args, kwargs):
        if isinstance(m, ElasticBlock) and not self.is_leaf_module(m, self.path_of_module(m)):
            x = args[0] if args else kwargs["x"]
            out = m.high(x)
            if not m.elastic:
                return out + m.low(x)
            low = m.low(self.create_proxy("call_function", _elastic_down, (x,), {}))
            return self.create_proxy("call_function", _elastic_merge, (low, out, m.backend), {})
        return super().call_module(m, forward, args, kwargs)


def _trace(model: nn.Module, leaf_modules, concrete_args) -> torch.fx.GraphModule:
    timm_leaf, timm_fns = _timm_notrace()
    tracer = _Tracer(list(leaf_modules) + timm_leaf, timm_fns)
    name = type(model).__name__
    try:
        graph = tracer.trace(model, concrete_args=concrete_args)
    except Exception as e:  # noqa: BLE001 - every tracing failure becomes one clear error
        where = ""
        stack = list(getattr(tracer, "module_stack", {}).values())  # left as it was where tracing stopped
        if stack and stack[-1][0]:
            path, typ = stack[-1]
            where = f" in `{path}` ({getattr(typ, '__name__', typ)})"
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise RFTraceError(
            f"rf.analyze: torch.fx cannot trace {name}{where}: {type(e).__name__}: {msg}\n"
            "The analysis needs the model's graph. Usual fixes: move Python control flow that depends on tensor "
            "values or shapes out of forward (or fix it with concrete_args={...}); mark the submodule that does it "
            "as a leaf (leaf_modules=[TheModule] or ['path.to.module']; the analysis then treats it as one layer, "
            "pointwise when it keeps the spatial size); or wrap a helper function with torch.fx.wrap."
        ) from e
    required = [n for n in graph.nodes if n.op == "placeholder" and not n.args and not str(n.target).startswith("*")]
    if len(required) > 1:
        raise RFTraceError(
            f"rf.analyze: {name}.forward takes {len(required)} inputs ({', '.join(str(n.target) for n in required)}); "
            "the analysis feeds one image: fix the others with concrete_args={name: value}"
        )
    return torch.fx.GraphModule(tracer.root, graph, name)


# =============================================================================
# Op rules
# =============================================================================

def _pairf(v) -> Tuple[float, float]:
    if isinstance(v, (list, tuple)):
        if len(v) == 1:
            return float(v[0]), float(v[0])
        return float(v[-2]), float(v[-1])
    return float(v), float(v)


def _arg(args, kwargs, i: int, name: str, default=None):
    if name in kwargs:
        return kwargs[name]
    return args[i] if len(args) > i else default


def _interp_kernel(n: int, o: int, mode: str, antialias: bool) -> Tuple[float, float]:
    """(k, s) of a 1-D interpolation from n to o samples, in input pixels."""
    if n == o:
        return 1.0, 1.0
    s = n / o
    if mode in ("nearest", "nearest-exact"):
        return 1.0, s
    if mode == "area":  # adaptive average pooling: the widest window
        k = max(math.ceil((i + 1) * n / o) - math.floor(i * n / o) for i in range(o))
        return float(k), s
    taps = 4.0 if mode == "bicubic" else 2.0
    if antialias and s > 1:
        return float(math.ceil(taps * s)), s
    return taps, s


def _is_tensor(v) -> bool:
    return isinstance(v, torch.Tensor)


def _spatial_size(rf: Optional[_RF], v) -> Optional[Tuple[int, int]]:
    if rf is None or not _is_tensor(v) or rf.tags is None:
        return None
    ph, pw = rf.pos("h"), rf.pos("w")
    if ph is None or pw is None or len(rf.tags) != v.dim():
        return None
    return int(v.shape[ph]), int(v.shape[pw])


_REDUCTIONS = {"mean", "sum", "amax", "amin", "max", "min", "std", "var", "logsumexp", "nansum", "nanmean",
               "median", "nanmedian", "prod", "norm", "std_mean", "var_mean", "argmax", "argmin", "any", "all"}  # fmt: skip
_RESHAPES = {"view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze", "view_as", "reshape_as", "contiguous",
             "clone", "to", "type", "float", "double", "half", "bfloat16", "detach", "type_as", "requires_grad_",
             "cpu", "cuda", "ravel"}  # fmt: skip
_PERMUTES = {"permute", "transpose", "swapaxes", "swapdims", "movedim", "moveaxis", "t"}
_SPLITS = {"chunk", "split", "tensor_split", "split_with_sizes", "hsplit", "vsplit", "dsplit"}
_SOFTMAX = {"softmax", "log_softmax", "softmin", "_softmax"}
_NORM_FNS = {"group_norm", "instance_norm", "layer_norm"}
_CREATION = {"zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like", "new_zeros", "new_ones",
             "new_empty", "new_full", "size", "dim", "numel"}  # fmt: skip
_LINEAR_FNS = {"linear", "matmul", "mm", "bmm", "__matmul__"}
# Functions outside torch known to keep every spatial position (torchvision's / timm's regularisers).
_KNOWN_POINTWISE = {"stochastic_depth", "drop_block2d", "drop_path", "hard_sigmoid", "hard_swish", "hard_mish",
                    "swish", "mish", "sigmoid", "gelu", "gelu_tanh", "quick_gelu"}  # fmt: skip


def _is_torch_fn(t) -> bool:
    mod = getattr(t, "__module__", None) or ""
    return mod.startswith(("torch", "_operator", "operator", "builtins", "math")) or t in _FN_NAMES

_FN_NAMES: Dict[Any, str] = {
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
        _FN_NAMES[getattr(torch, _n)] = "cat"
for _n in ("max_pool2d", "avg_pool2d", "conv2d", "conv_transpose2d", "adaptive_avg_pool2d", "adaptive_max_pool2d",
           "pixel_shuffle", "pixel_unshuffle"):  # fmt: skip
    if hasattr(torch, _n):
        _FN_NAMES.setdefault(getattr(torch, _n), "adaptive_pool" if _n.startswith("adaptive") else _n)

_POOL_ARGS = {
    "max_pool2d": ["input", "kernel_size", "stride", "padding", "dilation"],
    "avg_pool2d": ["input", "kernel_size", "stride", "padding"],
    "lp_pool2d": ["input", "norm_type", "kernel_size", "stride"],
}

_PADS = (nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d) + (
    (nn.CircularPad2d,) if hasattr(nn, "CircularPad2d") else ()
)
_ADAPTIVE = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d,
             nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool3d)  # fmt: skip
_UPSAMPLE = (nn.Upsample,)  # UpsamplingNearest2d / UpsamplingBilinear2d subclass it


def _fn_name(node: torch.fx.Node) -> str:
    t = node.target
    if node.op == "call_method":
        return str(t)
    if t in _FN_NAMES:
        return _FN_NAMES[t]
    name = getattr(t, "__name__", str(t))
    mod = getattr(t, "__module__", None) or ""
    if mod.startswith(("torch", "_operator", "operator", "builtins", "math", "timm")) or mod == "":
        return name
    return f"{mod}.{name}"


class _OpFailed(Exception):
    def __init__(self, node: torch.fx.Node, error: BaseException) -> None:
        super().__init__(f"{node.format_node()}: {type(error).__name__}: {error}")
        self.node, self.error = node, error


class _Analyzer(torch.fx.Interpreter):
    """Runs the traced graph on a fake/meta input and propagates receptive fields beside the values."""

    def __init__(self, gm: torch.fx.GraphModule, ignore_dilation: bool, rules) -> None:
        super().__init__(gm, garbage_collect_values=False)
        self.ignore_dilation = ignore_dilation
        self.rules = dict(rules or {})
        self.rf: Dict[torch.fx.Node, Any] = {}
        self.rows: List[RFLayer] = []
        self._names: Dict[str, int] = {}
        self._first_input = True
        self.assumed: List[str] = []  # unknown non-torch ops taken as pointwise (they keep the spatial size)
        self.notes: List[str] = []

    # -- the interpreter hook ---------------------------------------------------

    def run_node(self, n: torch.fx.Node):
        try:
            value = super().run_node(n)
        except RFTraceError:
            raise
        except Exception as e:  # noqa: BLE001 - the model itself failed on the dummy input
            raise _OpFailed(n, e) from e
        if n.op == "placeholder":
            self.rf[n] = self._placeholder(n, value)
        elif n.op in ("call_module", "call_function", "call_method"):
            self.rf[n] = self._visit(n, value)
        else:
            self.rf[n] = None
        return value

    def _placeholder(self, n, value):
        if not _is_tensor(value):
            return None
        if not self._first_input:
            return None  # a second tensor input: analysed as a constant
        self._first_input = False
        if value.dim() < 2:
            raise RFTraceError(f"rf.analyze: the input must have spatial dims (…, H, W), got shape {tuple(value.shape)}")
        tags: Tags = (None,) * (value.dim() - 2) + ("h", "w")
        rf = _RF(tags, _Axis.origin(), _Axis.origin())
        self._row(n, "input", "input", (1.0, 1.0), (1.0, 1.0), rf, value, [rf], name="input")
        return rf

    # -- helpers ----------------------------------------------------------------

    def _name(self, n: torch.fx.Node) -> str:
        if n.op == "call_module":
            base = str(n.target)
        else:
            stack = n.meta.get("nn_module_stack") or {}
            path = next(reversed(stack.values()))[0] if stack else ""
            base = f"{path}/{n.name}" if path else n.name
        k = self._names.get(base, 0) + 1
        self._names[base] = k
        return base if k == 1 else f"{base}#{k}"

    def _row(self, n, op, kind, kernel, stride, rf_out, value, ins: Sequence[_RF], name=None) -> None:
        if not isinstance(rf_out, _RF):
            rf_out = next((r for r in _leaves(rf_out) if isinstance(r, _RF)), None)
            value = next((v for v in _leaves(value) if _is_tensor(v)), None)
            if rf_out is None:
                return
        in_min = tuple(min((r.ax(t).r_min for r in ins), default=INF) for t in AXES)
        in_m = tuple(min((r.ax(t).m for r in ins), default=INF) for t in AXES)
        self.rows.append(
            RFLayer(
                name=name or self._name(n),
                op=op,
                kind=kind,
                kernel=tuple(float(k) for k in kernel),  # type: ignore[arg-type]
                stride=tuple(float(s) for s in stride),  # type: ignore[arg-type]
                r_min=(rf_out.h.r_min, rf_out.w.r_min),
                r_max=(rf_out.h.r_max, rf_out.w.r_max),
                r_max_finite=(rf_out.h.r_max_finite, rf_out.w.r_max_finite),
                m=(rf_out.h.m, rf_out.w.m),
                in_r_min=in_min,  # type: ignore[arg-type]
                size=_spatial_size(rf_out, value),
                in_m=in_m,  # type: ignore[arg-type]
            )
        )

    def _error(self, n, what: str) -> RFTraceError:
        return RFTraceError(
            f"rf.analyze: cannot tell how `{self._label(n)}` changes the receptive field: {what}. "
            "Give it a rule: analyze(..., rules={<module class or function>: fn}) with fn(module_or_fn, in_size, "
            "out_size) returning (kernel, stride), 'global' or 'pointwise'."
        )

    def _label(self, n) -> str:
        if n.op == "call_module":
            return f"{n.target}` ({type(self.module.get_submodule(n.target)).__name__})"
        return f"{_fn_name(n)}` (in {self._name_peek(n)})"

    def _name_peek(self, n) -> str:
        stack = n.meta.get("nn_module_stack") or {}
        return next(reversed(stack.values()))[0] if stack else "the top-level forward"

    def _spatial(self, n, rf: _RF, val, k_op: Pair, s_op: Pair, op: str) -> Tuple[_RF, Pair, Pair]:
        """Apply a 2-D op acting on dims (-2, -1) with kernel/stride ``k_op``/``s_op`` (in op-dim order)."""
        if rf.is_global:
            return rf, k_op, s_op
        tags = rf.tags
        if tags is None or len(tags) < 2 or {tags[-2], tags[-1]} != {"h", "w"}:
            raise RFTraceError(
                f"rf.analyze: `{self._label(n)}` works on the last two dims, but the input's spatial dims are "
                f"at {_where(tags)} of shape {tuple(val.shape) if _is_tensor(val) else '?'}"
            )
        k = {tags[-2]: k_op[0], tags[-1]: k_op[1]}
        s = {tags[-2]: s_op[0], tags[-1]: s_op[1]}
        out = _RF(tags, rf.h.apply(k["h"], s["h"]), rf.w.apply(k["w"], s["w"]))
        return out, (k["h"], k["w"]), (s["h"], s["w"])

    def _keff(self, k, d) -> Pair:
        kh, kw = _pairf(k)
        if self.ignore_dilation:
            return kh, kw
        dh, dw = _pairf(d)
        return dh * (kh - 1) + 1, dw * (kw - 1) + 1

    # -- dispatch ---------------------------------------------------------------

    def _visit(self, n: torch.fx.Node, value):
        args = torch.fx.node.map_arg(n.args, lambda a: self.env[a])
        kwargs = torch.fx.node.map_arg(n.kwargs, lambda a: self.env[a])
        rargs = torch.fx.node.map_arg(n.args, lambda a: self.rf.get(a))
        rkwargs = torch.fx.node.map_arg(n.kwargs, lambda a: self.rf.get(a))
        operands = [(r, v) for r, v in zip(_leaves((rargs, rkwargs)), _leaves((args, kwargs))) if isinstance(r, _RF)]
        if n.op == "call_module":
            m = self.module.get_submodule(n.target)
            return self._module(n, m, args, kwargs, rargs, operands, value)
        name = _fn_name(n)
        if n.op == "call_function" and n.target in self.rules:
            return self._custom(n, n.target, name, operands, value)
        return self._function(n, name, args, kwargs, rargs, operands, value)

    def _custom(self, n, key, op, operands, value):
        if not operands:
            return None
        rf, v = operands[0]
        rule = self.rules[key]
        in_size = _spatial_size(rf, v) or (0, 0)
        out_size = _spatial_size(rf, value) if _is_tensor(value) and rf.tags and len(rf.tags) == value.dim() else None
        got = rule(self.module.get_submodule(n.target) if n.op == "call_module" else n.target, in_size, out_size)
        if got == "pointwise":
            out = self._pointwise(n, operands, value)
            self._row(n, op, "pointwise", (1, 1), (1, 1), out, value, [r for r, _ in operands])
            return out
        if got == "global":
            out = _map_out(value, lambda t: _RF.global_())
            self._row(n, op, "global", (INF, INF), (1, 1), out, value, [r for r, _ in operands])
            return out
        k, s = got
        out, kk, ss = self._spatial(n, rf, v, _pairf(k), _pairf(s), op)
        out = out.with_tags(_tags_for(out.tags, value))
        self._row(n, op, "conv", kk, ss, out, value, [rf])
        return out

    # .. modules ..................................................................

    def _module(self, n, m: nn.Module, args, kwargs, rargs, operands, value):
        op = type(m).__name__
        ins = [r for r, _ in operands]
        if not operands:
            self._row(n, op, "pointwise", (1, 1), (1, 1), None, value, ins)
            return None
        for key in (type(m),) + type(m).__mro__[1:]:
            if key in self.rules:
                return self._custom(n, key, op, operands, value)
        rf, x = operands[0]
        if isinstance(m, DynOPool2d):
            rh, rw = m.ratio
            k, s = (1 + 1 / (2 * rh), 1 + 1 / (2 * rw)), (1 / rh, 1 / rw)
            out, kk, ss = self._spatial(n, rf, x, k, s, op)
            self._row(n, op, "resize", kk, ss, out, value, ins)
            return out
        if isinstance(m, ShapeAdaptor):
            return self._shape_adaptor(n, m, op, operands, value)
        if isinstance(m, nn.Conv2d):
            k = self._keff(m.kernel_size, m.dilation)
            out, kk, ss = self._spatial(n, rf, x, k, _pairf(m.stride), op)
            self._row(n, op, "conv", kk, ss, out, value, ins)
            return out
        if isinstance(m, nn.ConvTranspose2d):
            return self._conv_transpose(n, op, rf, x, m.kernel_size, m.stride, m.dilation, value)
        if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d, nn.LPPool2d)):
            stride = m.stride if m.stride is not None else m.kernel_size
            d = getattr(m, "dilation", 1)
            out, kk, ss = self._spatial(n, rf, x, self._keff(m.kernel_size, d), _pairf(stride), op)
            self._row(n, op, "pool", kk, ss, out, value, ins)
            return out
        if isinstance(m, nn.FractionalMaxPool2d):
            return self._by_size(n, op, "pool", rf, x, _pairf(m.kernel_size), value)
        if isinstance(m, _ADAPTIVE):
            out = _map_out(value, lambda t: _RF.global_(_keep_tags(rf, x, t)))
            self._row(n, op, "global", (INF, INF), (1, 1), out, value, ins)
            return out
        if isinstance(m, _UPSAMPLE):
            return self._interpolate(n, op, rf, x, m.mode, bool(m.align_corners), False, value)
        if isinstance(m, nn.PixelShuffle):
            f = 1.0 / m.upscale_factor
            return self._resample(n, op, rf, x, (1.0, 1.0), (f, f), value)
        if isinstance(m, nn.PixelUnshuffle):
            f = float(m.downscale_factor)
            return self._resample(n, op, rf, x, (f, f), (f, f), value)
        if isinstance(m, _PADS):
            out = rf.with_tags(rf.tags)
            self._row(n, op, "pointwise", (1, 1), (1, 1), out, value, ins)
            return out
        if isinstance(m, (nn.Flatten, nn.Unflatten)):
            out = self._reshape(n, rf, x, value)
            self._row(n, op, "reshape", (1, 1), (1, 1), out, value, ins)
            return out
        if isinstance(m, (nn.Linear, nn.Bilinear, nn.LazyLinear)):
            out = self._contract_last(n, operands, value)
            kind_k = tuple(INF if (rf.tags and rf.tags[-1] == t) else 1.0 for t in AXES)
            self._row(n, op, "linear", kind_k, (1, 1), out, value, ins)
            return out
        if isinstance(m, (nn.Softmax, nn.LogSoftmax, nn.Softmin)):
            out = self._global_context(n, rf, x, [m.dim] if m.dim is not None else None, value)
            self._row(n, op, "pointwise", (1, 1), (1, 1), out, value, ins)
            return out
        if isinstance(m, (nn.GroupNorm,)) or (
            isinstance(m, nn.modules.instancenorm._InstanceNorm) and not (m.track_running_stats and not m.training)
        ):
            out = self._global_context(n, rf, x, list(range(1, x.dim())) if _is_tensor(x) else None, value)
            self._row(n, op, "pointwise", (1, 1), (1, 1), out, value, ins)
            return out
        if isinstance(m, nn.LayerNorm):
            nd = len(m.normalized_shape)
            out = self._global_context(n, rf, x, list(range(-nd, 0)), value)
            self._row(n, op, "pointwise", (1, 1), (1, 1), out, value, ins)
            return out
        ks, st = getattr(m, "kernel_size", None), getattr(m, "stride", None)
        if ks is not None and st is not None and not rf.is_global:  # duck-typed conv / pool (timm's, your own)
            try:
                k = self._keff(ks, getattr(m, "dilation", 1))
                s = _pairf(st)
            except (TypeError, ValueError):
                k = None
            if k is not None:
                out, kk, ss = self._spatial(n, rf, x, k, s, op)
                out = out.with_tags(_tags_for(out.tags, value))
                self._row(n, op, "pool" if "pool" in op.lower() else "conv", kk, ss, out, value, ins)
                return out
        out = self._pointwise(n, operands, value)
        if not any(c.__module__.startswith("torch.nn") and c is not nn.Module for c in type(m).__mro__):
            self._assume(f"{n.target} ({op})")  # a subclass of a torch.nn layer is that layer
        self._row(n, op, "pointwise", (1, 1), (1, 1), out, value, ins)
        return out

    def _shape_adaptor(self, n, m: ShapeAdaptor, op, operands, value):
        s = m.scale()
        if isinstance(m, ShapeAdaptorMaxPool2d):
            full, xf = operands[0]
            low, _, _ = self._spatial(n, full, xf, (2.0, 2.0), (2.0, 2.0), op)  # the max-pool 2×2 branch
            d_low = (xf.shape[-2] // 2, xf.shape[-1] // 2)
        elif isinstance(getattr(m, "low", None), (nn.MaxPool2d, nn.AvgPool2d)):
            # A cell with its own pooling layer as the low branch (convert's AutoSC and AutoTL cells).
            full, xf = operands[0]
            pool = m.low
            k = self._keff(pool.kernel_size, getattr(pool, "dilation", 1))
            low, _, _ = self._spatial(n, full, xf, k, _pairf(pool.stride or pool.kernel_size), op)
            d_low = tuple(pool(xf).shape[-2:])
        else:
            if len(operands) < 2:
                raise RFTraceError(f"rf.analyze: `{n.target}` (ShapeAdaptor) needs forward(x_low, x_full)")
            (low, xl), (full, xf) = operands[0], operands[1]
            d_low = (xl.shape[-2], xl.shape[-1])
        d_full = (xf.shape[-2], xf.shape[-1])
        o = (value.shape[-2], value.shape[-1])
        # Full branch: bilinear D → floor(D·s) at the learned stride 1/s; low branch: bilinear
        # from its own size, its stride scaled by its down-sampling relative to the full branch.
        kf = tuple(1.0 if o[i] == d_full[i] else 2.0 for i in range(2))
        sf = (1.0 / s, 1.0 / s)
        kl = tuple(1.0 if o[i] == d_low[i] else 2.0 for i in range(2))
        sl = tuple(sf[i] * d_low[i] / d_full[i] for i in range(2))
        f_out, kk, ss = self._spatial(n, full, xf, kf, sf, op)
        l_out, _, _ = self._spatial(n, low, xf, kl, sl, op)
        out = _join([f_out, l_out], f_out.tags)
        self._row(n, op, "resize", kk, ss, out, value, [r for r, _ in operands])
        return out

    # .. functions ................................................................

    def _function(self, n, name, args, kwargs, rargs, operands, value):
        ins = [r for r, _ in operands]
        if not operands:
            return None
        base = name.lstrip("_")
        if base in ("size", "dim", "numel", "shape") or name in _CREATION:
            return None
        rf, x = operands[0]
        if name == "getitem":
            if isinstance(rargs[0], (tuple, list)):
                return rargs[0][args[1]] if isinstance(args[1], int) else type(rargs[0])(rargs[0][args[1]])
            if not _is_tensor(args[0]):
                return _map_out(value, lambda t: rf)
            return self._getitem(n, rf, args[0], args[1], value)
        if name == "elastic_down":
            out, kk, ss = self._spatial(n, rf, x, (2.0, 2.0), (2.0, 2.0), name)
            self._row(n, "elastic_down (avg_pool 2×2)", "pool", kk, ss, out, value, ins)
            return out
        if name == "elastic_merge":
            (low, xl), (full, xf) = operands[0], operands[1]
            up, kk, ss = self._spatial(n, low, xl, (2.0, 2.0), (0.5, 0.5), name)
            out = _join([full, up], full.tags)
            self._row(n, "elastic_merge (up×2 + add)", "join", kk, ss, out, value, ins)
            return out
        if name == "conv2d":
            w = _arg(args, kwargs, 1, "weight")
            k = self._keff(tuple(w.shape[-2:]), _arg(args, kwargs, 5, "dilation", 1))
            out, kk, ss = self._spatial(n, rf, x, k, _pairf(_arg(args, kwargs, 3, "stride", 1)), name)
            self._row(n, name, "conv", kk, ss, out, value, ins)
            return out
        if name == "conv_transpose2d":
            w = _arg(args, kwargs, 1, "weight")
            return self._conv_transpose(n, name, rf, x, tuple(w.shape[-2:]), _arg(args, kwargs, 3, "stride", 1),
                                        _arg(args, kwargs, 7, "dilation", 1), value)  # fmt: skip
        if name in _POOL_ARGS:
            names = _POOL_ARGS[name]
            kernel = _arg(args, kwargs, names.index("kernel_size"), "kernel_size")
            stride = _arg(args, kwargs, names.index("stride"), "stride") or kernel
            d = _arg(args, kwargs, names.index("dilation"), "dilation", 1) if "dilation" in names else 1
            out, kk, ss = self._spatial(n, rf, x, self._keff(kernel, d), _pairf(stride), name)
            self._row(n, name, "pool", kk, ss, out, value, ins)
            return out
        if name == "fractional_max_pool2d":
            return self._by_size(n, name, "pool", rf, x, _pairf(_arg(args, kwargs, 1, "kernel_size")), value)
        if name == "adaptive_pool":
            out = _map_out(value, lambda t: _RF.global_(_keep_tags(rf, x, t)))
            self._row(n, name, "global", (INF, INF), (1, 1), out, value, ins)
            return out
        if name in ("interpolate", "upsample_bilinear", "upsample_nearest"):
            if name == "interpolate":
                mode = _arg(args, kwargs, 3, "mode", "nearest")
                ac = bool(_arg(args, kwargs, 4, "align_corners", False))
                aa = bool(_arg(args, kwargs, 6, "antialias", False))
            else:
                mode, ac, aa = ("bilinear", True, False) if name == "upsample_bilinear" else ("nearest", False, False)
            return self._interpolate(n, name, rf, x, mode, ac, aa, value)
        if name in ("pixel_shuffle", "pixel_unshuffle"):
            f = float(_arg(args, kwargs, 1, "upscale_factor" if name == "pixel_shuffle" else "downscale_factor"))
            if name == "pixel_shuffle":
                return self._resample(n, name, rf, x, (1.0, 1.0), (1.0 / f, 1.0 / f), value)
            return self._resample(n, name, rf, x, (f, f), (f, f), value)
        if name == "pad":
            out = rf.with_tags(rf.tags)
            self._row(n, name, "pointwise", (1, 1), (1, 1), out, value, ins)
            return out
        if base in ("pad_same",):  # timm's dynamic 'same' padding
            return rf
        if base in ("conv2d_same",):  # timm
            w = _arg(args, kwargs, 1, "weight")
            k = self._keff(tuple(w.shape[-2:]), _arg(args, kwargs, 5, "dilation", 1))
            out, kk, ss = self._spatial(n, rf, x, k, _pairf(_arg(args, kwargs, 3, "stride", 1)), name)
            self._row(n, name, "conv", kk, ss, out, value, ins)
            return out
        if base in ("max_pool2d_same", "avg_pool2d_same"):  # timm
            kernel = _arg(args, kwargs, 1, "kernel_size")
            stride = _arg(args, kwargs, 2, "stride") or kernel
            d = _arg(args, kwargs, 4, "dilation", 1) if base.startswith("max") else 1
            out, kk, ss = self._spatial(n, rf, x, self._keff(kernel, d), _pairf(stride), name)
            self._row(n, name, "pool", kk, ss, out, value, ins)
            return out
        if base == "patch_merging_pad":  # torchvision Swin: 2×2 space-to-depth on (…, H, W, C)
            out = self._on_axes(n, rf, (2.0, 2.0), (2.0, 2.0), value)
            self._row(n, "patch_merging (2×2)", "resize", (2, 2), (2, 2), out, value, ins)
            return out
        if base == "shifted_window_attention":  # torchvision Swin: attention within windows of (wh, ww)
            ws = _pairf(_arg(args, kwargs, 4, "window_size"))
            out = self._on_axes(n, rf, ws, (1.0, 1.0), value)
            self._row(n, "shifted_window_attention", "conv", ws, (1, 1), out, value, ins)
            return out
        if name in ("cat", "stack"):
            return self._cat(n, name, args, kwargs, operands, value)
        if name in _RESHAPES:
            return self._reshape(n, rf, x, value)
        if name in _PERMUTES:
            return self._permute(n, name, rf, x, args[1:], kwargs, value)
        if name in _SPLITS or name == "unbind":
            dim = _arg(args, kwargs, 2 if name != "unbind" else 1, "dim", 0)
            return _map_out(value, lambda t: self._keep_or_drop(rf, x, t, dim if name == "unbind" else None))
        if name in ("expand", "expand_as", "repeat", "tile", "broadcast_to"):
            return _map_out(value, lambda t: rf.with_tags(_tags_for(_right_align(rf.tags, t.dim()), t)))
        if base in _REDUCTIONS and not (len(operands) > 1 and base in ("max", "min")):
            dims = _arg(args, kwargs, 1, "dim", None)
            keep = bool(_arg(args, kwargs, 2, "keepdim", False))
            return self._reduce(n, name, rf, x, dims, keep, value, ins)
        if base in _SOFTMAX:
            out = self._global_context(n, rf, x, [_arg(args, kwargs, 1, "dim", -1)], value)
            return out
        if base in _NORM_FNS:
            if base == "layer_norm":
                shape = _arg(args, kwargs, 1, "normalized_shape", ())
                nd = 1 if isinstance(shape, int) else len(shape)
                return self._global_context(n, rf, x, list(range(-nd, 0)), value)
            return self._global_context(n, rf, x, list(range(1, x.dim())), value)
        if name in _LINEAR_FNS:
            out = self._contract_last(n, operands if name != "linear" else operands[:1], value)
            if len(operands) > 1 and name != "linear":
                self._row(n, name, "join", (1, 1), (1, 1), out, value, ins)
            return out
        out = self._pointwise(n, operands, value)
        if n.op == "call_function" and not _is_torch_fn(n.target) and base not in _KNOWN_POINTWISE:
            self._assume(f"{name} (in {self._name_peek(n)})")
        if len({id(r) for r in ins}) > 1:
            self._row(n, name, "join", (1, 1), (1, 1), out, value, ins)
        return out

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def _assume(self, label: str) -> None:
        if label not in self.assumed:
            self.assumed.append(label)

    def _on_axes(self, n, rf: _RF, k_hw: Pair, s_hw: Pair, value) -> _RF:
        """An op acting on the spatial dims wherever they are (e.g. channels-last), same rank out."""
        if rf.is_global:
            return rf
        if rf.pos("h") is None or rf.pos("w") is None:
            raise RFTraceError(f"rf.analyze: `{self._label(n)}` resamples the map, but its spatial dims are unknown")
        return _RF(_tags_for(rf.tags, value), rf.h.apply(k_hw[0], s_hw[0]), rf.w.apply(k_hw[1], s_hw[1]))

    # .. rule bodies ..............................................................

    def _conv_transpose(self, n, op, rf, x, kernel, stride, dilation, value):
        ke = self._keff(kernel, dilation)
        sh, sw = _pairf(stride)
        # Each output reads at most floor((k_eff − 1)/s) + 1 inputs; the output grid is s times finer.
        k = (math.floor((ke[0] - 1) / sh) + 1, math.floor((ke[1] - 1) / sw) + 1)
        out, kk, ss = self._spatial(n, rf, x, k, (1.0 / sh, 1.0 / sw), op)
        self._row(n, op, "resize", kk, ss, out, value, [rf])
        return out

    def _by_size(self, n, op, kind, rf, x, k, value):
        s = (x.shape[-2] / value.shape[-2], x.shape[-1] / value.shape[-1])
        out, kk, ss = self._spatial(n, rf, x, k, s, op)
        self._row(n, op, kind, kk, ss, out, value, [rf])
        return out

    def _interpolate(self, n, op, rf, x, mode, align_corners, antialias, value):
        kh, sh = _interp_kernel(int(x.shape[-2]), int(value.shape[-2]), mode, antialias)
        kw, sw = _interp_kernel(int(x.shape[-1]), int(value.shape[-1]), mode, antialias)
        out, kk, ss = self._spatial(n, rf, x, (kh, kw), (sh, sw), op)
        self._row(n, f"{op} ({mode})", "resize", kk, ss, out, value, [rf])
        return out

    def _resample(self, n, op, rf, x, kern, st, value):
        # pixel_shuffle(f): kernel 1, stride 1/f; pixel_unshuffle(f): kernel f, stride f.
        out, kk, ss = self._spatial(n, rf, x, kern, st, op)
        self._row(n, op, "resize", kk, ss, out, value, [rf])
        return out

    def _getitem(self, n, rf: _RF, x: torch.Tensor, idx, value):
        if rf.is_global:
            return _map_out(value, lambda t: _RF.global_())
        items = list(idx) if isinstance(idx, tuple) else [idx]
        if any(isinstance(i, (torch.Tensor, list)) or (i is not None and not isinstance(i, (int, slice, type(Ellipsis))))
               for i in items):  # fmt: skip
            out = self._pointwise(n, [(rf, x)], value)
            return out
        n_real = sum(1 for i in items if i is not None and i is not Ellipsis)
        if Ellipsis in items:
            e = items.index(Ellipsis)
            items = items[:e] + [slice(None)] * (x.dim() - n_real) + items[e + 1:]
        items += [slice(None)] * (x.dim() - sum(1 for i in items if i is not None))
        tags = rf.tags if rf.tags is not None else (None,) * x.dim()
        new_tags: List[Optional[str]] = []
        axes = {"h": rf.h, "w": rf.w}
        strides = {"h": 1.0, "w": 1.0}
        d = 0
        for i in items:
            if i is None:
                new_tags.append(None)
                continue
            t = tags[d] if d < len(tags) else None
            if isinstance(i, slice):
                step = i.step or 1
                if t is not None and step != 1:
                    axes[t] = axes[t].apply(1.0, float(step))
                    strides[t] = float(step)
                new_tags.append(t)
            d += 1  # an int index drops the dim (its receptive field stays)
        out = _RF(tuple(new_tags), axes["h"], axes["w"])
        if not _is_tensor(value) or len(new_tags) != value.dim():
            return rf
        if strides["h"] != 1 or strides["w"] != 1:
            self._row(n, "getitem (strided slice)", "resize", (1, 1), (strides["h"], strides["w"]), out, value, [rf])
        return out

    def _cat(self, n, name, args, kwargs, operands, value):
        ins = [r for r, _ in operands]
        dim = _arg(args, kwargs, 1, "dim", 0)
        first, x = operands[0]
        if name == "stack":
            tags = first.tags
            if tags is not None:
                d = dim % (len(tags) + 1)
                tags = tags[:d] + (None,) + tags[d:]
        else:
            tags = first.tags
        finite = [r for r in ins if not r.is_global]
        if finite:
            tags = next((r.tags for r in finite), tags)
            if name == "stack" and tags is not None and len(tags) != value.dim():
                d = dim % (len(tags) + 1)
                tags = tags[:d] + (None,) + tags[d:]
        out = _join(ins, tags if tags is not None and len(tags) == value.dim() else None)
        if len(ins) > 1:
            self._row(n, name, "join", (1, 1), (1, 1), out, value, ins)
        return out

    def _reshape(self, n, rf: _RF, x, value):
        """view / reshape / flatten / squeeze …: a spatial dim survives when the block structure
        around it does; a spatial dim of size > 1 merged with others makes the value global
        (a dense layer sees all of it next)."""
        if not _is_tensor(value) or not _is_tensor(x):
            return rf
        if rf.is_global:
            return _RF.global_()
        if rf.tags is None:
            return rf
        S, T = list(x.shape), list(value.shape)
        new: List[Optional[str]] = [None] * len(T)
        h, w = rf.h, rf.w
        pre_t = [1]
        for t in T:
            pre_t.append(pre_t[-1] * t)
        for p, tag in enumerate(rf.tags):
            if tag is None:
                continue
            pre = math.prod(S[:p])
            q = next((q for q in range(len(T)) if pre_t[q] == pre and T[q] == S[p] and new[q] is None), None)
            if q is not None:
                new[q] = tag
            elif S[p] > 1:
                if n.op == "call_module":
                    where, op = n.target, type(self.module.get_submodule(n.target)).__name__
                else:
                    where, op = self._name_peek(n), _fn_name(n)
                self._note(f"{where}: `{op}` {tuple(S)} → {tuple(T)} merges or splits a spatial dim of size > 1: "
                           "taken as global (a dense layer or attention follows)")
                return _RF.global_()
        return _RF(tuple(new), h, w)

    def _permute(self, n, name, rf: _RF, x, rest, kwargs, value):
        if rf.tags is None or not _is_tensor(x):
            return rf
        nd = x.dim()
        order = list(range(nd))
        if name == "permute":
            dims = rest[0] if len(rest) == 1 and isinstance(rest[0], (list, tuple)) else rest
            dims = kwargs.get("dims", dims)
            order = [int(d) % nd for d in dims]
        elif name == "t":
            order = order[::-1]
        elif name in ("movedim", "moveaxis"):
            src, dst = (rest + (None, None))[:2] if isinstance(rest, tuple) else (rest[0], rest[1])
            src = [src] if isinstance(src, int) else list(src)
            dst = [dst] if isinstance(dst, int) else list(dst)
            src, dst = [s % nd for s in src], [d % nd for d in dst]
            rem = [i for i in order if i not in src]
            order = [None] * nd  # type: ignore[list-item]
            for s_, d_ in zip(src, dst):
                order[d_] = s_
            it = iter(rem)
            order = [o if o is not None else next(it) for o in order]
        else:
            a = int(_arg(rest, kwargs, 0, "dim0", 0)) % nd
            b = int(_arg(rest, kwargs, 1, "dim1", 1)) % nd
            order[a], order[b] = order[b], order[a]
        return rf.with_tags(tuple(rf.tags[i] for i in order))

    def _keep_or_drop(self, rf: _RF, x, t, dim):
        if dim is None or rf.tags is None:
            return rf
        d = int(dim) % len(rf.tags)
        return rf.with_tags(rf.tags[:d] + rf.tags[d + 1:])

    def _reduce(self, n, name, rf: _RF, x, dims, keep, value, ins):
        if not _is_tensor(x):
            return rf
        nd = x.dim()
        if dims is None:
            dims_l = list(range(nd))
        else:
            dims_l = [int(d) % nd for d in (dims if isinstance(dims, (list, tuple)) else [dims])]
        tags = rf.tags if rf.tags is not None else (None,) * nd
        reduced = {tags[d] for d in dims_l if tags[d] is not None}
        h = _Axis.infinite() if "h" in reduced else rf.h
        w = _Axis.infinite() if "w" in reduced else rf.w
        new = tuple(t for i, t in enumerate(tags) if keep or i not in dims_l)
        out = _RF(new, h, w)
        out = _map_out(value, lambda t: out.with_tags(new if t.dim() == len(new) else None))
        if reduced:
            self._row(n, name, "global", tuple(INF if t in reduced else 1.0 for t in AXES), (1, 1), out, value, ins)
        return out

    def _global_context(self, n, rf: _RF, x, dims, value):
        """An op whose output mixes its own position with statistics over ``dims`` (softmax,
        group/instance/layer norm): a finite path (the position) and an infinite one per
        spatial axis among ``dims``."""
        if not _is_tensor(x) or rf.tags is None or dims is None:
            return rf
        nd = x.dim()
        hit = {rf.tags[int(d) % nd] for d in dims if rf.tags[int(d) % nd] is not None}
        h = _Axis.join([rf.h, _Axis.infinite()]) if "h" in hit else rf.h
        w = _Axis.join([rf.w, _Axis.infinite()]) if "w" in hit else rf.w
        return _RF(rf.tags, h, w)

    def _contract_last(self, n, operands, value):
        """linear / matmul: the last dim of the first operand (and dim -2 of the second) is summed
        over; a spatial dim there is global (a dense layer over it)."""
        rf, x = operands[0]
        hit = set()
        if rf.tags:
            if rf.tags[-1] is not None:
                hit.add(rf.tags[-1])
        if len(operands) > 1:
            r2, x2 = operands[1]
            if r2.tags and len(r2.tags) >= 2 and r2.tags[-2] is not None:
                hit.add(r2.tags[-2])
        if hit:
            if hit >= {"h", "w"} or rf.is_global:
                return _map_out(value, lambda t: _RF.global_())
            t = hit.pop()
            h = _Axis.infinite() if t == "h" else rf.h
            w = _Axis.infinite() if t == "w" else rf.w
            tags = tuple(u if u != t else None for u in rf.tags) if rf.tags else None
            return _RF(tags, h, w)
        return self._pointwise(n, operands, value)

    def _pointwise(self, n, operands, value):
        """Ops that keep every spatial position where it is (activations, norms, dropout,
        elementwise joins): the union of the operands' paths. Anything else that moves
        spatial positions is an error naming the op."""
        return _map_out(value, lambda t: self._pointwise_one(n, operands, t))

    def _pointwise_one(self, n, operands, out: torch.Tensor) -> _RF:
        rfs = [r for r, _ in operands]
        finite = [(r, v) for r, v in operands if not r.is_global and r.tags is not None and _is_tensor(v)]
        tags: List[Optional[str]] = [None] * out.dim()
        for r, v in finite:
            off = out.dim() - v.dim()
            for p, t in enumerate(r.tags):
                if t is None:
                    continue
                q = p + off
                if q < 0 or (v.shape[p] != out.shape[q] and v.shape[p] != 1) or (tags[q] not in (None, t)):
                    raise self._error(
                        n, f"it maps a tensor of shape {tuple(v.shape)} (spatial dims at {_where(r.tags)}) to "
                        f"{tuple(out.shape)}"
                    )
                tags[q] = t
        if not finite:
            # only global operands (a squeeze-excitation branch): keep dims that stay in place
            for r, v in operands:
                if r.tags is not None and _is_tensor(v) and v.dim() == out.dim() and len(r.tags) == out.dim():
                    tags = [t if v.shape[i] in (out.shape[i], 1) else None for i, t in enumerate(r.tags)]
                    break
            return _join(rfs, tuple(tags) if any(tags) else None)
        return _join(rfs, tuple(tags))


def _right_align(tags: Optional[Tags], nd: int) -> Optional[Tags]:
    if tags is None:
        return None
    if len(tags) >= nd:
        return tags[len(tags) - nd:]
    return (None,) * (nd - len(tags)) + tuple(tags)


def _tags_for(tags: Optional[Tags], value) -> Optional[Tags]:
    if tags is None or not _is_tensor(value) or len(tags) != value.dim():
        return None if not _is_tensor(value) else (tags if tags is None or len(tags) == value.dim() else None)
    return tags


def _keep_tags(rf: _RF, x, t) -> Optional[Tags]:
    return rf.tags if rf.tags is not None and _is_tensor(t) and len(rf.tags) == t.dim() else None


def _where(tags: Optional[Tags]) -> str:
    if tags is None:
        return "unknown dims"
    return "dims " + ", ".join(f"{i} ({t})" for i, t in enumerate(tags) if t is not None)


def _leaves(obj) -> List[Any]:
    out: List[Any] = []

    def walk(o):
        if isinstance(o, (list, tuple)):
            for i in o:
                walk(i)
        elif isinstance(o, dict):
            for i in o.values():
                walk(i)
        else:
            out.append(o)

    walk(obj)
    return out


def _map_out(value, fn):
    """Apply ``fn`` to each tensor of a (possibly nested tuple/list) output; None elsewhere."""
    if _is_tensor(value):
        return fn(value)
    if isinstance(value, (tuple, list)):
        return tuple(_map_out(v, fn) for v in value)
    return None


# =============================================================================
# analyze
# =============================================================================


def analyze(
    model: nn.Module,
    input_size: Union[int, Sequence[int]] = (224, 224),
    ignore_dilation: bool = False,
    *,
    filter_inf: bool = False,
    in_channels: Optional[int] = None,
    leaf_modules: Sequence[Union[type, str]] = (),
    rules: Optional[Mapping[Any, Callable]] = None,
    concrete_args: Optional[Dict[str, Any]] = None,
    name: Optional[str] = None,
) -> RFReport:
    """Receptive-field analysis of ``model`` at an input of ``input_size`` (SPEC §2.6).

    Args:
        model: any ``nn.Module`` torch.fx can trace (its learnable resizers are
            analysed at their current scales). Its parameters may be on the meta
            device (build it under ``with torch.device("meta"):`` to skip weight
            initialisation); otherwise nothing is computed for real either (fake tensors).
        input_size: H = W, or (H, W); only the feature-map sizes (and
            interpolation to fixed sizes) depend on it.
        ignore_dilation: count a dilated kernel as its undilated size, as
            rfa-toolbox does, to compare with it.
        filter_inf: return :meth:`RFReport.filtered` (infinite paths left out, as
            rfa-toolbox's ``filter_all_inf_rf``).
        in_channels: of the dummy input (default: the first convolution's).
        leaf_modules: module classes or qualified names to keep as single layers
            (e.g. a block torch.fx cannot trace): pointwise if they keep the
            spatial size, else a convolution if they have ``kernel_size`` and
            ``stride``, else an error asking for a rule.
        rules: ``{module class or function: fn}``, ``fn(module_or_function,
            in_size, out_size)`` returning ``(kernel, stride)`` (numbers or
            pairs), ``"global"`` or ``"pointwise"``.
        concrete_args: passed to ``torch.fx.Tracer.trace``.
        name: the model's name in the report (default: its class).

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        RFTraceError (a ValueError): torch.fx cannot trace the model, or an op
            moves spatial positions in a way the analysis does not know.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"rf.analyze: `model` must be a torch.nn.Module, got {type(model).__name__}")
    size = _size_pair(input_size, "analyze")
    gm = _trace(model, leaf_modules, concrete_args)
    tensors = list(model.parameters()) + list(model.buffers())
    p = tensors[0] if tensors else None
    device = p.device if p is not None else torch.device("cpu")
    dtype = next((t.dtype for t in tensors if t.is_floating_point()), torch.float32)
    if in_channels is None:
        first = next((m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))), None)
        in_channels = first.in_channels if first is not None else 3
    shape = (1, int(in_channels)) + size

    from .nn import refresh_shapes

    was_training = model.training
    adaptors = [m for m in model.modules() if isinstance(m, ShapeAdaptor)]
    saved_last = [m._last for m in adaptors]
    model.eval()
    try:
        if device.type != "meta":
            refresh_shapes(model)  # the resizers' host copies, read once, outside fake mode
        analyzer = _run(gm, shape, device, dtype, ignore_dilation, rules)
    finally:
        model.train(was_training)
        for m, last in zip(adaptors, saved_last):
            m._last = last
    report = RFReport(model=name or type(model).__name__, input_size=size, ignore_dilation=ignore_dilation,
                      layers=analyzer.rows, assumed_pointwise=analyzer.assumed, notes=analyzer.notes)  # fmt: skip
    return report.filtered() if filter_inf else report


def _run(gm, shape, device, dtype, ignore_dilation, rules) -> _Analyzer:
    if device.type == "meta":
        a = _Analyzer(gm, ignore_dilation, rules)
        with torch.no_grad():
            a.run(torch.empty(shape, device="meta", dtype=dtype))
        return a
    try:
        from torch._subclasses.fake_tensor import FakeTensorMode
    except ImportError:  # pragma: no cover - very old torch
        FakeTensorMode = None
    if FakeTensorMode is not None:
        a = _Analyzer(gm, ignore_dilation, rules)
        try:
            with torch.no_grad(), FakeTensorMode(allow_non_fake_inputs=True) as mode:
                a.run(mode.from_tensor(torch.empty(shape, device=device, dtype=dtype)))
            return a
        except _OpFailed:
            pass  # an op without a fake kernel, or one that reads values: run the model for real
    a = _Analyzer(gm, ignore_dilation, rules)
    try:
        with torch.no_grad():
            a.run(torch.zeros(shape, device=device, dtype=dtype))
    except _OpFailed as e:
        where = e.node.target if e.node.op == "call_module" else e.node.name
        raise RFTraceError(
            f"rf.analyze: the model failed on a dummy input of shape {shape} at `{where}`: "
            f"{type(e.error).__name__}: {e.error} (is `input_size` / `in_channels` right for it?)"
        ) from e.error
    return a


# =============================================================================
# Models by name, and the command line
# =============================================================================


def load_model(spec: str) -> Tuple[nn.Module, str]:
    """``torchvision:NAME``, ``timm:NAME`` or ``module.path:factory`` → (model, name).

    torchvision and timm models are built with ``weights=None`` / ``pretrained=False``
    on the meta device (no weight initialisation: the analysis needs none).
    """
    if ":" not in spec:
        raise ValueError(f"rf: model must be torchvision:NAME, timm:NAME or module.path:factory, got {spec!r}")
    source, _, obj = spec.partition(":")
    if source == "torchvision":
        import torchvision

        if obj not in torchvision.models.list_models():
            raise ValueError(f"rf: unknown torchvision model {obj!r} (see torchvision.models.list_models())")
        try:
            with torch.device("meta"):
                return torchvision.models.get_model(obj, weights=None), obj
        except Exception:  # noqa: BLE001 - a model whose construction needs real tensors (RegNet)
            return torchvision.models.get_model(obj, weights=None), obj
    if source == "timm":
        try:
            import timm
        except ImportError:
            raise ValueError("rf: timm models need timm installed (pip install timm)") from None
        if obj not in timm.list_models():
            raise ValueError(f"rf: unknown timm model {obj!r}")
        try:
            with torch.device("meta"):
                return timm.create_model(obj, pretrained=False), obj
        except Exception:  # noqa: BLE001 - a model whose construction needs real tensors
            return timm.create_model(obj, pretrained=False), obj
    try:
        module = importlib.import_module(source)
    except ImportError as e:
        raise ValueError(f"rf: cannot import {source!r}: {e}") from None
    factory = module
    for part in obj.split("."):
        if not hasattr(factory, part):
            raise ValueError(f"rf: {source!r} has no attribute {obj!r}")
        factory = getattr(factory, part)
    model = factory() if callable(factory) and not isinstance(factory, nn.Module) else factory
    if not isinstance(model, nn.Module):
        raise ValueError(f"rf: {spec!r} gave a {type(model).__name__}, not a torch.nn.Module")
    return model, obj


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m resizeops rf MODEL [--input H [W]] [--ignore-dilation] [--filter-inf] [--all] [--in-channels C]
    [--plot PATH]``."""
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m resizeops rf",
        description="Receptive-field analysis (SPEC §2.6): r_min / r_max per layer, the minimal and maximal "
        "feasible input resolution, unproductive layers.",
    )
    p.add_argument("model", help="torchvision:NAME, timm:NAME or module.path:factory (a callable returning an nn.Module)")
    p.add_argument("--input", nargs="+", type=int, default=[224], metavar="H [W]", help="input size (default 224)")
    p.add_argument("--ignore-dilation", action="store_true", help="count dilated kernels undilated (rfa-toolbox)")
    p.add_argument("--filter-inf", action="store_true", help="leave out infinite paths (global pooling/context)")
    p.add_argument("--all", action="store_true", help="list every node (norms, activations, reshapes too)")
    p.add_argument("--in-channels", type=int, default=None, help="channels of the input (default: the first conv's)")
    p.add_argument("--plot", metavar="PATH", help="save the r_min / r_max plot here")
    a = p.parse_args(argv)
    if len(a.input) > 2:
        p.error("--input takes H or H W")
    try:
        model, name = load_model(a.model)
        report = analyze(model, tuple(a.input) if len(a.input) == 2 else a.input[0], a.ignore_dilation,
                         filter_inf=a.filter_inf, in_channels=a.in_channels, name=name)  # fmt: skip
    except (ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(report.table(all_rows=a.all))
    print()
    print(report.summary())
    if a.plot:
        report.plot(a.plot)
        print(f"plot: {a.plot}")
    return 0
