"""Layers: the learnable resizers as ``torch.nn`` modules.

Their rules are in docs/SEMANTICS.md ("DynOPool", "Shape Adaptor", "ELASTIC", "Shapes as state").

* :class:`DynOPool2d` — DynOPool: parameter ``alpha`` = (1/r_h, 1/r_w).
* :class:`ShapeAdaptor` — the Shape Adaptor blend of a down-sampled and a
  full-resolution branch: parameter ``alpha`` (the raw value before the
  sigmoid), ``forward(x_low, x_full)``.
* :class:`ShapeAdaptorMaxPool2d` — the VGG cell, whose down-sampled branch is
  ``max_pool2d(x, 2)``: ``forward(x)``, one op (:func:`resizeops.shape_adaptor_maxpool`).
* :class:`ElasticBlock` / :class:`ElasticBottleneck` — ELASTIC: a
  full- and a half-resolution branch merged by up-sample ×2, crop and sum
  (:func:`resizeops.resize_blend`).

Shapes as state. An output size depends on a learnable value, so
computing it needs that value on the host. Each layer keeps a host copy of the
values its size depends on and the integer sizes computed from them, refreshed
by one batched host read per device: after every ``torch.optim`` step over the
layer's α (fused ones included), by ``load_state_dict`` and ``.to()``, by
:func:`refresh_shapes` (unconditionally), and by an eager forward that finds the
copy stale (on the CPU by comparing values, elsewhere version counters and
storages). A change that cannot be seen without a device read (``.data`` on a
GPU, an in-place change during compiled training) is recorded on the device by
the next forward and raises :class:`StaleShapeError` at the next read: call
:func:`refresh_shapes` after such changes. Under ``torch.compile`` a forward
takes its size from the table of integer sizes, all the graph is guarded on.
:func:`freeze` bakes the sizes as constants: a frozen model runs under
``torch.compile(fullgraph=True)`` and exports with ``torch.export``.
"""

from __future__ import annotations

import copy
import math
import numbers
import weakref
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils._python_dispatch import _disable_current_modes, _get_current_dispatch_mode

from resizeops.core import _validate, export, ops

__all__ = [
    "DynOPool2d",
    "ShapeAdaptor",
    "ShapeAdaptorMaxPool2d",
    "ElasticBlock",
    "ElasticBottleneck",
    "refresh_shapes",
    "freeze",
    "resizers",
    "StaleShapeError",
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


_MAX_TABLE = 16  # input sizes whose output sizes a layer keeps (the most recent ones)


def _read_values(t: torch.Tensor) -> List[float]:
    """The host read: ``t.tolist()``, also inside a dispatch mode (a fake-mode analysis)."""
    if _get_current_dispatch_mode() is None:
        return t.tolist()
    with _disable_current_modes():
        return t.tolist()


def _values_equal(tensors: Sequence[torch.Tensor], snapshots: Sequence[torch.Tensor]) -> bool:
    if _get_current_dispatch_mode() is None:
        return all(torch.equal(t, s) for t, s in zip(tensors, snapshots))
    with _disable_current_modes():
        return all(torch.equal(t, s) for t, s in zip(tensors, snapshots))


# Device types whose values a host check may read: no device sync is involved.
_VALUES_READABLE = ("cpu",)


def _tensor_key(t: torch.Tensor) -> tuple:
    # The object (a replaced parameter is a new one), its dtype and device and, off
    # the CPU, what can be checked without a device read: the version counter
    # (bumped by every in-place update autograd sees) and the storage. On the CPU
    # the values themselves are compared (see _Resizer._stale).
    device = t.device
    if device.type in _VALUES_READABLE:
        return (id(t), t.dtype, device)
    return (id(t), t.dtype, device, t._version, t.data_ptr())


class StaleShapeError(RuntimeError):
    """A forward ran with output sizes computed from values its layer no longer has.

    Raised by the next host read (:func:`refresh_shapes`, or an optimiser step
    over the layer's parameters) when a value the sizes depend on was changed
    without the layers seeing it (see :class:`_Resizer`) and a forward ran before
    :func:`refresh_shapes`.
    """


class _HostCopy:
    """A resizer's host state (a plain object: kept out of ``nn.Module.__setattr__``)."""

    __slots__ = ("values", "key", "needs_read", "sizes", "snapshots", "drift", "used", "before", "trusting")

    def __init__(self) -> None:
        self.values: Optional[Tuple[float, ...]] = None  # the host copy of _shape_tensor()
        self.key = None  # what it was read from (see _Resizer._key)
        self.needs_read = False
        self.sizes: Dict[Tuple[int, int], Tuple[int, int]] = {}  # input size -> output size
        # Device copies of the watched tensors at the read, and the flag a forward
        # sets when it finds them different (allocated once per device and layout,
        # updated in place: fixed addresses for CUDA graphs).
        self.snapshots: Optional[List[torch.Tensor]] = None
        self.drift: Optional[torch.Tensor] = None  # (1,): nonzero once a forward saw other values
        self.used = False  # the last forward used `values` (else `before`)
        self.before: Optional[Tuple[float, ...]] = None
        self.trusting = False  # inside a read: `values` is known fresh


class _Resizer(nn.Module):
    """Base of the learnable resizers: the host copy of the values a size depends on.

    Subclasses define ``_shape_tensor()`` (a detached 1-D tensor of those values,
    computed on the parameter's device exactly as the sizes need them),
    ``output_size(in_size)`` from :meth:`host_values`, and ``_host_state()``: the
    plain Python attributes the sizes depend on. The tensors the sizes depend on
    are the layer's own parameters and buffers (``recurse=False``), watched
    generically, so that a new buffer (a penalty, a bound) is covered.

    The host copy is refreshed by a *host read* (one ``tolist()`` for all the
    layers being read on a device):

    * always by :func:`refresh_shapes` (it reads every layer, so it misses nothing);
    * after every ``torch.optim.Optimizer`` step (fused, foreach or capturable,
      any subclass) over a layer's parameters: a global optimiser post-hook reads
      those layers, one read per device and step;
    * by ``load_state_dict`` and ``.to()``/``.cuda()``/``.half()``;
    * in an eager forward that finds it stale: on the CPU the values are compared
      with those of the last read (no device sync is involved, so nothing is
      missed); elsewhere the version counters, storages, dtypes and devices.

    Every forward (eager off the CPU, and compiled) also records on the device,
    without a sync, whether the values differ from those of the last read: the
    next read raises :class:`StaleShapeError` if one did, so that a value
    changed behind the layers' back (through ``.data``, or in place during
    compiled training) and not followed by :func:`refresh_shapes` never passes
    unnoticed.

    Output sizes are kept per input size (ints). A compiled forward takes its size
    from that table, which torch.compile guards on: α moving without changing a
    size never recompiles; a new combination of sizes compiles once.
    """

    def __init__(self) -> None:
        super().__init__()
        self._host = _HostCopy()
        self._frozen = False

    # -- what the sizes depend on ------------------------------------------------

    def _shape_tensor(self) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _host_state(self) -> tuple:
        """Plain attributes the sizes depend on (compared by value)."""
        return ()

    def _watched(self) -> List[torch.Tensor]:
        return [t for t in self._parameters.values() if t is not None] + [
            t for t in self._buffers.values() if t is not None
        ]

    def _key(self, watched: Sequence[torch.Tensor]) -> tuple:
        return (self._host_state(), tuple(_tensor_key(t) for t in watched))

    def _check_host(self, values: Sequence[float]) -> None:
        pass

    # -- staleness ---------------------------------------------------------------

    def _stale(self) -> bool:
        host = self._host
        if self._frozen or host.trusting:
            return False
        if host.values is None or host.needs_read or host.snapshots is None:
            return True
        watched = self._watched()
        if host.key != self._key(watched):
            return True
        # On the CPU a value comparison costs no device sync: it sees every change,
        # including those that bypass the version counter (``.data``, fused steps).
        cpu = [(t, s) for t, s in zip(watched, host.snapshots) if t.device.type in _VALUES_READABLE]
        return bool(cpu) and not _values_equal(*zip(*cpu))

    def _note_drift(self) -> None:
        """Record on the device, without a sync, whether the watched values changed since the last read."""
        snaps, flag = self._host.snapshots, self._host.drift
        if snaps is None or flag is None:
            return
        with torch.no_grad():
            for t, s in zip(self._watched(), snaps):
                flag.add_(torch.ne(t.detach(), s).any())

    # -- the host read -----------------------------------------------------------

    def _install(self, values: Sequence[float], key: tuple) -> bool:
        """Install a read: returns whether an output size in the table changed."""
        self._check_host(values)
        host = self._host
        if host.used:
            host.before, host.used = host.values, False
        host.values, host.key, host.needs_read = tuple(float(v) for v in values), key, False
        old = host.sizes
        host.trusting = True
        try:
            host.sizes = {k: tuple(self.output_size(k)) for k in old}  # type: ignore[misc]
        finally:
            host.trusting = False
        return host.sizes != old

    def _fresh_snapshots(self, watched: Sequence[torch.Tensor]) -> bool:
        """Whether the snapshot buffers fit ``watched`` (else they are reallocated by the read)."""
        snaps = self._host.snapshots
        return snaps is not None and len(snaps) == len(watched) and all(
            s.shape == t.shape and s.dtype == t.dtype and s.device == t.device for s, t in zip(snaps, watched)
        )

    def _new_snapshots(self, watched: Sequence[torch.Tensor]) -> None:
        host = self._host
        host.snapshots = [t.detach().clone() for t in watched]
        # A count (nonzero: drift), in the watched dtype: the read concatenates it with the values.
        like = watched[0] if watched else torch.empty(0)
        host.drift = torch.zeros(1, dtype=like.dtype, device=like.device)
        for t in host.snapshots + [host.drift]:
            torch._dynamo.mark_static_address(t)

    def host_values(self) -> Tuple[float, ...]:
        """The host copy (one read if it is stale, see the class docstring)."""
        if not self._frozen and export.exporting():
            raise export.not_frozen_error(self)
        if self._stale():
            _read([self])
        assert self._host.values is not None
        return self._host.values

    def _size(self, in_size: Tuple[int, int]) -> Tuple[int, int]:
        """The output size of an input of spatial size ``in_size``, from a fresh host copy (eager)."""
        if self._stale():
            _read([self])
        host = self._host
        size = host.sizes.get(in_size)
        if size is None:
            if len(host.sizes) >= _MAX_TABLE:
                host.sizes.pop(next(iter(host.sizes)))
            host.trusting = True
            try:
                size = host.sizes[in_size] = tuple(self.output_size(in_size))  # type: ignore[assignment]
            finally:
                host.trusting = False
        return size

    def _forward_size(self, in_size: Sequence[int]) -> Tuple[int, int]:
        """The output size a forward uses, eager or under torch.compile."""
        if self._frozen:
            return self.output_size(in_size)
        if export.exporting():  # an exported program cannot read α on the host: freeze first
            raise export.not_frozen_error(self)
        host = self._host
        if torch.compiler.is_compiling():
            key = (_specialized(in_size[0]), _specialized(in_size[1]))
            # Runs eagerly while dynamo traces; its result is a constant of the graph.
            size = _size_while_tracing(self, key)
            # The graph guards on the table entry (ints), never on α: it is reused
            # until that size changes, and again when it comes back.
            size = host.sizes.get(key, size)
            if not torch.compiler.is_exporting():
                self._note_drift()
        else:
            size = self._size((int(in_size[0]), int(in_size[1])))
            if host.drift is not None and host.drift.device.type not in _VALUES_READABLE:
                self._note_drift()
        host.used = True
        return size

    @property
    def _last(self) -> Optional[Tuple[float, ...]]:
        """The host values the last forward used (None before the first forward)."""
        return self._host.values if self._host.used else self._host.before

    @_last.setter
    def _last(self, values: Optional[Tuple[float, ...]]) -> None:
        self._host.before, self._host.used = values, False

    # -- lifecycle ---------------------------------------------------------------

    def _refresh_now(self) -> None:
        """Read after loading or moving (a compiled forward does not check); a
        parameter that cannot be read yet (meta, fake) is read at its next use."""
        self._host.needs_read = True
        if all(t.device.type != "meta" and not _is_fake(t) for t in self._watched()):
            try:
                _read([self])
            except ValueError:
                pass  # invalid values: the next use raises, naming them

    def __setstate__(self, state) -> None:
        super().__setstate__(state)
        if "_host" in self.__dict__:
            self._host.snapshots = self._host.drift = None  # a copy or a loaded model reads at its first use

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        if not self._frozen:
            self._refresh_now()

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        self._host.snapshots = self._host.drift = None
        if not self._frozen:
            self._refresh_now()
        return out

    @property
    def frozen(self) -> bool:
        return self._frozen

    def _freeze(self) -> None:
        self.host_values()
        self._frozen = True
        for p in self.parameters(recurse=False):
            p.requires_grad_(False)


def _is_fake(t: torch.Tensor) -> bool:
    return getattr(t, "fake_mode", None) is not None


def _specialized(v) -> int:
    """``v`` as a plain int under torch.compile, also when it is a symbolic size
    (``dynamic=True``): dynamo specializes a dict key to its value, with a guard,
    where ``int(v)`` would stay symbolic."""
    return next(iter({v: None}))


@torch.compiler.assume_constant_result
def _size_while_tracing(layer: _Resizer, in_size: Tuple[int, int]) -> Tuple[int, int]:
    """``layer``'s output size for ``in_size``, computed eagerly while torch.compile traces.

    Marked as a constant result, so dynamo runs it for real (a host read if the
    copy is stale) instead of tracing into it: neither the floats it reads nor
    the read itself enter the graph. The caller then reads the same entry from
    the layer's table, which is what the graph is guarded on.
    """
    return layer._size(in_size)


def _read(layers: Sequence[_Resizer], strict: bool = True, names: Optional[Dict[int, str]] = None) -> List[_Resizer]:
    """Refresh the host copies of ``layers``: one batched host read per device.

    The same read takes the layers' drift flags: :class:`StaleShapeError` for
    those a forward set. With ``strict=False`` (the optimiser hook) invalid
    values leave the layer marked for a read at its next use, which raises then.
    Returns the layers whose table of output sizes changed.
    """
    by_device: Dict[torch.device, List[_Resizer]] = {}
    for m in layers:
        if not m._frozen:
            watched = m._watched()
            device = watched[0].device if watched else torch.device("cpu")
            by_device.setdefault(device, []).append(m)
    changed: List[_Resizer] = []
    drifted: List[str] = []
    with torch.no_grad():
        for group in by_device.values():
            watched = [m._watched() for m in group]
            keys = [m._key(w) for m, w in zip(group, watched)]
            parts = [m._shape_tensor() for m in group]
            parts = [p if p.dim() == 1 else p.reshape(-1) for p in parts]
            flagged = [m for m in group if m._host.drift is not None]
            parts += [m._host.drift for m in flagged]
            # The one host read of this device. cat promotes to the widest dtype, which
            # holds every value exactly (float16/bfloat16 in float32).
            values = _read_values(torch.cat(parts))
            # Snapshots of what was read (one batched copy into the existing buffers).
            dst: List[torch.Tensor] = []
            src: List[torch.Tensor] = []
            for m, w in zip(group, watched):
                if m._fresh_snapshots(w):
                    dst += m._host.snapshots
                    src += w
                else:
                    m._new_snapshots(w)
            if dst:
                torch._foreach_copy_(dst, src)
            flags = values[len(values) - len(flagged) :]
            for m, f in zip(flagged, flags):
                if f:
                    m._host.drift.zero_()
                    name = (names or {}).get(id(m))
                    drifted.append(f"{type(m).__name__} {name!r}" if name else type(m).__name__)
            k = 0
            for m, p, key in zip(group, parts, keys):
                n = p.numel()
                try:
                    if m._install(values[k : k + n], key):
                        changed.append(m)
                except ValueError:
                    m._host.needs_read = True  # read again (and raise) at the next use
                    if strict:
                        raise
                k += n
                _register_owner(m)
    if drifted:
        raise StaleShapeError(
            f"resizeops: {len(drifted)} layer(s) ({', '.join(sorted(set(drifted)))}) ran a forward with output sizes "
            "computed from an out-of-date copy of the values they depend on: a value was changed in a way the layers "
            "do not see (through `.data`, or in place during compiled training, or by an optimiser that is not a "
            "torch.optim.Optimizer) and no resizeops.refresh_shapes(model) followed before that forward. "
            "The copies are now refreshed; call refresh_shapes after such changes."
        )
    return changed


# id(parameter) -> weak references to the resizers it belongs to: the layers an
# optimiser step moves.
_OWNERS: Dict[int, List["weakref.ref[_Resizer]"]] = {}


def _register_owner(layer: _Resizer) -> None:
    # Every parameter the layer's sizes depend on (an AutoSC adaptor's: the earlier adaptors' α too).
    for p in layer._watched():
        if not isinstance(p, nn.Parameter):
            continue
        refs = _OWNERS.get(id(p))
        if refs is None:
            refs = _OWNERS[id(p)] = []
            if len(_OWNERS) % 1024 == 0:  # drop the ids whose layers are gone
                for k in [k for k, v in _OWNERS.items() if all(r() is None for r in v)]:
                    del _OWNERS[k]
        if not any(r() is layer for r in refs):
            refs.append(weakref.ref(layer))


def _owners_of(optimizer) -> List[_Resizer]:
    owners: Dict[int, _Resizer] = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            refs = _OWNERS.get(id(p))
            if refs:
                for r in refs:
                    m = r()
                    if m is not None and not m._frozen and any(p is t for t in m._watched()):
                        owners[id(m)] = m
    return list(owners.values())


def _after_optimizer_step(optimizer, args, kwargs) -> None:
    """Global optimiser post-hook: read the resizers whose parameters the step may have moved.

    Fused optimisers update parameters without bumping their version counters,
    so the step itself is the signal. One batched host read per device.
    """
    if torch.compiler.is_compiling() or not _OWNERS:
        return  # a compiled optimiser step is not seen: refresh_shapes after it
    layers = _owners_of(optimizer)
    if layers:
        _read(layers, strict=False)


register_optimizer_step_post_hook(_after_optimizer_step)


def resizers(model: nn.Module) -> List[_Resizer]:
    """The learnable resizers of ``model`` (itself included), in module order."""
    return [m for m in model.modules() if isinstance(m, _Resizer)]


def refresh_shapes(model: nn.Module) -> int:
    """Read the values every resizer of ``model`` depends on: one host read per device.

    Reads unconditionally, so it misses nothing: call it after changing α (or a
    value a size depends on) outside an optimiser step — through ``.data``, an
    in-place change during compiled training, an optimiser that is not a
    ``torch.optim.Optimizer`` — and before the next forward. Not needed after
    ``torch.optim`` steps, ``load_state_dict`` or ``.to()`` (see
    :class:`_Resizer`). Returns the number of layers whose output sizes (for the
    input sizes they have seen) changed. Frozen layers are left as they are.
    Raises :class:`StaleShapeError` if a forward since the last read used
    out-of-date sizes.
    """
    names = {id(m): name for name, m in model.named_modules() if isinstance(m, _Resizer)}
    return len(_read([m for m in model.modules() if id(m) in names], names=names))


def freeze(model: nn.Module, inplace: bool = False) -> nn.Module:
    """``model`` with its learned sizes baked in as constants (SEMANTICS.md, "Shapes as state").

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
    """DynOPool (Jang et al., CVPR 2022) as a layer: learnable-scale pooling (SEMANTICS.md, "DynOPool").

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

    def _host_state(self) -> tuple:
        return (self.r_bounds, self.min_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.effective_alpha()
        return ops.dynopool2d(x, alpha, self._forward_size(x.shape[-2:]), backend=self.backend)

    def extra_repr(self) -> str:
        s = f"min_size={self.min_size}"
        if self.r_bounds is not None:
            s += f", r_bounds={self.r_bounds}"
        return s + (", frozen" if self._frozen else "")


# =============================================================================
# Shape Adaptor
# =============================================================================


class ShapeAdaptor(_Resizer):
    """Shape Adaptor (Liu et al., ECCV 2020) as a layer (Eq. 1 and 6–7; SEMANTICS.md, "Shape Adaptor").

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

    def _host_state(self) -> tuple:
        return (self.r1, self.r2, self.size_rule)

    def _watched(self) -> List[torch.Tensor]:
        # α and the buffers (ρ; the global rule's plan), and under the global rule the
        # earlier adaptors' α and ρ, which its running product depends on.
        own = super()._watched()
        if self.size_rule != "global":
            return own
        return own + [t for p in self._previous for t in (p.alpha, p.rho)]

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
        return self._forward_size(in_size)

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
    by :func:`resizeops.shape_adaptor_maxpool` (the pooled map is never
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
    """ELASTIC's two-resolution layer (Wang et al., CVPR 2019 Eq. 3; SEMANTICS.md, "ELASTIC").

    ``forward(x) = high(x) + crop(up×2(low(down(x))))``: ``down`` replicate-pads an
    odd side and average-pools 2×2, ``up×2`` is bilinear (align_corners=False), the
    crop keeps the top-left ``high(x)``-sized window; the up-sample, crop and sum
    are one :func:`resizeops.resize_blend`. With ``elastic=False`` (stride-2
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
