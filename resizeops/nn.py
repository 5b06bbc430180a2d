"""Layers: the learnable resizers as ``torch.nn`` modules (issue 5, SPEC §2.1, §2.3, §4).

* :class:`DynOPool2d` — DynOPool (SPEC §2.1): parameter ``alpha`` = (1/r_h, 1/r_w).
* :class:`ShapeAdaptor` — the Shape Adaptor blend of a down-sampled and a
  full-resolution branch (SPEC §2.3): parameter ``alpha`` (the raw value before
  the sigmoid), ``forward(x_low, x_full)``.
* :class:`ShapeAdaptorMaxPool2d` — the VGG cell, whose down-sampled branch is
  ``max_pool2d(x, 2)``: ``forward(x)``, fused (:func:`resizeops.shape_adaptor_maxpool`).
* :class:`ElasticBlock` / :class:`ElasticBottleneck` — ELASTIC (SPEC §2.5): a
  full- and a half-resolution branch merged by up-sample ×2, crop and sum
  (:func:`resizeops.resize_blend`).

Shapes as state (SPEC §4). An output size depends on a learnable value, so
computing it needs that value on the host. Each layer keeps a host copy of the
values its size depends on, keyed on the parameter's version counter (bumped by
every in-place update: optimiser steps, ``load_state_dict``, ``fill_``) and
storage, so that a forward reads nothing from the device unless the parameter
changed. :func:`refresh_shapes` refreshes every stale layer of a model with one
batched host read per device (call it after the optimiser step; a layer that is
still stale at its forward refreshes itself, one read, so forgetting it is slow,
never wrong). :func:`freeze` bakes the sizes as constants: a frozen model runs
under ``torch.compile(fullgraph=True)`` and exports with ``torch.export``.
"""

from __future__ import annotations

import copy
import math
import numbers
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from . import _validate, export, ops

__all__ = [
    "DynOPool2d",
    "ShapeAdaptor",
    "ShapeAdaptorMaxPool2d",
    "ElasticBlock",
    "ElasticBottleneck",
    "refresh_shapes",
    "freeze",
    "resizers",
]

Pair = Union[float, Sequence[float]]


def _positive_pair(cls: str, name: str, v: Pair) -> Tuple[float, float]:
    if isinstance(v, numbers.Real) and not isinstance(v, bool):
        v = (v, v)
    try:
        a, b = (float(t) for t in v)
    except (TypeError, ValueError):
        raise TypeError(f"{cls}: `{name}` must be a positive number or a pair of them, got {v!r}") from None
    if not (math.isfinite(a) and math.isfinite(b) and a > 0 and b > 0):
        raise ValueError(f"{cls}: `{name}` must be finite and > 0, got {(a, b)}")
    return a, b


class _Resizer(nn.Module):
    """Base of the learnable resizers: the host copy of the values a size depends on.

    Subclasses define ``_shape_tensor()`` (a detached 1-D tensor of those values,
    computed on the parameter's device exactly as the sizes need them) and may
    extend ``_shape_key()`` with host state the values depend on.
    """

    def __init__(self) -> None:
        super().__init__()
        self._host: Optional[Tuple[float, ...]] = None
        self._host_key = None
        self._frozen = False

    # -- the cache ---------------------------------------------------------------

    def _shape_tensor(self) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _shape_key(self):
        a = self.alpha
        return (a._version, a.data_ptr(), a.device, a.dtype)

    def _stale(self) -> bool:
        return not self._frozen and (self._host is None or self._host_key != self._shape_key())

    def _set_host(self, values: Sequence[float]) -> None:
        self._check_host(values)
        self._host = tuple(float(v) for v in values)
        self._host_key = self._shape_key()

    def _check_host(self, values: Sequence[float]) -> None:
        pass

    def host_values(self) -> Tuple[float, ...]:
        """The host copy (one device read if the parameter changed since the last one)."""
        if not self._frozen and export.exporting():
            raise export.not_frozen_error(self)
        if self._stale():
            with torch.no_grad():
                self._set_host(self._shape_tensor().double().tolist())
        assert self._host is not None
        return self._host

    @property
    def frozen(self) -> bool:
        return self._frozen

    def _freeze(self) -> None:
        self.host_values()
        self._frozen = True
        for p in self.parameters(recurse=False):
            p.requires_grad_(False)


def resizers(model: nn.Module) -> List[_Resizer]:
    """The learnable resizers of ``model`` (itself included), in module order."""
    return [m for m in model.modules() if isinstance(m, _Resizer)]


def refresh_shapes(model: nn.Module) -> int:
    """Refresh the host copies of every stale resizer of ``model``: one device read per device.

    Call it once per step after the optimiser step (or after loading weights).
    Returns the number of layers refreshed. Frozen layers are left as they are.
    """
    stale: Dict[torch.device, List[_Resizer]] = {}
    for m in resizers(model):
        if m._stale():
            stale.setdefault(m.alpha.device, []).append(m)
    with torch.no_grad():
        for layers in stale.values():
            parts = [m._shape_tensor().reshape(-1).double() for m in layers]
            values = torch.cat(parts).tolist()  # the one host read
            k = 0
            for m, p in zip(layers, parts):
                m._set_host(values[k : k + p.numel()])
                k += p.numel()
    return sum(len(v) for v in stale.values())


def freeze(model: nn.Module, inplace: bool = False) -> nn.Module:
    """``model`` with its learned sizes baked in as constants (SPEC §4).

    Every resizer reads its shape parameters once more (one read per device), then
    never again: its ``alpha`` stops requiring grad and forward computes sizes from
    the baked host values only, so the model runs under
    ``torch.compile(fullgraph=True)`` with no graph break and exports with
    ``torch.export``. Returns a frozen deep copy unless ``inplace``.
    """
    if not inplace:
        model = copy.deepcopy(model)
    refresh_shapes(model)
    for m in resizers(model):
        m._freeze()
    return model


# =============================================================================
# DynOPool
# =============================================================================


class DynOPool2d(_Resizer):
    """DynOPool (Jang et al., CVPR 2022) as a layer: learnable-scale pooling (SPEC §2.1).

    The output of an (H, W) input is (max(rnd(H/α_h), min_size), max(rnd(W/α_w),
    min_size)); α = (1/r_h, 1/r_w) learns through the straight-through surrogate
    of the size (DynOPool Eq. 3–4).

    Args:
        scale: r, the initial output/input ratio: a number or (r_h, r_w). 0.5 is a
            stride-2 pooling.
        min_size: lower bound of each output side (DynOPool §5.1 bounds H·r ≥ 1.5,
            i.e. 2).
        r_bounds: optional (r_min, r_max): α is clamped to [1/r_max, 1/r_min] in
            the forward (no gradient pushes it further out).
        backend: the ops' backend (None: automatic).
    """

    def __init__(
        self,
        scale: Pair = 0.5,
        min_size: int = 2,
        r_bounds: Optional[Tuple[float, float]] = None,
        *,
        backend: Optional[str] = None,
        device=None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__()
        r = _positive_pair("DynOPool2d", "scale", scale)
        if isinstance(min_size, bool) or not isinstance(min_size, numbers.Integral) or min_size < 1:
            raise ValueError(f"DynOPool2d: `min_size` must be an integer ≥ 1, got {min_size!r}")
        self.min_size = int(min_size)
        self.r_bounds: Optional[Tuple[float, float]] = None
        if r_bounds is not None:
            lo, hi = _positive_pair("DynOPool2d", "r_bounds", r_bounds)
            if lo > hi:
                raise ValueError(f"DynOPool2d: `r_bounds` must be (r_min, r_max) with r_min ≤ r_max, got {r_bounds!r}")
            self.r_bounds = (lo, hi)
        self.backend = backend
        self.alpha = nn.Parameter(torch.tensor([1.0 / r[0], 1.0 / r[1]], device=device, dtype=dtype or torch.float32))

    def effective_alpha(self) -> torch.Tensor:
        """α as the op sees it: clamped to the bounds when ``r_bounds`` is set."""
        if self.r_bounds is None:
            return self.alpha
        lo, hi = self.r_bounds
        return self.alpha.clamp(1.0 / hi, 1.0 / lo)

    def _shape_tensor(self) -> torch.Tensor:
        return self.effective_alpha().detach()

    def _check_host(self, values) -> None:
        if not all(math.isfinite(v) and v > 0 for v in values):
            raise ValueError(f"DynOPool2d: `alpha` must be finite and > 0, got {tuple(values)}")

    @property
    def ratio(self) -> Tuple[float, float]:
        """The current (r_h, r_w) = 1/α, from the host copy."""
        a_h, a_w = self.host_values()
        return 1.0 / a_h, 1.0 / a_w

    def output_size(self, in_size: Sequence[int]) -> Tuple[int, int]:
        """(Ho, Wo) of an input of spatial size ``in_size``, from the host copy of α."""
        _validate.static_spatial_size(type(self).__name__, "x", in_size)
        return ops.dynopool2d_output_size(in_size, self.host_values(), self.min_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.effective_alpha()
        return ops.dynopool2d(x, alpha, self.output_size(x.shape[-2:]), backend=self.backend)

    def extra_repr(self) -> str:
        s = f"min_size={self.min_size}"
        if self.r_bounds is not None:
            s += f", r_bounds={self.r_bounds}"
        return s + (", frozen" if self._frozen else "")


# =============================================================================
# Shape Adaptor
# =============================================================================


def _tensor_key(t: torch.Tensor):
    """What identifies a tensor's current values on the host side: in-place updates bump the version."""
    return (t._version, t.data_ptr(), t.device, t.dtype)


class ShapeAdaptor(_Resizer):
    """Shape Adaptor (Liu et al., ECCV 2020) as a layer (SPEC §2.3, Eq. 1 and 6–7).

    ``forward(x_low, x_full)`` = ``k(1−σ_p)·R(x_low) + kσ_p·R(x_full)``, R the
    bilinear resize (align_corners=True, as the official code) to the output size,
    s(σ) = r1 + (r2 − r1)σ, σ = sigmoid(alpha) and σ_p its penalised value
    ``σ·ρ + r1/(r2 − r1)·(ρ − 1)`` (ρ = :attr:`rho`, 1 unless the memory
    constraint sets it; :mod:`resizeops.shape_adaptor`). k = 2 in residual cells.
    The size is a host value: α learns through the blend weights only (the
    paper's ∇s(α) ≈ s(∇α)).

    The output size per axis of ``x_full`` (side D) follows one of the official
    code's two rules (:attr:`size_rule`):

    * ``"local"`` (standard and AutoTL modes; the default): ``max(floor(D·s(σ_p)), 1)``.
    * ``"global"`` (AutoSC, set by :meth:`use_global_size`, which
      :func:`resizeops.convert` calls): the official running product over the
      whole network, the kept fixed down-sampling included,
      ``c = D_in · F · Π s(σ_p)`` over the earlier adaptors (F: the fixed factors
      before this adaptor), and the output ``round(c·s(σ_p))`` (Python's
      ``round``, as the official code), at least 1. When the actual side D is not
      within one pixel of c (an input of another size than ``input_dim``, or the
      other axis of a non-square input), the product restarts from D:
      ``round(D·s(σ_p))``.

    Buffers (in the ``state_dict``): ``rho``, and for the global rule
    ``input_dim``, ``fixed_scale`` (F per axis) and ``fixed_total`` (the whole
    network's kept fixed down-sampling, which the memory penalty counts). They
    stay float64 under ``.float()`` / ``.half()`` (they set sizes, host values).

    Args:
        r1, r2: the two branches' reshaping factors, r1 < r2 (default 0.5, 1).
        alpha_init: the raw α before the sigmoid (see
            :func:`resizeops.shape_adaptor.init_alpha`; 0 gives s = 0.75).
        residual: a residual cell (weights ×2).
        align_corners: of the bilinear resize (True in the official code).
        backend: the ops' backend (None: automatic).
    """

    # Version 2: ρ is a buffer (before, a plain attribute missing from checkpoints).
    _version = 2
    # Host-side quantities kept in float64 whatever dtype the module is cast to.
    _FLOAT64_BUFFERS = ("rho", "input_dim", "fixed_scale", "fixed_total")
    _GLOBAL_BUFFERS = ("input_dim", "fixed_scale", "fixed_total")

    def __init__(
        self,
        r1: float = 0.5,
        r2: float = 1.0,
        alpha_init: float = 0.0,
        residual: bool = False,
        align_corners: bool = True,
        *,
        backend: Optional[str] = None,
        device=None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        r1, r2 = float(r1), float(r2)
        if not (math.isfinite(r1) and math.isfinite(r2) and 0 < r1 < r2):
            raise ValueError(f"{name}: need 0 < `r1` < `r2`, got r1={r1}, r2={r2}")
        if not math.isfinite(float(alpha_init)):
            raise ValueError(f"{name}: `alpha_init` must be finite, got {alpha_init!r}")
        if not isinstance(align_corners, bool):
            raise TypeError(f"{name}: `align_corners` must be a bool, got {type(align_corners).__name__}")
        self.r1, self.r2 = r1, r2
        self.residual = bool(residual)
        self.align_corners = align_corners
        self.backend = backend
        self.size_rule = "local"
        self._previous: Tuple["ShapeAdaptor", ...] = ()  # global rule: the adaptors before this one
        self._last: Optional[Tuple[float, ...]] = None  # host values of the last forward ((σ_p, σ) first)
        self.alpha = nn.Parameter(torch.tensor(float(alpha_init), device=device, dtype=dtype or torch.float32))
        self.register_buffer("rho", torch.ones((), dtype=torch.float64, device=device))

    # -- ρ --------------------------------------------------------------------------

    def __setattr__(self, name: str, value) -> None:
        # ``layer.rho = 0.9`` sets the buffer in place (a plain module would refuse a float).
        if name == "rho" and not isinstance(value, torch.Tensor) and "rho" in self.__dict__.get("_buffers", {}):
            self.set_rho(value)
            return
        super().__setattr__(name, value)

    def set_rho(self, value: float) -> None:
        """Set the memory penalty ρ (Eq. 6): a finite number > 0 (1: no penalty)."""
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and value > 0):
            raise ValueError(f"{type(self).__name__}: `rho` must be a finite number > 0, got {value!r}")
        with torch.no_grad():
            self.rho.fill_(float(value))

    @property
    def k(self) -> float:
        return 2.0 if self.residual else 1.0

    def sigma_p(self) -> torch.Tensor:
        """σ_p = sigmoid(α)·ρ + r1/(r2 − r1)·(ρ − 1) (Eq. 6), a differentiable 0-d tensor in α's dtype.

        As the official code computes it: ρ rounded to α's dtype in the product, the
        offset computed in double and rounded once.
        """
        a = self.alpha
        rho = self.rho.to(a.device)
        offset = ((rho.double() - 1.0) * (self.r1 / (self.r2 - self.r1))).to(a.dtype)
        return torch.sigmoid(a) * rho.to(a.dtype) + offset

    # -- the global (AutoSC) size rule ---------------------------------------------

    def use_global_size(
        self,
        input_dim: float,
        fixed_scale: Union[float, Sequence[float]] = 1.0,
        fixed_total: Union[float, Sequence[float]] = 1.0,
        previous: Sequence["ShapeAdaptor"] = (),
    ) -> "ShapeAdaptor":
        """Size this adaptor with the official AutoSC ("global") rule; returns ``self``.

        Args:
            input_dim: D_in, the input side the network is built for.
            fixed_scale: F, the product of the fixed down-sampling factors (1/stride)
                the network keeps between its input and this adaptor, per axis (H, W).
            fixed_total: the product of all the network's kept fixed factors, per axis:
                what the memory penalty counts in D_true (Eq. 8).
            previous: the adaptors that run before this one, in order.
        """
        name = type(self).__name__
        dim = _positive_pair(name, "input_dim", input_dim)[0]
        fs = _positive_pair(name, "fixed_scale", fixed_scale)
        ft = _positive_pair(name, "fixed_total", fixed_total)
        previous = tuple(previous)
        if not all(isinstance(p, ShapeAdaptor) and p is not self for p in previous):
            raise TypeError(f"{name}: `previous` must be the other ShapeAdaptor layers before this one")
        like = dict(dtype=torch.float64, device=self.rho.device)
        for key, value in (("input_dim", dim), ("fixed_scale", fs), ("fixed_total", ft)):
            self.register_buffer(key, torch.tensor(value, **like))
        self._previous = previous
        self.size_rule = "global"
        return self

    def _shape_tensor(self) -> torch.Tensor:
        # (σ_p, σ): the size uses the penalised value; the memory constraint tracks
        # the un-penalised one. Computed in α's dtype, as the official code does.
        own = torch.stack([self.sigma_p(), torch.sigmoid(self.alpha)]).detach()
        if self.size_rule == "local":
            return own
        # The global rule also needs the earlier adaptors' σ_p and this one's buffers.
        dev = self.alpha.device
        parts = [own.double()] + [p.sigma_p().detach().double().reshape(1).to(dev) for p in self._previous]
        parts += [self.input_dim.reshape(1).to(dev), self.fixed_scale.to(dev)]
        return torch.cat(parts)

    def _shape_key(self):
        key = super()._shape_key() + _tensor_key(self.rho)
        if self.size_rule == "global":
            key += tuple(_tensor_key(getattr(self, b)) for b in ("input_dim", "fixed_scale"))
            key += tuple(_tensor_key(t) for p in self._previous for t in (p.alpha, p.rho))
        return key

    def _check_host(self, values) -> None:
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"{type(self).__name__}: `alpha` must be finite, got σ_p, σ = {tuple(values[:2])}")

    def scale(self, penalised: bool = True) -> float:
        """s(σ_p) (or, with ``penalised=False``, s(σ)) from the host copy."""
        sp, s = self.host_values()[:2]
        v = sp if penalised else s
        return (self.r2 - self.r1) * v + self.r1

    def last_scale(self, penalised: bool = True) -> Optional[float]:
        """s(σ_p) (or s(σ)) as the last forward used it; None before the first."""
        if self._last is None:
            return None
        return (self.r2 - self.r1) * self._last[0 if penalised else 1] + self.r1

    def running_dim(self) -> Tuple[float, float]:
        """Global rule: c per axis, the official running product before this adaptor's own s."""
        if self.size_rule != "global":
            raise ValueError(f"{type(self).__name__}: running_dim() is for the global (AutoSC) size rule")
        v = self.host_values()
        n = len(self._previous)
        c = [v[2 + n] * v[3 + n], v[2 + n] * v[4 + n]]  # D_in · F, per axis
        for p, sp in zip(self._previous, v[2 : 2 + n]):
            s = (p.r2 - p.r1) * sp + p.r1
            c = [ci * s for ci in c]  # in network order, as the official product
        return c[0], c[1]

    def output_size(self, in_size: Sequence[int]) -> Tuple[int, int]:
        """The output size for an input whose full-resolution branch has spatial size ``in_size``."""
        _validate.static_spatial_size(type(self).__name__, "x_full", in_size)
        s = self.scale()
        if self.size_rule == "local":
            return tuple(max(int(math.floor(int(d) * s)), 1) for d in in_size)  # type: ignore[return-value]
        out = []
        for d, c in zip((int(d) for d in in_size), self.running_dim()):
            c = c * s if abs(d - c) < 1 else d * s
            out.append(1 if c < 1 else round(c))
        return tuple(out)  # type: ignore[return-value]

    def _size_for_forward(self, in_size: Sequence[int]) -> Tuple[int, int]:
        size = self.output_size(in_size)
        if not self._frozen:
            self._last = self.host_values()
        return size

    # -- state ------------------------------------------------------------------------

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:  # fmt: skip
        version = local_metadata.get("version", None)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)  # fmt: skip
        if version is None or version < 2:
            # A checkpoint from before ρ was saved: ρ was 1 unless a recipe set it, and the
            # global rule's buffers are structure that the conversion just rebuilt.
            for key in ("rho",) + self._GLOBAL_BUFFERS:
                if prefix + key in missing_keys:
                    missing_keys.remove(prefix + key)
                    if key == "rho":
                        self.set_rho(1.0)

    def __setstate__(self, state) -> None:
        super().__setstate__(state)
        # A layer pickled before ρ became a buffer: ρ was a plain attribute, the rule always local.
        if "rho" not in self._buffers:
            rho = float(self.__dict__.pop("rho", 1.0))
            self.register_buffer("rho", torch.tensor(rho, dtype=torch.float64, device=self.alpha.device))
        self.__dict__.setdefault("size_rule", "local")
        self.__dict__.setdefault("_previous", ())

    def _apply(self, fn, recurse=True):
        kept = {k: self._buffers[k] for k in self._FLOAT64_BUFFERS if self._buffers.get(k) is not None}
        super()._apply(fn, recurse)
        for k, before in kept.items():
            after = self._buffers[k]
            if after is not None and after.dtype != before.dtype:
                try:
                    self._buffers[k] = before.to(after.device)
                except (TypeError, RuntimeError):  # a device without float64: keep the cast
                    pass
        return self

    def weights(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """(w1, w2) = (k(1 − σ_p), kσ_p), differentiable in α."""
        sp = self.sigma_p()
        return self.k * (1 - sp), self.k * sp

    def forward(self, x_low: torch.Tensor, x_full: torch.Tensor) -> torch.Tensor:
        w1, w2 = self.weights()
        size = self._size_for_forward(x_full.shape[-2:])
        return ops.resize_blend(x_low, x_full, w1, w2, size, self.align_corners, backend=self.backend)

    def extra_repr(self) -> str:
        s = f"r1={self.r1}, r2={self.r2}, residual={self.residual}"
        if self.size_rule == "global":
            s += f", size_rule=global, input_dim={float(self.input_dim):g}"
        rho = float(self.rho)
        if rho != 1.0:
            s += f", rho={rho:.4g}"
        return s + (", frozen" if self._frozen else "")


class ShapeAdaptorMaxPool2d(ShapeAdaptor):
    """The Shape Adaptor VGG cell (Fig. 2): its down-sampled branch is ``max_pool2d(x, 2)``.

    ``forward(x)`` equals ``ShapeAdaptor.forward(F.max_pool2d(x, 2), x)``, computed
    by the fused :func:`resizeops.shape_adaptor_maxpool` (the pooled map is never
    materialised). Same arguments as :class:`ShapeAdaptor` (r1 = 0.5: the
    max-pool's factor).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        w1, w2 = self.weights()
        size = self._size_for_forward(x.shape[-2:])
        return ops.shape_adaptor_maxpool(x, w1, w2, size, self.align_corners, backend=self.backend)


# =============================================================================
# ELASTIC
# =============================================================================


def _half_resolution(x: torch.Tensor) -> torch.Tensor:
    """ELASTIC's down-sampling: replicate-pad an odd H / W on the bottom / right, then AvgPool2d(2, 2).

    The pad repeats the last row / column with ``torch.cat``, the same values and
    gradient as ``F.pad(mode="replicate")``, whose backward
    (``replication_pad2d_backward``) fails under ``torch.compile`` in torch 2.14
    (docs/DESIGN.md, "Known problems of torch").
    """
    if x.shape[-2] % 2:
        x = torch.cat([x, x[..., -1:, :]], dim=-2)
    if x.shape[-1] % 2:
        x = torch.cat([x, x[..., :, -1:]], dim=-1)
    return nn.functional.avg_pool2d(x, 2, 2)


class ElasticBlock(nn.Module):
    """ELASTIC's two-resolution layer (Wang et al., CVPR 2019 Eq. 3; SPEC §2.5).

    ``forward(x) = high(x) + crop(up×2(low(down(x))))``: ``down`` replicate-pads an
    odd side and average-pools 2×2, ``up×2`` is bilinear (align_corners=False), the
    crop keeps the top-left ``high(x)``-sized window; the up-sample, crop and sum
    are one fused :func:`resizeops.resize_blend`. With ``elastic=False`` (stride-2
    blocks, where ELASTIC is off) both branches see ``x`` and are summed.

    ``high`` must keep the spatial size of ``x`` when ``elastic`` (stride 1), and
    ``low`` must return the same channels as ``high``.
    """

    def __init__(self, high: nn.Module, low: nn.Module, elastic: bool = True, *, backend: Optional[str] = None) -> None:
        super().__init__()
        self.high, self.low = high, low
        self.elastic = bool(elastic)
        self.backend = backend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.high(x)
        if not self.elastic:
            return out + self.low(x)
        low = self.low(_half_resolution(x))
        if 2 * low.shape[-2] < out.shape[-2] or 2 * low.shape[-1] < out.shape[-1]:
            raise ValueError(
                f"ElasticBlock: the low-resolution branch gave {tuple(low.shape[-2:])}, which up-sampled ×2 does not "
                f"cover the full-resolution branch's {tuple(out.shape[-2:])} (does `high` keep the input size?)"
            )
        return ops.resize_blend(low, out, 1.0, 1.0, out.shape[-2:], False, ((2.0, 2.0), None), backend=self.backend)

    def extra_repr(self) -> str:
        return f"elastic={self.elastic}"


def _conv_bn_relu(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> List[nn.Module]:
    return [
        nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class ElasticBottleneck(nn.Module):
    """The ELASTIC ResNeXt bottleneck (the official code's ``BottleneckXElastic``).

    Two half-width ResNeXt paths — 1×1, grouped 3×3 (``cardinality // 2`` groups),
    1×1 — one at full resolution and one at half (:class:`ElasticBlock`), summed
    before the last BatchNorm, then the residual and a ReLU.

    By default ELASTIC is on in stride-1 blocks whose paths are narrower than 512
    channels, the official rule (``resnext.py``'s ``BottleneckX``: ``elastic and
    stride == 1 and planes < 512``, its ``planes`` being each path's width here).
    The paper turns ELASTIC off in stride-2 blocks and in the last stage, whose
    maps are 7×7 at 224 (ResNeXt-50's stage 4: paths of 512); the rule gives the
    same for the official DLA-X-ELASTIC blocks (``dla.py``: ``planes < 1024``, its
    ``planes`` being the output here, with paths of half the output).

    Args:
        inplanes, planes: input and output channels.
        stride: of the 3×3 convolutions.
        cardinality: ResNeXt groups of the whole block (each path gets half).
        bottle_planes: width of the block's bottleneck (default ``planes``; each
            path gets half).
        downsample: the residual's projection when shapes change (as in
            torchvision's ResNet), or None for identity.
        elastic: None: the official rule, ``stride == 1`` and each path's width
            (``(bottle_planes or planes) // 2``) below 512.
    """

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        cardinality: int = 32,
        bottle_planes: Optional[int] = None,
        downsample: Optional[nn.Module] = None,
        elastic: Optional[bool] = None,
        *,
        backend: Optional[str] = None,
    ) -> None:
        super().__init__()
        width = (bottle_planes or planes) // 2
        groups = max(cardinality // 2, 1)
        if width < 1 or width % groups:
            raise ValueError(
                f"ElasticBottleneck: each path's width {width} must be a positive multiple of its {groups} groups"
            )

        def path() -> nn.Sequential:
            layers = _conv_bn_relu(inplanes, width, 1) + _conv_bn_relu(width, width, 3, stride, groups)
            return nn.Sequential(*layers, nn.Conv2d(width, planes, 1, bias=False))

        if elastic is None:
            elastic = stride == 1 and width < 512
        self.branches = ElasticBlock(path(), path(), elastic, backend=backend)
        self.bn = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(self.bn(self.branches(x)) + residual)
