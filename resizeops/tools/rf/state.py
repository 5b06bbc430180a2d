"""What the analysis carries for each tensor of the graph: its receptive-field paths.

Start with :class:`AxisPaths`, the recurrence of ``docs/SEMANTICS.md``,
"Receptive fields" (the receptive-field refinement paper, Eq. 1–4): along one
axis a path from the input carries (r, m), its receptive field and cumulative
stride, and a layer of effective kernel k and stride s maps it to
``(r + (k − 1)·m, m·s)``. A node keeps, per distinct m, only the smallest and
the largest r of the paths reaching it with that m: after the node a path's
receptive field is ``r + m·C`` with C ≥ 0 fixed by the later layers, so these
extremes are exact for every later minimum and maximum (keeping only the overall
smallest and largest r is not, when paths of different strides meet).

:class:`TensorRF` pairs the two axes with ``tags``: which dims of the tensor
are the input's H and W (they move with permutes and reshapes). The helpers
below match a state with the runtime value it belongs to.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch

INF = math.inf
Pair = Tuple[float, float]
#: the spatial axes, in the order of every (height, width) pair of the report
AXES = ("h", "w")
#: per dim of a tensor: "h", "w" or None (not spatial)
Tags = Tuple[Optional[str], ...]


def _stride_key(m: float) -> float:
    # Cumulative strides are products of (possibly fractional) strides; merge float noise.
    return float(f"{m:.12g}")


def _merge(out: Dict[float, Pair], m: float, a: float, b: float) -> None:
    old = out.get(m)
    out[m] = (a, b) if old is None else (min(old[0], a), max(old[1], b))


class AxisPaths:
    """Paths reaching a node along one axis: {cumulative stride m: (smallest r, largest r)} and
    whether an infinite path (global pooling / context) reaches it."""

    __slots__ = ("paths", "inf")

    def __init__(self, paths: Optional[Dict[float, Pair]] = None, inf: bool = False) -> None:
        self.paths: Dict[float, Pair] = paths or {}
        self.inf = bool(inf)

    @classmethod
    def origin(cls) -> "AxisPaths":
        """The input itself: one path, r = 1, m = 1."""
        return cls({1.0: (1.0, 1.0)})

    @classmethod
    def infinite(cls) -> "AxisPaths":
        """Only an infinite path (after global pooling, a reduction or a dense layer over the axis)."""
        return cls({}, True)

    def apply(self, k: float, s: float) -> "AxisPaths":
        """Every path through a layer of effective kernel ``k`` and stride ``s``:
        (r, m) → (r + (k − 1)·m, m·s)."""
        if k == INF or s == INF:
            return AxisPaths.infinite()
        out: Dict[float, Pair] = {}
        for m, (a, b) in self.paths.items():
            g = (k - 1.0) * m
            _merge(out, _stride_key(m * s), a + g, b + g)
        return AxisPaths(out, self.inf)

    @staticmethod
    def join(axes: Iterable["AxisPaths"]) -> "AxisPaths":
        """The union of the paths (add, cat, any op of several inputs)."""
        out: Dict[float, Pair] = {}
        inf = False
        for ax in axes:
            inf = inf or ax.inf
            for m, (a, b) in ax.paths.items():
                _merge(out, m, a, b)
        return AxisPaths(out, inf)

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


class TensorRF:
    """The receptive-field state of one tensor: which dims are the input's H and W
    (``tags``, None where a dim is not spatial; None altogether when unknown) and the
    paths per axis."""

    __slots__ = ("tags", "h", "w")

    def __init__(self, tags: Optional[Tags], h: AxisPaths, w: AxisPaths) -> None:
        self.tags, self.h, self.w = tags, h, w

    def ax(self, t: str) -> AxisPaths:
        return self.h if t == "h" else self.w

    @property
    def is_global(self) -> bool:
        """No finite path on either axis."""
        return not self.h.paths and not self.w.paths

    @classmethod
    def global_(cls, tags: Optional[Tags] = None) -> "TensorRF":
        return cls(tags, AxisPaths.infinite(), AxisPaths.infinite())

    def with_tags(self, tags: Optional[Tags]) -> "TensorRF":
        return TensorRF(tags, self.h, self.w)

    def pos(self, t: str) -> Optional[int]:
        """The dim tagged ``t`` ("h" or "w"), None when no dim is."""
        if self.tags is None:
            return None
        for i, u in enumerate(self.tags):
            if u == t:
                return i
        return None


def join(rfs: Sequence[TensorRF], tags: Optional[Tags]) -> TensorRF:
    """The union of the paths of ``rfs`` per axis, with ``tags``."""
    return TensorRF(tags, AxisPaths.join(r.h for r in rfs), AxisPaths.join(r.w for r in rfs))


# -- matching states with values ------------------------------------------------------


def is_tensor(v) -> bool:
    return isinstance(v, torch.Tensor)


def spatial_size(rf: Optional[TensorRF], v) -> Optional[Tuple[int, int]]:
    """(H, W) of the value ``v`` whose state is ``rf``; None when its spatial dims are not known."""
    if rf is None or not is_tensor(v) or rf.tags is None:
        return None
    ph, pw = rf.pos("h"), rf.pos("w")
    if ph is None or pw is None or len(rf.tags) != v.dim():
        return None
    return int(v.shape[ph]), int(v.shape[pw])


def right_align(tags: Optional[Tags], nd: int) -> Optional[Tags]:
    """``tags`` for a tensor of ``nd`` dims broadcast from it (expand, repeat)."""
    if tags is None:
        return None
    if len(tags) >= nd:
        return tags[len(tags) - nd:]
    return (None,) * (nd - len(tags)) + tuple(tags)


def tags_for(tags: Optional[Tags], value) -> Optional[Tags]:
    """``tags`` when they fit ``value``'s rank, else None (unknown)."""
    if tags is None or not is_tensor(value) or len(tags) != value.dim():
        return None if not is_tensor(value) else (tags if tags is None or len(tags) == value.dim() else None)
    return tags


def keep_tags(rf: TensorRF, t) -> Optional[Tags]:
    return rf.tags if rf.tags is not None and is_tensor(t) and len(rf.tags) == t.dim() else None


def where(tags: Optional[Tags]) -> str:
    """Where the spatial dims are, for error messages."""
    if tags is None:
        return "unknown dims"
    return "dims " + ", ".join(f"{i} ({t})" for i, t in enumerate(tags) if t is not None)


def leaves(obj) -> List[Any]:
    """The leaves of nested lists, tuples and dicts, in order."""
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


def map_out(value, fn: Callable[[torch.Tensor], Any]):
    """Apply ``fn`` to each tensor of a (possibly nested tuple/list) output; None elsewhere."""
    if is_tensor(value):
        return fn(value)
    if isinstance(value, (tuple, list)):
        return tuple(map_out(v, fn) for v in value)
    return None
