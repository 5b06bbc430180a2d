"""What :func:`~resizeops.rf.analyze` returns: one :class:`RFLayer` per row, and the :class:`RFReport`.

The report derives the numbers of the receptive-field refinement paper from the
rows (``docs/SEMANTICS.md``, "Receptive fields"): the minimal feasible input
resolution (Eq. 7), the maximal one, rfa-toolbox's lower bound, the unproductive
layers at a resolution (Eq. 5, and the authors' tool's feature-map test) and
the underutilised ones. Its text and plot are written by ``render.py``.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field, replace
from typing import List, Optional, Sequence, Tuple, Union

from . import render
from .state import INF, Pair

#: kinds of rows that are layers in the paper's sense (they compute features or resample them)
LAYER_KINDS = ("conv", "linear", "pool", "resize")
#: the rules of :meth:`RFReport.unproductive`
UNPRODUCTIVE_RULES = ("rfa-toolbox", "eq5")


def _num(v: float) -> Union[int, float]:
    return int(round(v)) if v != INF and abs(v - round(v)) < 1e-9 else v


def size_pair(v, who: str) -> Tuple[int, int]:
    """``input_size`` (an int or a pair (H, W) of positive ints) as (H, W); ValueError naming ``rf.<who>``."""
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
        """(H, W): the smallest input for which no layer is unproductive (refinement paper, Eq. 7).

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
            fmt = render.fmt
            terms.append((r.r_min[i], f"{r.name}: r_min {fmt(r.r_min[i])}"))
            if r.m[i] != INF:
                terms.append((r.kernel[i] * r.m[i], f"{r.name}: k·m = {fmt(r.kernel[i])}·{fmt(r.m[i])}"))
        return terms

    @property
    def max_feasible_resolution(self) -> Tuple[Union[int, float], Union[int, float]]:
        """(H, W): the largest finite r_max over the finite paths of every layer (the refinement paper's
        largest feasible input resolution, §3.3)."""
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
        size = self.input_size if input_size is None else size_pair(input_size, "unproductive")
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
        size = self.input_size if input_size is None else size_pair(input_size, "underutilised")
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

    # -- text and plot (render.py) ----------------------------------------------

    def table(self, all_rows: bool = False) -> str:
        """The per-layer table. Without ``all_rows`` only layers, global ops and joins
        are listed (normalisations, activations and reshapes are in :attr:`layers`)."""
        return render.table(self, all_rows)

    def summary(self) -> str:
        """The numbers in a few lines: feasible resolutions, unproductive and underutilised layers, assumptions."""
        return render.summary(self)

    def __str__(self) -> str:
        return self.table() + "\n\n" + self.summary()

    def plot(self, path: Optional[str] = None, title: Optional[str] = None, axis: str = "h"):
        """r_min and r_max per layer on a log scale, the input size as a horizontal line.

        One point per layer (convolution, linear, pooling, resizer) of the feature
        extractor and the head; r_max over the finite paths, with a ▲ at the top where
        an infinite path (global context) reaches the layer. Saved to ``path`` when
        given; returns the matplotlib figure.
        """
        return render.plot(self, path, title, axis)
