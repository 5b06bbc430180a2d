"""``resizeops.convert``: put learnable resizers into an existing network.

``method="dynopool"`` (DynOPool §4.4): every pooling layer and every
strided convolution becomes learnable, except global pooling. A pooling layer
(``MaxPool2d``/``AvgPool2d`` with stride > 1, ``ceil_mode`` or not) is replaced
by a :class:`~resizeops.nn.DynOPool2d` initialised at r = 1/stride; a strided
``Conv2d`` becomes the same convolution (same weights) with stride 1 followed by
a ``DynOPool2d``. Resizers whose outputs meet in an elementwise operation or a
concatenation must keep one size for every scale, so they share one
``DynOPool2d`` (one α): found by tracing the model with ``torch.fx`` and
following each tensor's *lineage* (the resizers its size went through) into
every ``add``/``mul``/``cat``: operands of equal lineage length have their
resizers tied position by position (a residual block's main path and its
strided shortcut, a ResNet-D block's ceil-mode average-pool shortcut, a branch
fused back after as many resizers). Submodules fx cannot trace are kept whole.

Then the model is *probed* (:mod:`resizeops.models._netgraph`): run on a meta input
(``input_size``, else timm's ``pretrained_cfg``, else 224×224 with the first
convolution's channels) with every layer as a shape-only DynOPool, at the
initial scales, with every α ×1.1 and with each group's α moved on its own.
What stops running there would stop at the first training step that moves α
(a fixed ×2 up-sampling added to the full-resolution path, as HRNet's fuse
layers; a fixed-size position embedding or ``Linear`` after a flatten; a
functional pool next to strided branches). Such a model is refused with every
failure named: the operation that fails and where, the fixed resizing on the
way, and every learnable layer involved; the message ends with the ``exclude``
that converts the rest. A model whose own forward fx cannot trace is converted
without sharing and probed as a whole: accepted with a warning if it runs,
else refused (and left as it was).

Layers it cannot convert are refused, all named at once with the ``exclude``
that keeps them: strided max-pooling with ``return_indices`` or dilation, and
other strided layers (``Conv1d``/``Conv3d``, transposed convolutions,
``LPPool2d``, fractional pooling).

``method="shape_adaptor"`` (Shape Adaptor §3.2, §4 "Implementation", §5): the
placement of the official code (lorenmt/shape-adaptor ``model_list.py``),
adapted to networks of any library. The family is
recognised by structure, not by class or attribute names: the network traced
with ``torch.fx`` as a chain of units (layers and blocks, containers opened;
:func:`resizeops.models._netgraph.units`), each block classified by its own forward
(a residual ``add`` of the input or a projection of it; an inverted residual:
a depthwise conv among the block's convs). Four families:

* VGG: a VGG-like stack, the ``nn.Sequential`` of Conv2d / BatchNorm2d / ReLU /
  pooling that holds every down-sampling layer (the model itself, or
  torchvision's and timm's ``features``). Candidate positions are the ends
  (the ReLU) of the convolution units, the last convolution's excepted; an
  adaptor there is the VGG cell :class:`~resizeops.nn.ShapeAdaptorMaxPool2d`
  (2×2 max-pool low branch, identity high branch), inserted after the ReLU as
  ``Sequential(relu, adaptor)`` so that every index and weight name stays.
* ResNet: a stem, then residual blocks whose down-sampling ones have a
  projection shortcut (torchvision's and timm's ResNet, ResNet-D, RegNet). The
  stem's adaptor (a 2×2 max-pool low branch) takes the stem's strided pool's
  place (or follows the stem); a block becomes the residual cell: main path at
  stride 1 as the high branch, the strided shortcut as the low branch (the
  block's own, made strided if it was not, e.g. a ResNet-D pool-and-1×1
  shortcut; else a new 1×1 stride-2 conv + BN), weights ×2, then the block's
  activation. torchvision's blocks become :class:`ShapeAdaptorResidualBlock`;
  other blocks a ``torch.fx.GraphModule`` of their own forward with the ``add``
  replaced by the adaptor (children, hence weight names, kept).
* MobileNetV2 (inverted residuals: MobileNetV2/V3, EfficientNet): a stem, then
  blocks with a depthwise conv, the down-sampling ones without a skip. The stem
  gets a max-pool adaptor after its activation; a block becomes
  ``adaptor(main(x))``, its skip dropped (as the official cell):
  :class:`ShapeAdaptorInvertedResidual` for torchvision's, a GraphModule of
  their own forward for others.
* Stacks of size-keeping residual blocks between strided convolutions
  (ConvNeXt): a VGG-like stack whose steps are the blocks and the stem's and
  down-sampling layers' convolutions; a max-pool adaptor follows a step. The
  official code has no such network; standard and AutoTL treat the strided
  convolutions as VGG treats its strided ones, AutoSC puts adaptors on blocks
  not followed by a down-sampling step (default ``num`` as VGG's).

Where the adaptors go in torchvision's vgg16, resnet50 and mobilenet_v2 (N at
input 32 | 224; VGG: after the ReLU of the numbered convolutions):

=========  ================================  ===============================  =========================
family     ``standard``                      ``autosc``                       ``autotl``
=========  ================================  ===============================  =========================
VGG        4: conv 1 4 7 10 |                2: conv 1 8 |                    5: the five max-pools
           6: conv 1 3 5 7 9 11              4: conv 1 5 8 11
ResNet     4: stem, layer2.0 3.0 3.4 |       2: layer1.1 3.2 |                5: stem conv, stem pool,
           6: stem, layer1.1 2.1 3.0 3.2     4: layer1.1 2.2 3.2 3.5          layer2.0 3.0 4.0
           3.5
MobileNet  4: stem, features.4 9 13 |        3: features.3 9 13 |             5: stem, features.2 4 7
V2         6: stem, features.3 6 9 12 15     4: features.3 8 11 15            14
=========  ================================  ===============================  =========================

* ``standard``: every down-sampling layer goes (pooling becomes ``Identity``,
  strides become 1; global/adaptive pooling stays) and ``num`` adaptors
  (default Eq. 3, :func:`~resizeops.shape_adaptor.num_adaptors`) sit uniformly
  on the candidate positions, ``candidates[int(i · len(candidates)/num)]``
  as the official code spreads them (the first candidate always gets one, the
  last layer never), α from Eq. 5 (:func:`~resizeops.shape_adaptor.init_alpha`)
  so that D_in·s^N = ``output_dim``.
* ``autosc`` (§5.1): the human down-sampling stays; ``num`` adaptors at
  α_raw = 2.19 (s ≈ 0.95) on positions that are not at a down-sampling layer
  (VGG: not a ReLU followed by a pool nor a strided convolution's; ResNet: not
  a stage's first block; MobileNetV2: stride-1 blocks after the first), default
  ``num`` the official grid-searched one (VGG 2 if ``input_dim`` < 64 else 4,
  ResNet 2 if ≤ 64 else 4, MobileNetV2 3 if < 64 else 4). As the official
  AutoSC, max-pool low branches and the kept VGG max-pools use ``ceil_mode``,
  so that small maps never reach size 0, and the adaptors use the official
  "global" size rule: a running product over the whole network from
  ``input_dim``, the kept down-sampling (1/stride of every kept strided layer)
  included, rounded (:meth:`~resizeops.nn.ShapeAdaptor.use_global_size`). The
  conversion records in each adaptor the fixed factors before it and the
  network's total, so the memory penalty's D_true (Eq. 8) counts them
  (:func:`~resizeops.shape_adaptor.fixed_scale_of`).
* ``autotl`` (§5.2): each human down-sampling layer becomes an adaptor at
  α_raw = −2.19 (s ≈ 0.55): a pooling layer becomes the VGG cell (or a
  :class:`ShapeAdaptorCell` around it), a strided convolution goes to stride 1
  followed by a max-pool adaptor, a strided residual block the residual cell.
  ``num`` is the number of down-sampling layers; the official code has AutoTL
  for ResNet only (its two stem adaptors both use a 2×2 max-pool).

Every weight of the original keeps its name and value (pretrained weights still
load with ``load_state_dict``); new are only the adaptors' ``alpha`` and the
projections of residual cells whose block had none. Other architectures are
refused with a ``ValueError`` naming the module that no family covers and why
(HRNet's parallel resolutions, a block that concatenates branches, a layer that
down-samples after the last block). The converted model is probed on a fake
``input_dim`` input as converted, with every α + 1 and with each α moved on its
own; a model that stops running there is refused, naming where.

``layout``: the official code builds its own networks. With ``layout="keep"``
(the default) the converter keeps the given network's layers: torchvision's 7×7
ResNet stem stays (the official uses 3×3 below 64 pixels, and in AutoSC a CIFAR
stem without down-sampling), vgg16 keeps five max-pools in AutoSC (the official
four up to 64), a stage's first block keeps the shortcut it has (the official
standard mode gives every one a projection; resnet18/34's ``layer1.0`` has
none), and MobileNetV2 keeps its stride-2 stem and second stage (the official
CIFAR layout has them at stride 1 up to 64). ``layout="official"`` builds the
official layout for ``mode`` and ``input_dim`` from the given network instead:
ResNet's stem (a new 3×3 stride-1 convolution up to 64 pixels, AutoSC below 64
also without the max-pool) and projections, VGG without the max-pool after its
last convolution up to 64, MobileNetV2's stem and first stride-2 block at
stride 1 up to 64. A new stem convolution has new weights; every other weight
keeps its name and value. Converted with ``layout="official"``, torchvision's
vgg16_bn, resnet50 and mobilenet_v2 give the official code's feature-map sizes
in every mode it has, except AutoSC ResNet at exactly 64 pixels, where the
official forward skips the max-pool its constructor built (its first adaptor
then up-samples 32 → 61); we keep the max-pool and count it.
"""

from __future__ import annotations

import copy
import math
import numbers
import warnings
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

import torch
from torch import nn

from . import _netgraph
from ._netgraph import describe
from .nn import DynOPool2d, ShapeAdaptor, ShapeAdaptorMaxPool2d, _Resizer, refresh_shapes
from .shape_adaptor import init_alpha, num_adaptors

__all__ = ["convert", "ShapeAdaptorCell", "ShapeAdaptorResidualBlock", "ShapeAdaptorInvertedResidual"]

_POOLS = (nn.MaxPool2d, nn.AvgPool2d)
_UNSUPPORTED_STRIDED = (
    nn.Conv1d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.LPPool2d,
    nn.FractionalMaxPool2d,
    nn.MaxPool1d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool3d,
)
def _pair(v) -> Tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _stride(m: nn.Module) -> Tuple[int, int]:
    s = m.stride if m.stride is not None else m.kernel_size  # pooling: stride None means kernel_size
    return _pair(s)


_DP = "convert(method='dynopool')"
_DP_OPTIONS = ("exclude", "min_size", "backend", "input_size")
# The probes: every α ×1.1, then each group's α moved on its own, per axis (factors that no
# rounding maps back onto the initial sizes at once).
_PROBE_UNIFORM = 1.1
_PROBE_FACTORS = (1.13, 0.87, 1.21, 0.93, 1.07, 0.79, 1.31)
_PROBE_SIZE = (224, 224)


def _under(name: str, names: Iterable[str]) -> bool:
    """``name`` is one of ``names`` or a module inside one of them."""
    return any(name == e or name.startswith(e + ".") for e in names)


def _candidates(model: nn.Module, exclude: Set[str]) -> Dict[str, nn.Module]:
    """The layers to make learnable, by qualified name; refuses, all named at once, those it cannot convert."""
    found: Dict[str, nn.Module] = {}
    problems: List[Tuple[str, str]] = []
    for name, m in model.named_modules():
        if not name or _under(name, exclude):
            continue
        if isinstance(m, _POOLS):
            if max(_stride(m)) <= 1:
                continue
            if isinstance(m, nn.MaxPool2d) and m.return_indices:
                problems.append((name, f"{describe(m)}: returns indices, which a DynOPool2d has none of"))
            elif isinstance(m, nn.MaxPool2d) and _pair(m.dilation) != (1, 1):
                problems.append((name, f"{describe(m)}: dilation, which a DynOPool2d has none of"))
            else:
                found[name] = m
        elif isinstance(m, nn.Conv2d):
            if max(_pair(m.stride)) > 1:
                found[name] = m
        elif isinstance(m, _UNSUPPORTED_STRIDED):
            stride = getattr(m, "stride", None)
            if stride is not None and max((stride,) if isinstance(stride, int) else tuple(stride)) > 1:
                problems.append((name, f"{describe(m)}: DynOPool replaces 2-D pooling and strided Conv2d only"))
    if problems:
        raise ValueError(
            f"{_DP}: cannot convert " + "; ".join(f"`{n}` ({why})" for n, why in problems)
            + f"; pass exclude={[n for n, _ in problems]!r} to keep them"
        )
    return found


def _dp_options(model: nn.Module, options: dict) -> dict:
    """The checked options of the DynOPool conversion (bad ones refused before the model is copied)."""
    unknown = sorted(set(options) - set(_DP_OPTIONS))
    if unknown:
        raise TypeError(f"{_DP}: unknown option(s) {unknown}; the options are {list(_DP_OPTIONS)}")
    o = {"exclude": (), "min_size": 2, "backend": None, "input_size": None}
    o.update(options)
    exclude = o["exclude"]
    if isinstance(exclude, str) or not all(isinstance(e, str) for e in exclude):
        raise TypeError(f"{_DP}: `exclude` must be a list of module names, got {exclude!r}")
    names = {n for n, _ in model.named_modules()}
    missing = sorted(set(exclude) - names)
    if missing:
        raise ValueError(f"{_DP}: `exclude` names {missing}, which are not modules of the model")
    o["exclude"] = set(exclude)
    m = o["min_size"]
    if isinstance(m, bool) or not isinstance(m, numbers.Integral) or m < 1:
        raise ValueError(f"{_DP}: `min_size` must be an integer ≥ 1, got {m!r}")
    size = o["input_size"]
    if size is not None:
        ok = isinstance(size, (tuple, list)) and len(size) in (2, 3) and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in size)  # fmt: skip
        if not ok:
            raise ValueError(f"{_DP}: `input_size` must be (C, H, W) or (H, W) of positive integers, got {size!r}")
        o["input_size"] = tuple(int(v) for v in size)
    return o


def _probe_spec(model: nn.Module, input_size: Optional[Tuple[int, ...]]) -> _netgraph.ProbeInput:
    """The probe input: ``input_size``, else timm's ``pretrained_cfg['input_size']``, else 224×224 with
    the channels of the first Conv2d (3 without one)."""
    if input_size is None:
        cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None)
        cfg_size = cfg.get("input_size") if isinstance(cfg, dict) else None
        if isinstance(cfg_size, (tuple, list)) and len(cfg_size) == 3:
            input_size = tuple(int(v) for v in cfg_size)
    channels = input_size[0] if input_size is not None and len(input_size) == 3 else None
    return _netgraph.probe_input(model, input_size[-2:] if input_size else _PROBE_SIZE, channels)


def _learnable(m: nn.Module, pool: DynOPool2d) -> nn.Module:
    """What replaces layer ``m``: the pool, or (a strided conv) the conv at stride 1 followed by the pool."""
    if not isinstance(m, nn.Conv2d):
        return pool
    conv = copy.deepcopy(m)
    conv.stride = (1, 1)
    return nn.Sequential(conv, pool)


def _new_pool(m: nn.Module, min_size: int, backend: Optional[str]) -> DynOPool2d:
    sh, sw = _stride(m)
    param = next(m.parameters(), None)
    return DynOPool2d((1.0 / sh, 1.0 / sw), min_size=min_size, backend=backend,
                      device=param.device if param is not None else None)  # fmt: skip


def _dynopool_groups(model: nn.Module, layers: Dict[str, nn.Module], o: dict, traced: _netgraph.Traced
                     ) -> List[List[str]]:  # fmt: skip
    """The groups of ``layers`` that share one DynOPool2d, checked on meta inputs. Refuses, naming every
    module involved, what would stop running when the scales move."""
    gm = traced.gm
    hidden = {leaf: [n for n in layers if n.startswith(leaf + ".")] for leaf in traced.opaque}
    hidden = {leaf: ns for leaf, ns in hidden.items() if ns}
    if hidden:
        names = sorted(n for ns in hidden.values() for n in ns)
        where = "; ".join(f"`{leaf}` ({traced.opaque[leaf]}), which holds the strided layers {ns}"
                          for leaf, ns in hidden.items())  # fmt: skip
        raise ValueError(
            f"{_DP}: torch.fx cannot trace {where}, so convert cannot check that sizes still match when their "
            f"scales move; pass exclude={names!r} to keep them"
        )
    spec = _probe_spec(model, o["input_size"])
    reports: List[str] = []
    refused: Set[str] = set()
    groups: List[List[str]] = []
    while True:
        active = {n: m for n, m in layers.items() if n not in refused}
        if not active:
            break
        # At the initial scales (shared or not, the sizes are the same): the shapes the ties need.
        failure, shapes = _probe(gm, active, {n: (1.0, 1.0) for n in active}, o, spec)
        if failure is not None:
            if len(active) == len(layers) and _netgraph.run_graph(gm, {}, spec)[0] is not None:
                raise ValueError(
                    f"{_DP}: {type(model).__name__} does not run on a probe input of {spec} ({failure.where}: "
                    f"{failure.error}); pass input_size=(C, H, W) of an input it accepts"
                )
            refused |= _report(reports, "at the initial scales", failure, gm, active, shapes, None, layers)
            continue
        groups = _netgraph.lineage_ties(gm, active, shapes)
        mixed = [g for g in groups if len({_stride(active[n]) for n in g}) > 1]
        for g in mixed:
            strides = {n: _stride(active[n]) for n in g}
            reports.append(f"{_ticks(g)} must keep one output size (their outputs are combined) but have "
                           f"different strides {strides}")  # fmt: skip
            refused |= set(g)
        if mixed:
            continue
        for label, factors in _probe_settings(groups):
            failure, shapes = _probe(gm, active, {n: f for g, f in zip(groups, factors) for n in g}, o, spec)
            if failure is not None:
                refused |= _report(reports, label, failure, gm, active, shapes, groups, layers)
                break
        else:
            break
    if reports:
        left = [n for n in layers if n not in refused]
        keep = sorted(refused | o["exclude"])
        rest = (f"convert the rest with exclude={keep!r} (those layers keep their fixed strides)"
                if left else "none of its strided layers can become learnable")  # fmt: skip
        raise ValueError(
            f"{_DP}: cannot make every strided layer of {type(model).__name__} learnable; probed on a "
            f"{spec} input, sizes stop matching when the scales move:\n  - " + "\n  - ".join(reports) + f"\n{rest}"
        )
    return groups


def _probe_settings(groups: List[List[str]]):
    """(label, per-group (factor_h, factor_w) of α) of each probe after the initial one."""
    n = len(_PROBE_FACTORS)
    yield f"with every α ×{_PROBE_UNIFORM}", [(_PROBE_UNIFORM, _PROBE_UNIFORM)] * len(groups)
    yield "with each group's α moved on its own", [(_PROBE_FACTORS[k % n], _PROBE_FACTORS[(k + 3) % n])
                                                   for k in range(len(groups))]  # fmt: skip


def _probe(gm, active: Dict[str, nn.Module], factors: Dict[str, Tuple[float, float]], o: dict, spec):
    """Run the graph with each layer of ``active`` as a shape-only DynOPool2d at α = stride × its factors."""
    swap = {}
    for n, m in active.items():
        (sh, sw), (fh, fw) = _stride(m), factors[n]
        swap[n] = _netgraph.MetaPool((sh * fh, sw * fw), o["min_size"], m if isinstance(m, nn.Conv2d) else None)
    return _netgraph.run_graph(gm, swap, spec)


def _ticks(names: Iterable[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def _report(reports: List[str], label: str, failure, gm, active, shapes, groups, layers) -> Set[str]:
    """Describe a probe failure; returns the layers involved (the resizers nearest above it, whole groups)."""
    nearest, fixed = _netgraph.upstream(failure.node, set(active), shapes, gm, skip=layers)
    involved = set(nearest) or set(active)
    for g in groups or ():
        if involved & set(g):
            involved |= set(g)
    text = f"{label}, {failure.where} fails ({failure.error}); the learnable layers involved: "
    text += _ticks(sorted(involved))
    if fixed:
        text += "; fixed resizing on the way: " + ", ".join(_netgraph.where_node(gm, f) for f in fixed)
    reports.append(text)
    return involved


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _convert_dynopool(model: nn.Module, o: dict) -> nn.Module:
    layers = _candidates(model, o["exclude"])
    if not layers:
        raise ValueError(f"{_DP}: the model has no strided pooling layer or strided Conv2d to make learnable")
    traced = _netgraph.trace(model, layers)
    groups = [[n] for n in layers] if traced.gm is None else _dynopool_groups(model, layers, o, traced)
    pools: List[Tuple[DynOPool2d, Tuple[int, int]]] = []
    for group in groups:
        pool = _new_pool(layers[group[0]], o["min_size"], o["backend"])
        pools.append((pool, _stride(layers[group[0]])))
        for n in group:
            _set_submodule(model, n, _learnable(layers[n], pool))
    if traced.gm is None:
        _check_untraced(model, layers, pools, o, traced.error)
    return model


def _check_untraced(model: nn.Module, layers: Dict[str, nn.Module], pools, o: dict, why: str) -> None:
    """A model fx cannot trace (``why``), converted without sharing: probe it as a whole; undo and refuse if
    it fails."""
    spec = _probe_spec(model, o["input_size"])
    n = len(_PROBE_FACTORS)
    settings = [[(1.0, 1.0)] * len(pools), [(_PROBE_UNIFORM, _PROBE_UNIFORM)] * len(pools),
                [(_PROBE_FACTORS[k % n], _PROBE_FACTORS[(k + 3) % n]) for k in range(len(pools))]]  # fmt: skip
    probe = _netgraph.probe_copy(nn.ModuleList([model] + [p for p, _ in pools]), [p.alpha for p, _ in pools])
    net, copies = probe[0], list(probe)[1:]
    failure = None
    with _netgraph.fake_mode() as mode:
        for factors in settings:
            with torch.no_grad():
                for pool, (_, (sh, sw)), (fh, fw) in zip(copies, pools, factors):
                    pool.alpha.copy_(torch.tensor([sh * fh, sw * fw]))
            refresh_shapes(net)
            failure = _netgraph.run_module(net, spec, mode)
            if failure is not None:
                break
    if failure is None:
        warnings.warn(
            f"{_DP}: torch.fx could not trace {type(model).__name__} ({why}); its resizers are not shared "
            "(probed on fake inputs, it still runs when their scales move)",
            stacklevel=4,
        )
        return
    for name, m in layers.items():  # undo: `inplace` conversions leave the model as it was
        _set_submodule(model, name, m)
    raise ValueError(
        f"{_DP}: torch.fx cannot trace {type(model).__name__} ({why}), so convert cannot tell which resizers must "
        f"share a scale; converted without sharing, it fails when the scales move ({failure.where}: {failure.error}); "
        f"make its forward traceable, or keep the layers involved with exclude=[...] (its strided layers: "
        f"{_ticks(layers)})"
    )


# =============================================================================
# Shape Adaptor
# =============================================================================

ALPHA_AUTOSC = 2.19  # s = 0.5 + 0.5·sigmoid(2.19) ≈ 0.95: the official AutoSC start, close to the human shape
ALPHA_AUTOTL = -2.19  # s ≈ 0.55: the official AutoTL start, close to the replaced ×½ layer
_SA_MODES = ("standard", "autosc", "autotl")
_SA_LAYOUTS = ("keep", "official")
_SA_OPTIONS = ("input_dim", "output_dim", "num", "mode", "r1", "r2", "layout", "backend")
_SA = "convert(method='shape_adaptor')"
_SUPPORTED = (
    "VGG-like stacks (an nn.Sequential of Conv2d/BatchNorm2d/ReLU/pooling holding every down-sampling layer: "
    "torchvision's and timm's VGG), residual networks whose down-sampling blocks have a projection shortcut "
    "(torchvision's and timm's ResNet and ResNet-D, RegNet), inverted-residual networks (MobileNetV2/V3, "
    "EfficientNet) and stacks of size-keeping residual blocks between strided convolutions (ConvNeXt)"
)
# Layers a VGG feature extractor may hold.
_VGG_LAYERS = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.MaxPool2d, nn.AvgPool2d,
               nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Identity, nn.Dropout)  # fmt: skip


class ShapeAdaptorCell(ShapeAdaptor):
    """A Shape Adaptor with an explicit down-sampling branch: ``forward(x) = ShapeAdaptor.forward(low(x), x)``.

    The general form of :class:`~resizeops.nn.ShapeAdaptorMaxPool2d` (whose ``low``
    is a floor-mode 2×2 max-pool, in one op): AutoSC uses a ceil-mode max-pool here, as
    the official code does, and AutoTL wraps pooling layers other than a plain
    2×2 max-pool. Other arguments as :class:`~resizeops.nn.ShapeAdaptor`.
    """

    def __init__(self, low: nn.Module, **kwargs) -> None:
        super().__init__(**kwargs)
        self.low = low

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(self.low(x), x)


class ShapeAdaptorResidualBlock(nn.Module):
    """A torchvision ``BasicBlock``/``Bottleneck`` as the residual Shape Adaptor cell (Fig. 2, right).

    ``relu(adaptor(downsample(x), main(x)))``: the block's main path (at stride 1)
    is the high branch, its 1×1 shortcut (stride 2) the low branch, ``adaptor`` a
    residual :class:`~resizeops.nn.ShapeAdaptor` (weights ×2, as the official
    code). The identity shortcut is not added, as in the official cell. The
    block's own submodules become this module's children under their own names,
    so that the weights stay the block's (and keep their ``state_dict`` names).
    """

    def __init__(self, block: nn.Module, adaptor: ShapeAdaptor, low: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.bottleneck = hasattr(block, "conv3")
        for name, child in block.named_children():
            self.add_module(name, child)
        if low is not None:
            self.downsample = low
        if getattr(self, "downsample", None) is None:
            raise ValueError("ShapeAdaptorResidualBlock: the block has no `downsample` and no `low` branch was given")
        self.adaptor = adaptor
        self.stride = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        if self.bottleneck:
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
        else:
            out = self.bn2(self.conv2(out))
        return self.relu(self.adaptor(self.downsample(x), out))


class ShapeAdaptorInvertedResidual(nn.Module):
    """A torchvision ``InvertedResidual`` as the official MobileNetV2 Shape Adaptor block: ``adaptor(conv(x))``.

    ``adaptor`` takes one input (:class:`~resizeops.nn.ShapeAdaptorMaxPool2d` or
    :class:`ShapeAdaptorCell`: its low branch pools the block's output). No
    residual, as the official block. ``conv`` is the block's own.
    """

    def __init__(self, block: nn.Module, adaptor: ShapeAdaptor) -> None:
        super().__init__()
        self.conv = block.conv
        self.adaptor = adaptor
        self.out_channels = getattr(block, "out_channels", None)
        self.stride = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adaptor(self.conv(x))


def _torchvision():
    """torchvision's model classes, or None without torchvision (then only Sequential VGGs convert)."""
    try:
        from torchvision.models import mobilenetv2, resnet, vgg
    except Exception:  # noqa: BLE001 - any import failure: no torchvision families
        return None
    return {"VGG": vgg.VGG, "ResNet": resnet.ResNet, "BasicBlock": resnet.BasicBlock,
            "Bottleneck": resnet.Bottleneck, "MobileNetV2": mobilenetv2.MobileNetV2,
            "InvertedResidual": mobilenetv2.InvertedResidual}  # fmt: skip


def _refuse(model: nn.Module, why: str) -> ValueError:
    return ValueError(f"{_SA}: cannot convert {type(model).__name__}: {why}; supported are {_SUPPORTED}")


def _number(name: str, v, positive: bool = True) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{_SA}: `{name}` must be a number, got {type(v).__name__} {v!r}")
    if not math.isfinite(v) or (positive and v <= 0):
        raise ValueError(f"{_SA}: `{name}` must be finite and > 0, got {v!r}")
    return float(v)


def _sa_options(options: dict) -> dict:
    """The checked options (bad ones refused before the model is copied)."""
    unknown = sorted(set(options) - set(_SA_OPTIONS))
    if unknown:
        raise TypeError(f"{_SA}: unknown option(s) {unknown}; the options are {list(_SA_OPTIONS)}")
    o = {"input_dim": None, "output_dim": 8, "num": None, "mode": "standard", "r1": 0.5, "r2": 1.0, "layout": "keep",
         "backend": None}
    o.update(options)
    if o["input_dim"] is None:
        raise ValueError(f"{_SA}: `input_dim` (the input resolution D_in, e.g. 32 or 224) is required")
    o["input_dim"] = _number("input_dim", o["input_dim"])
    o["output_dim"] = _number("output_dim", o["output_dim"])
    if o["mode"] not in _SA_MODES:
        raise ValueError(f"{_SA}: `mode` must be one of {list(_SA_MODES)}, got {o['mode']!r}")
    if o["layout"] not in _SA_LAYOUTS:
        raise ValueError(f"{_SA}: `layout` must be one of {list(_SA_LAYOUTS)}, got {o['layout']!r}")
    num = o["num"]
    if num is not None:
        if isinstance(num, bool) or not isinstance(num, numbers.Integral):
            raise TypeError(f"{_SA}: `num` must be an integer ≥ 1 or None, got {type(num).__name__} {num!r}")
        if num < 1:
            raise ValueError(f"{_SA}: `num` (the number of adaptors) must be ≥ 1, got {num}")
        o["num"] = int(num)
    r1, r2 = _number("r1", o["r1"]), _number("r2", o["r2"])
    if not r1 < r2:
        raise ValueError(f"{_SA}: need 0 < `r1` < `r2`, got r1={r1}, r2={r2}")
    o["r1"], o["r2"] = r1, r2
    if o["mode"] == "standard" and num is None:
        if r1 >= 1:
            raise ValueError(f"{_SA}: the default `num` (Eq. 3) needs `r1` < 1, got r1={r1}; pass `num`")
        n = num_adaptors(o["input_dim"], r1=r1)
        if n < 1:
            raise ValueError(
                f"{_SA}: `input_dim`={o['input_dim']:g} leaves no room for an adaptor (Eq. 3: "
                f"N = floor(log_{{1/r1}}(D_in / 2)) = {n}); pass `num`"
            )
    return o


def _family(model: nn.Module) -> str:
    """'vgg' / 'resnet' / 'mobilenet_v2' / 'stack', or a ValueError naming what was found (read-only).

    Recognised by structure (:func:`resizeops.models._netgraph.units`: the network as a
    chain of layers and blocks, traced with ``torch.fx``), not by class or
    attribute names: torchvision's and timm's models and user models built the
    same way are one family each.
    """
    done = [n for n, m in model.named_modules() if isinstance(m, _Resizer)]
    if done:
        raise _refuse(model, f"it already holds learnable resizers (`{done[0] or type(model).__name__}`)")
    units = _netgraph.units(model)
    if units is None:
        raise _refuse(model, "its forward is not one chain of layers and blocks (it has parallel paths outside "
                             "its blocks, as HRNet's branches at several resolutions), and Shape Adaptor's cells are "
                             "defined for a single path")  # fmt: skip
    return _body(model, units)[0]


def _is_block(u: _netgraph.Unit) -> bool:
    """A residual block, or an inverted-residual block without a skip (a depthwise conv among ≥ 2 convs)."""
    if u.kind == "residual":
        return True
    convs = [m for m in u.module.modules() if isinstance(m, nn.Conv2d)]
    return u.kind == "plain" and len(convs) >= 2 and any(map(_netgraph.depthwise_conv, convs))


def _unit_strided(u: _netgraph.Unit) -> bool:
    return any(_strided(m) for m in u.module.modules())


def _what(u: _netgraph.Unit) -> str:
    return f"`{u.name}` ({type(u.module).__name__})"


def _body(model: nn.Module, units: List[_netgraph.Unit]):
    """(family, stem units, block units, head units); refuses, naming the unit, what no family covers."""
    for u in units:
        if u.kind == "opaque" and _unit_strided(u):
            raise _refuse(model, f"torch.fx cannot trace {_what(u)}, which down-samples")
        if u.kind == "block":
            raise _refuse(model, f"{_what(u)} merges its paths otherwise than by a residual add (a concatenation, "
                                 f"parallel branches), which no Shape Adaptor cell covers")  # fmt: skip
    idx = [k for k, u in enumerate(units) if _is_block(u)]
    if not idx:
        seq = _vgg_sequential(model, units)
        _vgg_units(model, seq)
        return "vgg", [], [], []
    stem, body, head = units[: idx[0]], units[idx[0] : idx[-1] + 1], units[idx[-1] + 1 :]
    late = [u for u in head if _unit_strided(u)]
    if late:
        raise _refuse(model, f"{_what(late[0])} down-samples after the last block")
    strided = [u for u in body if _unit_strided(u)]
    if any(u.kind == "residual" and u.shortcut == "projection" for u in body):
        # The ResNet family: every block residual; a down-sampling one has a projection shortcut.
        for u in body:
            if u.kind != "residual":
                raise _refuse(model, f"{_what(u)} sits between residual blocks but is none (a ResNet's stages "
                                     f"are made of residual blocks only)")  # fmt: skip
            if _unit_strided(u) and u.shortcut != "projection":
                raise _refuse(model, f"{_what(u)} down-samples but its shortcut is the identity")
        return "resnet", stem, body, head
    if any(_is_block(u) and u.kind == "plain" for u in strided):
        # Inverted residuals: blocks with a depthwise conv, the down-sampling ones without a skip; among
        # them, blocks with an identity skip or without one (EfficientNetV2's fused blocks have no
        # depthwise conv).
        for u in body:
            convs = sum(isinstance(m, nn.Conv2d) for m in u.module.modules())
            if not ((u.kind == "residual" and u.shortcut == "identity") or (u.kind == "plain" and convs >= 2)):
                raise _refuse(model, f"{_what(u)} sits between inverted-residual blocks but is none")
        return "mobilenet_v2", stem, body, head
    if all(not _unit_strided(u) for u in body if _is_block(u)):
        # Size-keeping residual blocks between strided convolutions (ConvNeXt): a VGG-like stack of blocks.
        for u in body:
            if not _is_block(u) and u.kind not in ("layer", "plain"):
                raise _refuse(model, f"{_what(u)} sits between the blocks but is neither a block nor a layer")
        return "stack", stem, body, head
    bad = next(u for u in strided if _is_block(u))
    raise _refuse(model, f"{_what(bad)} down-samples inside a block without a projection shortcut, among blocks "
                         f"that are not inverted residuals")  # fmt: skip


def _spread(candidates: list, num: int, span: Optional[int] = None) -> list:
    """``num`` of ``candidates`` spread uniformly, as the official code: ``candidates[int(i · span/num)]``.

    ``span`` is what the official code divides (the number of candidates, except
    ResNet AutoSC). Callers make sure ``num`` ≤ the number of candidates, which
    keeps the indices distinct and in range for span ≤ len + 1.
    """
    gap = (len(candidates) if span is None else span) / num
    return [candidates[int(i * gap)] for i in range(num)]


def _count(o: dict, family: str, candidates: list, where: str) -> int:
    """The number of adaptors for standard / AutoSC: ``num`` or the official default, at most the candidates."""
    if not candidates:
        raise ValueError(f"{_SA}: the {family} has no position for an adaptor ({where})")
    num = o["num"]
    if num is not None:
        if num > len(candidates):
            raise ValueError(
                f"{_SA}: `num`={num} adaptors, but the {family} has only {len(candidates)} positions for one ({where})"
            )
        return num
    d = o["input_dim"]
    if o["mode"] == "standard":
        num = num_adaptors(d, r1=o["r1"])  # Eq. 3 as the official int(log2(D_in / 2))
    elif family.startswith("VGG"):  # the official grid-searched AutoSC numbers (note < vs ≤ 64: as the official)
        num = 2 if d < 64 else 4
    elif family == "ResNet":
        num = 2 if d <= 64 else 4
    else:
        num = 3 if d < 64 else 4
    if num > len(candidates):
        warnings.warn(
            f"{_SA}: the default of {num} adaptors exceeds the {len(candidates)} positions of the {family}; "
            f"using {len(candidates)}",
            stacklevel=4,
        )
        num = len(candidates)
    return num


def _fixed_count(o: dict, family: str, n: int) -> None:
    """AutoTL: one adaptor per down-sampling layer; ``num`` may only confirm it."""
    if n == 0:
        raise ValueError(f"{_SA}: mode='autotl' replaces down-sampling layers, and the {family} has none")
    if o["num"] is not None and o["num"] != n:
        raise ValueError(
            f"{_SA}: mode='autotl' puts one adaptor on each of the {family}'s {n} down-sampling layers; "
            f"`num`={o['num']} cannot be honoured (leave it out)"
        )


def _alpha(o: dict, num: int) -> float:
    if o["mode"] == "standard":
        return init_alpha(o["input_dim"], o["output_dim"], num, o["r1"], o["r2"])
    return ALPHA_AUTOSC if o["mode"] == "autosc" else ALPHA_AUTOTL


def _device(m: nn.Module):
    p = next(m.parameters(), None)
    return p.device if p is not None else None


def _adaptor(o: dict, alpha: float, ref: nn.Module, low: Optional[nn.Module] = None, residual: bool = False):
    """A max-pool adaptor (shape_adaptor_maxpool; AutoSC: a ceil-mode max-pool cell), or one with ``low`` as its low branch."""
    kw = dict(r1=o["r1"], r2=o["r2"], alpha_init=alpha, residual=residual, backend=o["backend"], device=_device(ref))
    if residual:
        return ShapeAdaptor(**kw)
    if low is None and o["mode"] == "autosc":
        # The official AutoSC pools with ceil_mode so that small maps never pool to 0;
        # shape_adaptor_maxpool is floor-mode.
        low = nn.MaxPool2d(2, 2, ceil_mode=True)
    if low is None or _plain_maxpool(low):
        return ShapeAdaptorMaxPool2d(**kw)
    return ShapeAdaptorCell(low, **kw)


def _plain_maxpool(m: nn.Module) -> bool:
    """A floor-mode 2×2 / stride-2 max-pool: what ShapeAdaptorMaxPool2d's op computes."""
    return (isinstance(m, nn.MaxPool2d) and _pair(m.kernel_size) == (2, 2) and _stride(m) == (2, 2)
            and _pair(m.padding) == (0, 0) and _pair(m.dilation) == (1, 1) and not m.ceil_mode
            and not m.return_indices)  # fmt: skip


def _strided(m: nn.Module) -> bool:
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        return max(_stride(m)) > 1
    return isinstance(m, nn.Conv2d) and max(_pair(m.stride)) > 1


def _unstride(module: nn.Module) -> None:
    """Every Conv2d in ``module`` (itself included) at stride 1; every strided pooling layer an identity
    (kernel 1: a ResNet-D shortcut's average pool)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            m.stride = (1, 1)
        elif isinstance(m, _POOLS) and _strided(m):
            m.kernel_size, m.stride, m.padding = 1, 1, 0


def _factor(*modules: nn.Module) -> Tuple[float, float]:
    """The fixed resizing factor (1/stride per axis) of kept down-sampling layers (a block's main path)."""
    fh = fw = 1.0
    for m in (sub for module in modules for sub in module.modules()):
        if _strided(m):
            sh, sw = _stride(m) if isinstance(m, _POOLS) else _pair(m.stride)
            fh, fw = fh / sh, fw / sw
    return fh, fw


def _use_global_sizes(o: dict, events: list) -> None:
    """AutoSC: size the adaptors as the official code does, by its running product over the whole network.

    ``events``, in network order: each kept down-sampling layer as its factor
    (fh, fw) and each adaptor. Every adaptor gets D_in, the product of the fixed
    factors before it, the network's total, and the adaptors before it
    (:meth:`~resizeops.nn.ShapeAdaptor.use_global_size`).
    """
    f = (1.0, 1.0)
    plan = []
    for e in events:
        if isinstance(e, ShapeAdaptor):
            plan.append((e, f, tuple(a for a, _, _ in plan)))
        else:
            f = (f[0] * e[0], f[1] * e[1])
    for adaptor, before, previous in plan:
        adaptor.use_global_size(o["input_dim"], before, f, previous)


def _new_conv(like: nn.Conv2d, kernel: int, stride) -> nn.Conv2d:
    """A fresh square-kernel Conv2d with ``like``'s channels, bias, device and dtype (padding k // 2)."""
    conv = nn.Conv2d(like.in_channels, like.out_channels, kernel, stride=stride, padding=kernel // 2,
                     bias=like.bias is not None, device=like.weight.device, dtype=like.weight.dtype)  # fmt: skip
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")  # as torchvision and the official
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


# -- VGG ----------------------------------------------------------------------


def _vgg_units(model: nn.Module, seq: nn.Sequential) -> List[Tuple[int, int]]:
    """(index of the conv, index of the unit's end: its ReLU) for each Conv2d of ``seq``; refuses other layers."""
    for i, m in enumerate(seq):
        if not isinstance(m, _VGG_LAYERS):
            raise _refuse(model, f"its feature extractor holds `{i}` ({type(m).__name__}), not a VGG layer")
        if isinstance(m, nn.MaxPool2d) and m.return_indices:
            raise _refuse(model, f"`{i}` ({m}) returns indices")
    units = []
    for i, m in enumerate(seq):
        if isinstance(m, nn.Conv2d):
            end = i
            # The unit is conv [→ BN] [→ ReLU]; the official inserts after the ReLU.
            if end + 1 < len(seq) and isinstance(seq[end + 1], nn.BatchNorm2d):
                end += 1
            if end + 1 < len(seq) and isinstance(seq[end + 1], (nn.ReLU, nn.ReLU6)):
                end += 1
            units.append((i, end))
    if not units:
        raise _refuse(model, "its feature extractor has no Conv2d")
    return units


def _vgg_sequential(model: nn.Module, units: Optional[List[_netgraph.Unit]] = None) -> nn.Sequential:
    """The VGG feature extractor: the model itself if it is an nn.Sequential, else the nn.Sequential of
    VGG layers in its chain that holds every down-sampling layer (torchvision's and timm's ``features``)."""
    if isinstance(model, nn.Sequential):
        return model
    units = _netgraph.units(model) if units is None else units
    strided = [m for m in model.modules() if _strided(m)]
    for u in units or ():
        m = u.module
        if (isinstance(m, nn.Sequential) and all(isinstance(c, _VGG_LAYERS) for c in m)
                and all(any(s is c for c in m) for s in strided)):  # fmt: skip
            return m
    where = [n for n, m in model.named_modules() if _strided(m)]
    raise _refuse(model, "it has neither residual nor inverted-residual blocks, and no nn.Sequential of VGG layers "
                         f"holds all of its down-sampling layers ({_ticks(where) or 'it has none'})")  # fmt: skip


def _sa_vgg(model: nn.Module, o: dict) -> nn.Module:
    seq = _vgg_sequential(model)
    units = _vgg_units(model, seq)
    pools = [i for i, m in enumerate(seq) if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) and _strided(m)]
    if o["layout"] == "official" and o["input_dim"] <= 64:
        # The official VGG has no max-pool after its last convolution below 65 pixels.
        for i in [i for i in pools if i > units[-1][1]]:
            seq[i] = nn.Identity()
            pools.remove(i)
    strided_convs = [c for c, _ in units if _strided(seq[c])]
    mode = o["mode"]
    inserts: Dict[int, ShapeAdaptor] = {}  # unit end → the adaptor that follows it
    if mode == "standard":
        for i in pools:
            seq[i] = nn.Identity()  # the adaptors do all the down-sampling (Identity keeps the indices)
        for c in strided_convs:
            seq[c].stride = (1, 1)
        # The last convolution's ReLU is no candidate: never an adaptor at the last layer.
        candidates = [end for _, end in units[:-1]]
        num = _count(o, "VGG", candidates, "after each convolution but the last")
        alpha = _alpha(o, num)
        for end in _spread(candidates, num):
            inserts[end] = _adaptor(o, alpha, seq)
    elif mode == "autosc":
        for i in pools:
            seq[i].ceil_mode = True  # as the official AutoSC: shrunk (odd) maps never pool to 0
        # Not right at a down-sampling layer: not a ReLU a pool follows, not a strided conv's.
        candidates = [end for c, end in units[:-1]
                      if not (end + 1 < len(seq) and end + 1 in pools) and c not in strided_convs]  # fmt: skip
        num = _count(o, "VGG", candidates, "after each convolution but the last, not before a pool nor strided")
        for end in _spread(candidates, num):
            inserts[end] = _adaptor(o, ALPHA_AUTOSC, seq)
    else:
        _fixed_count(o, "VGG", len(pools) + len(strided_convs))
        for i in pools:
            # The pool is the adaptor's low branch, at its own place.
            seq[i] = _adaptor(o, ALPHA_AUTOTL, seq, low=seq[i])
        for c, end in units:
            if c in strided_convs:
                seq[c].stride = (1, 1)
                inserts[end] = _adaptor(o, ALPHA_AUTOTL, seq)
    if mode == "autosc":
        events: list = []
        for i, m in enumerate(seq):
            if i in pools or (isinstance(m, nn.Conv2d) and _strided(m)):
                events.append(_factor(m))
            if i in inserts:
                events.append(inserts[i])
        _use_global_sizes(o, events)
    for end, adaptor in inserts.items():
        seq[end] = nn.Sequential(seq[end], adaptor)  # keeps the indices (and names) of every other layer
    return model


# -- ResNet -------------------------------------------------------------------


class _Stem:
    """The layers before a network's first block: its strided convolutions and the strided pool whose
    place the stem adaptor takes (or, without one, the stem's last unit, which the adaptor follows)."""

    def __init__(self, model: nn.Module, units: List[_netgraph.Unit], first_block: nn.Module) -> None:
        self.model, self.units = model, units
        self.convs = [m for u in units for m in u.module.modules() if isinstance(m, nn.Conv2d) and _strided(m)]
        pools = [u for u in units if isinstance(u.module, _POOLS) and _strided(u.module)]
        self.pool = pools[-1] if pools else None
        self.ref = self.convs[0] if self.convs else first_block  # for the adaptors' device

    def unstride(self) -> None:
        for c in self.convs:
            c.stride = (1, 1)

    def put(self, module: Optional[nn.Module]) -> None:
        """``module`` after the stem: in the strided pool's place (an Identity if None), else after its last unit."""
        if self.pool is not None:
            setattr(self.pool.parent, self.pool.key, module if module is not None else nn.Identity())
        elif module is not None:
            if not self.units:
                raise _refuse(self.model, "it has no stem before its first block to put an adaptor after")
            _append_after(self.model, self.units[-1], module)


def _resnet_blocks(model: nn.Module, tv=None) -> Tuple[_Stem, List[Tuple[nn.Module, str, nn.Module]]]:
    """The stem and (stage, key in it, block) for every residual block, in call order; refuses other layouts."""
    units = _netgraph.units(model)
    family, stem, body, _ = _body(model, units) if units is not None else (None, [], [], [])
    if family != "resnet":
        raise _refuse(model, "it is not a chain of residual blocks with projection shortcuts")
    if len(body) < 2:
        raise _refuse(model, f"it has {len(body)} residual block(s); a ResNet needs at least two")
    return _Stem(model, stem, body[0].module), [(u.parent, u.key, u.module) for u in body]


def _torchvision_block(block: nn.Module, *names: str) -> bool:
    """``block`` runs the forward of one of torchvision's classes ``names`` (its own cells apply)."""
    tv = _torchvision()
    return tv is not None and any(type(block).forward is tv[n].forward for n in names)


def _free_name(module: nn.Module, name: str) -> str:
    """``name`` (or ``name1``, ``name2``, …) made free for a new child of ``module`` (an attribute that
    is None, as a block's absent ``downsample``, is taken over)."""
    k = 0
    candidate = name
    while hasattr(module, candidate):
        if getattr(module, candidate) is None:
            if candidate in module._modules:
                del module._modules[candidate]
            else:
                delattr(module, candidate)
            break
        k += 1
        candidate = f"{name}{k}"
    return candidate


def _new_projection(ref: nn.Module, cin: int, cout: int, stride: int) -> nn.Sequential:
    """A new 1×1 conv + BN shortcut on ``ref``'s device and dtype, in ``ref``'s train/eval mode
    (a new BN of a model in eval mode must not update its statistics)."""
    param = next(ref.parameters())
    like = dict(device=param.device, dtype=param.dtype)
    conv = nn.Conv2d(cin, cout, 1, stride=stride, bias=False, **like)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")  # as torchvision and the official
    return nn.Sequential(conv, nn.BatchNorm2d(cout, **like)).train(ref.training)


def _path_modules(graph: torch.fx.Graph, node: torch.fx.Node) -> List[str]:
    """The children called on the way from the graph's input to ``node``."""
    return [a.target for a in _netgraph.ancestors(node) if a.op == "call_module"]


def _graph_cell(block: nn.Module, what: str) -> torch.fx.Graph:
    """The block's own forward as a graph to edit (children as leaves); refuses blocks that cannot be."""
    graph = _netgraph.shallow_trace(block)
    if graph is None or not _netgraph.same_in_train_and_eval(block):
        why = "torch.fx cannot trace its forward" if graph is None else "its forward depends on training mode"
        raise ValueError(f"{_SA}: cannot make {type(block).__name__} {what}: {why}")
    return graph


def _graph_residual_cell(block: nn.Module, adaptor: ShapeAdaptor) -> nn.Module:
    """A residual block of any library as the residual adaptor cell, from its own forward (``torch.fx``).

    The residual ``add`` becomes ``adaptor(low, main)``: the main path at stride 1
    as the high branch, the shortcut at stride 2 as the low branch (the block's
    own projection, made strided if it was not; a new 1×1 conv + BN if the
    shortcut was the identity). What follows the add (the activation) stays. The
    children keep their names, so every weight keeps its ``state_dict`` name.
    """
    graph = _graph_cell(block, "a residual adaptor cell")
    merge, main, short, kind = _netgraph.residual(graph, block)
    on_main, on_short = set(_path_modules(graph, main)), set(_path_modules(graph, short))
    for name in on_main - on_short:
        _unstride(block.get_submodule(name))
    placeholder = next(n for n in graph.nodes if n.op == "placeholder")
    if kind == "identity":
        conv = next(m for m in block.modules() if isinstance(m, nn.Conv2d))
        projection = _new_projection(conv, conv.in_channels, conv.in_channels, 2)
        calls = [n for n in graph.nodes if n.op == "call_module" and n.target in on_short - on_main]
        if len(calls) == 1 and calls[0].args == (placeholder,) and "." not in calls[0].target and not any(
                True for _ in block.get_submodule(calls[0].target).parameters()):  # fmt: skip
            # The shortcut is a weightless module (an Identity `downsample`): the projection takes its place.
            setattr(block, calls[0].target, projection)
            low = calls[0]
        else:
            low_name = _free_name(block, "downsample")
            block.add_module(low_name, projection)
            with graph.inserting_before(merge):
                low = graph.call_module(low_name, (placeholder,))
    else:
        low = short
        layers = [m for n in on_short - on_main for m in block.get_submodule(n).modules()]
        if not any(_strided(m) for m in layers):
            first = next(m for m in layers if isinstance(m, nn.Conv2d))
            first.stride = (2, 2)  # the block's own shortcut weights, now the ×½ branch
    name = _free_name(block, "adaptor")
    block.add_module(name, adaptor)
    with graph.inserting_before(merge):
        cell = graph.call_module(name, (low, main))
    merge.replace_all_uses_with(cell)
    graph.erase_node(merge)
    return _graph_module(block, graph, f"{type(block).__name__}ShapeAdaptorCell")


def _graph_ir_cell(block: nn.Module, adaptor: ShapeAdaptor) -> nn.Module:
    """An inverted-residual block of any library as the official MobileNetV2 cell: ``adaptor(main(x))``,
    its identity skip (if any) dropped, from its own forward (``torch.fx``); names kept."""
    graph = _graph_cell(block, "an inverted-residual adaptor cell")
    res = _netgraph.residual(graph, block)
    if res is not None and res[3] == "identity":
        merge, main = res[0], res[1]
        merge.replace_all_uses_with(main)
        graph.erase_node(merge)
    name = _free_name(block, "adaptor")
    block.add_module(name, adaptor)
    _append_to_graph(graph, name)
    return _graph_module(block, graph, f"{type(block).__name__}ShapeAdaptorCell")


def _graph_module(root: nn.Module, graph: torch.fx.Graph, class_name: str) -> torch.fx.GraphModule:
    """A GraphModule of an edited graph over ``root``'s children (their names, so their weights', kept)."""
    gm = torch.fx.GraphModule(root, graph, class_name=class_name)
    gm.graph.eliminate_dead_code()  # what fed only the removed operations (an identity shortcut)
    gm.recompile()
    return gm


def _append_to_graph(graph: torch.fx.Graph, name: str) -> None:
    output = next(n for n in graph.nodes if n.op == "output")
    value = output.args[0]
    if not isinstance(value, torch.fx.Node):
        raise ValueError(f"{_SA}: cannot put an adaptor after a forward that returns {type(value).__name__}")
    with graph.inserting_before(output):
        output.args = (graph.call_module(name, (value,)),)


def _append_after(model: nn.Module, unit: _netgraph.Unit, new: nn.Module) -> None:
    """Make ``new`` follow ``unit`` in the network without renaming any weight.

    In order: inside it if it is an nn.Sequential; wrapped with it as
    ``Sequential(unit, new)`` if it has no weights and runs once; after the child
    whose output it returns, recursively (a conv-norm-activation unit: after the
    activation); else its own forward as a graph with ``new`` applied last.
    """
    m = unit.module
    if isinstance(m, nn.Sequential):
        m.append(new)
        return
    once = sum(1 for _, x in model.named_modules(remove_duplicate=False) if x is m) == 1
    if once and next(m.parameters(), None) is None and next(m.buffers(), None) is None:
        setattr(unit.parent, unit.key, nn.Sequential(m, new))
        return
    graph = _netgraph.shallow_trace(m)
    if graph is not None:
        output = next(n for n in graph.nodes if n.op == "output")
        last = output.args[0]
        if isinstance(last, torch.fx.Node) and last.op == "call_module" and "." not in last.target:
            calls = [n for n in graph.nodes if n.op == "call_module" and n.target == last.target]
            if len(calls) == 1:
                child = m.get_submodule(last.target)
                name = f"{unit.name}.{last.target}"
                return _append_after(model, _netgraph.Unit(name, child, m, last.target, "layer"), new)
    graph = _graph_cell(m, "end with an adaptor")
    name = _free_name(m, "adaptor")
    m.add_module(name, new)
    _append_to_graph(graph, name)
    setattr(unit.parent, unit.key, _graph_module(m, graph, type(m).__name__))


def _projection(block: nn.Module, stride: int) -> nn.Sequential:
    """A new 1×1 conv (stride 2) + BN shortcut: the low branch of a block that had no shortcut."""
    cout = (block.bn3 if hasattr(block, "bn3") else block.bn2).num_features
    return _new_projection(block, block.conv1.in_channels, cout, stride)


def _residual_cell(o: dict, block: nn.Module, alpha: float) -> nn.Module:
    """The block as a residual adaptor cell: main path at stride 1, shortcut at stride 2 as the low branch."""
    if not _torchvision_block(block, "BasicBlock", "Bottleneck"):
        return _graph_residual_cell(block, _adaptor(o, alpha, block, residual=True))
    for name in ("conv1", "conv2", "conv3"):
        if hasattr(block, name):
            getattr(block, name).stride = (1, 1)
    if block.downsample is not None:
        block.downsample[0].stride = (2, 2)  # the block's own shortcut weights, now the ×½ branch
        low = None
    else:
        low = _projection(block, 2)
    return ShapeAdaptorResidualBlock(block, _adaptor(o, alpha, block, residual=True), low)


def _block_factor(block: nn.Module) -> Tuple[float, float]:
    """The fixed resizing factor of a kept residual block: its main path's (the shortcut's is the same).

    torchvision's blocks: ``conv1``–``conv3``. Other blocks: the strongest single
    down-sampling layer in them, since each of a residual block's paths down-samples
    once (ResNet, ResNet-D's pooled shortcut, RegNet).
    """
    if _torchvision_block(block, "BasicBlock", "Bottleneck"):
        return _factor(*(getattr(block, c) for c in ("conv1", "conv2", "conv3") if hasattr(block, c)))
    factors = [_factor(m) for m in block.modules() if _strided(m)] or [(1.0, 1.0)]
    return min(f[0] for f in factors), min(f[1] for f in factors)


def _official_resnet_layout(model: nn.Module, o: dict, blocks) -> None:
    """The official code's ResNet for ``mode`` and ``input_dim`` (``layout="official"``).

    Its stem: below 64 pixels (standard, AutoTL: up to 64) a 3×3 stride-1
    convolution and, in AutoSC, no max-pool (the CIFAR ResNet); above, standard and
    AutoTL use a 7×7 stride-1 convolution and AutoSC keeps the 7×7 stride-2 one and
    the max-pool. In standard mode every stage's first block has a 1×1 projection
    (torchvision's ``layer1.0`` of BasicBlock ResNets has none).
    """
    if not (isinstance(getattr(model, "conv1", None), nn.Conv2d) and hasattr(model, "maxpool")
            and all(_torchvision_block(b, "BasicBlock", "Bottleneck") for _, _, b in blocks)):  # fmt: skip
        raise _refuse(model, "layout='official' rebuilds a torchvision ResNet (a `conv1` stem, `maxpool`, "
                             "BasicBlock/Bottleneck blocks); use layout='keep' for other residual networks")
    d, mode = o["input_dim"], o["mode"]
    if mode == "autosc":
        if d < 64:
            model.conv1 = _new_conv(model.conv1, 3, (1, 1))
            model.maxpool = nn.Identity()
    elif d <= 64:
        # At its stride for now: the mode takes it to 1 (AutoTL: with an adaptor in its place).
        model.conv1 = _new_conv(model.conv1, 3, model.conv1.stride)
    if mode == "standard":
        for k, (stage, _, b) in enumerate(blocks):
            first_of_stage = k == 0 or blocks[k - 1][0] is not stage
            if first_of_stage and b.downsample is None:
                b.downsample = _projection(b, 1)


def _sa_resnet(model: nn.Module, o: dict) -> nn.Module:
    stem_layers, blocks = _resnet_blocks(model)
    if o["layout"] == "official":
        _official_resnet_layout(model, o, blocks)
        stem_layers, blocks = _resnet_blocks(model)  # the layout may have replaced the stem
    mode = o["mode"]
    cells: Dict[int, float] = {}  # id(block) → α of its residual cell
    if mode == "standard":
        # Candidates: the stem, then every block but the last (the official counts sum(layers) + 1 − 1).
        candidates = ["stem"] + [b for _, _, b in blocks[:-1]]
        num = _count(o, "ResNet", candidates, "the stem and every block but the last")
        alpha = _alpha(o, num)
        chosen = _spread(candidates, num)
        stem_layers.unstride()
        # The stem's adaptor (always the first candidate) takes the max-pool's place.
        stem_layers.put(_adaptor(o, alpha, stem_layers.ref) if "stem" in chosen else None)
        for _, _, b in blocks:
            if not any(b is c for c in chosen):
                _unstride(b)  # a stage's first block keeps its shortcut projection, at stride 1
                b.stride = 1
            else:
                cells[id(b)] = alpha
    elif mode == "autosc":
        # Not at a down-sampling layer: no stage's first block, and not the last block.
        firsts = {id(b) for k, (stage, _, b) in enumerate(blocks) if k == 0 or blocks[k - 1][0] is not stage}
        candidates = [b for _, _, b in blocks[:-1] if id(b) not in firsts]
        num = _count(o, "ResNet", candidates, "every block but a stage's first and the last")
        # The official divides by sum(layers) − 3 − 1: one more than the candidates
        # (it discounts 3 human resizing blocks but skips all 4 stage-first ones).
        for b in _spread(candidates, num, span=len(candidates) + 1):
            cells[id(b)] = ALPHA_AUTOSC
    else:
        stem = []
        for conv in stem_layers.convs:
            conv.stride = (1, 1)
            stem.append(_adaptor(o, ALPHA_AUTOTL, conv))
        if stem_layers.pool is not None:
            # As the official: a 2×2 max-pool low branch (not the original 3×3 pool).
            stem.append(_adaptor(o, ALPHA_AUTOTL, stem_layers.ref))
        strided = [b for _, _, b in blocks if any(_strided(m) for m in b.modules())]
        _fixed_count(o, "ResNet", len(stem) + len(strided))
        if stem:
            stem_layers.put(stem[0] if len(stem) == 1 else nn.Sequential(*stem))
        for b in strided:
            cells[id(b)] = ALPHA_AUTOTL
    events: list = [_factor(*(u.module for u in stem_layers.units))] if mode == "autosc" else []
    for stage, j, b in blocks:
        if id(b) in cells:
            cell = _residual_cell(o, b, cells[id(b)])
            setattr(stage, j, cell)
            events.append(next(m for m in cell.modules() if isinstance(m, ShapeAdaptor)))
        elif mode == "autosc":
            events.append(_block_factor(b))
    if mode == "autosc":
        _use_global_sizes(o, events)
    return model


# -- MobileNetV2 --------------------------------------------------------------


class _Features:
    """An inverted-residual network as ``_sa_mobilenet`` indexes it: ``[stem, block 1, …, block n, head]``.

    ``f[0]`` is the stem (its one unit, or a detached ModuleList of its units),
    ``f[i]`` the i-th block (assignable: the block's place in the network), the
    last item the head; ``append_to_stem`` puts a module after the stem.
    """

    def __init__(self, model: nn.Module, stem, body, head) -> None:
        self.model, self.stem, self.body, self.head = model, stem, body, head

    def __len__(self) -> int:
        return len(self.body) + 2

    @staticmethod
    def _group(units) -> nn.Module:
        return units[0].module if len(units) == 1 else nn.ModuleList([u.module for u in units])

    def __getitem__(self, i: int) -> nn.Module:
        i = i % len(self)
        if i == 0:
            return self._group(self.stem)
        if i == len(self) - 1:
            return self._group(self.head) if self.head else nn.ModuleList()
        return self.body[i - 1].module

    def __setitem__(self, i: int, module: nn.Module) -> None:
        u = self.body[i - 1]
        setattr(u.parent, u.key, module)

    def append_to_stem(self, module: nn.Module) -> None:
        _append_after(self.model, self.stem[-1], module)


def _mobilenet_blocks(model: nn.Module, tv=None) -> _Features:
    """The stem, the inverted-residual blocks and the head; refuses other layouts."""
    units = _netgraph.units(model)
    family, stem, body, head = _body(model, units) if units is not None else (None, [], [], [])
    if family != "mobilenet_v2":
        raise _refuse(model, "it is not a chain of inverted-residual blocks")
    if not stem:
        raise _refuse(model, "it has no stem before its first inverted-residual block")
    return _Features(model, stem, body, head)


def _ir_cell(block: nn.Module, adaptor: ShapeAdaptor) -> nn.Module:
    if _torchvision_block(block, "InvertedResidual"):
        return ShapeAdaptorInvertedResidual(block, adaptor)
    return _graph_ir_cell(block, adaptor)


def _block_strided(b: nn.Module) -> bool:
    return any(_strided(m) for m in b.modules())


def _sa_mobilenet(model: nn.Module, o: dict) -> nn.Module:
    f = _mobilenet_blocks(model, _torchvision())
    blocks = list(range(1, len(f) - 1))
    mode = o["mode"]
    if o["layout"] == "official" and o["input_dim"] <= 64:
        # The official (CIFAR) MobileNetV2 below 65 pixels: the stem and the first
        # stride-2 block at stride 1.
        first = next((i for i in blocks if _block_strided(f[i])), None)
        for i in [0] + ([first] if first is not None else []):
            _unstride(f[i])
            if i:
                f[i].stride = 1
    chosen: List[int] = []
    if mode == "standard":
        for i in [0] + blocks:
            _unstride(f[i])
        for i in blocks:
            b = f[i]
            b.stride = 1
            if _torchvision_block(b, "InvertedResidual"):
                # As the official, whose blocks are all built at stride 1: a residual wherever channels allow.
                inp = next(m for m in b.conv.modules() if isinstance(m, nn.Conv2d)).in_channels
                b.use_res_connect = inp == b.out_channels
        # The stem and every block; the last conv is no candidate (the official counts sum(n) + 2 − 1).
        candidates = [0] + blocks
        num = _count(o, "MobileNetV2", candidates, "the stem and every block")
        alpha = _alpha(o, num)
        chosen = _spread(candidates, num)
    elif mode == "autosc":
        # Stride-1 blocks after the first (the official counts from −1): not at a down-sampling layer.
        candidates = [i for i in blocks[1:] if not _block_strided(f[i])]
        num = _count(o, "MobileNetV2", candidates, "every stride-1 block but the first")
        alpha = ALPHA_AUTOSC
        chosen = _spread(candidates, num)
    else:
        chosen = [i for i in [0] + blocks if _block_strided(f[i])]
        _fixed_count(o, "MobileNetV2", len(chosen))
        alpha = ALPHA_AUTOTL
        for i in chosen:
            _unstride(f[i])
    events: list = []
    for i in range(len(f)):
        if i in chosen:
            adaptor = _adaptor(o, alpha, f[i])
            if i == 0:
                f.append_to_stem(adaptor)  # the stem's adaptor follows its activation
            else:
                f[i] = _ir_cell(f[i], adaptor)
            events.append(adaptor)
        elif mode == "autosc":
            events.append(_factor(f[i]))
    if mode == "autosc":
        _use_global_sizes(o, events)
    return model


# -- Stacks of size-keeping blocks (ConvNeXt) ---------------------------------


def _sa_stack(model: nn.Module, o: dict) -> nn.Module:
    """A stack of size-keeping residual blocks between strided convolutions, as a VGG-like stack of blocks.

    The steps are the stem's and the down-sampling layers' convolutions and the
    blocks; an adaptor (the VGG max-pool cell) follows a step. ``standard``: the
    strided convolutions go to stride 1, ``num`` adaptors spread over the steps
    but the last; ``autosc``: the down-sampling stays, adaptors on the blocks not
    followed by a down-sampling step; ``autotl``: each strided step at stride 1
    followed by an adaptor.
    """
    units = _netgraph.units(model)
    _, stem, body, _ = _body(model, units)
    steps = [u for u in stem + body if _is_block(u) or any(isinstance(m, nn.Conv2d) for m in u.module.modules())]
    strided = {id(u) for u in steps if _unit_strided(u)}
    family = "VGG-like stack"
    if o["mode"] == "standard":
        for u in steps:
            if id(u) in strided:
                _unstride(u.module)
        candidates = steps[:-1]
        num = _count(o, family, candidates, "after each block and strided convolution but the last")
        alpha = _alpha(o, num)
        chosen = _spread(candidates, num)
    elif o["mode"] == "autosc":
        candidates = [u for k, u in enumerate(steps[:-1]) if id(u) not in strided and id(steps[k + 1]) not in strided]
        num = _count(o, family, candidates, "after each block not followed by a down-sampling step, but the last")
        alpha = ALPHA_AUTOSC
        chosen = _spread(candidates, num)
    else:
        chosen = [u for u in steps if id(u) in strided]
        _fixed_count(o, family, len(chosen))
        alpha = ALPHA_AUTOTL
        for u in chosen:
            _unstride(u.module)
    adaptors = {id(u): _adaptor(o, alpha, u.module) for u in chosen}
    if o["mode"] == "autosc":  # the official AutoSC sizes and the kept down-sampling, as for VGG
        events: list = []
        for u in steps:
            if id(u) in strided:
                events.append(_factor(u.module))
            if id(u) in adaptors:
                events.append(adaptors[id(u)])
        _use_global_sizes(o, events)
    for u in chosen:
        _append_after(model, u, adaptors[id(u)])
    return model


# The probes after a Shape Adaptor conversion: every α moved by +1, then each by its own amount.
_SA_PROBE_SHIFTS = (0.9, -0.8, 1.3, -1.1, 0.6)


def _check_sa(model: nn.Module, converted: nn.Module, o: dict) -> None:
    """Refuses a conversion that stops running when the adaptors' scales move (probed on fake inputs)."""
    d = max(int(round(o["input_dim"])), 1)
    probe = _netgraph.probe_copy(converted, [m.alpha for m in converted.modules() if isinstance(m, _Resizer)])
    sas = [m for m in probe.modules() if isinstance(m, ShapeAdaptor)]
    start = [a.alpha.detach().clone() for a in sas]
    # The input's channels from the model as given: conversion may turn its first convolution into a graph cell.
    spec = _netgraph.probe_input(probe, (d, d), _netgraph.probe_input(model, (d, d)).shape[1])
    n = len(_SA_PROBE_SHIFTS)
    with _netgraph.fake_mode() as mode:
        for label, shifts in (("as converted", [0.0] * len(sas)), ("with every α + 1", [1.0] * len(sas)),
                              ("with each α moved on its own", [_SA_PROBE_SHIFTS[k % n] for k in range(len(sas))])):
            with torch.no_grad():
                for a, a0, shift in zip(sas, start, shifts):
                    a.alpha.copy_(a0 + shift)
            refresh_shapes(probe)
            failure = _netgraph.run_module(probe, spec, mode)
            if failure is not None:
                raise ValueError(
                    f"{_SA}: cannot convert {type(model).__name__}: converted, it does not run on a {spec} input "
                    f"(`input_dim`={d}) {label}: {failure.where} fails ({failure.error})"
                )


_SA_CONVERTERS = {"vgg": _sa_vgg, "resnet": _sa_resnet, "mobilenet_v2": _sa_mobilenet, "stack": _sa_stack}


def convert(model: nn.Module, method: str, *, inplace: bool = False, **options) -> nn.Module:
    """A copy of ``model`` (or ``model`` itself with ``inplace``) with learnable resizers.

    Every model it returns still runs when the scales move (it is probed on
    fake inputs first); what would not is refused with a ``ValueError`` naming
    every module involved and why.

    Args:
        model: a network built from standard layers (torchvision's or timm's
            ``vgg16``, ``resnet50``, ``mobilenet_v2``, ``efficientnet_b0``,
            ``regnetx_002``, ``convnext_atto``, …, or your own).
        method: ``"dynopool"`` or ``"shape_adaptor"`` (see the module docs).
        options: for ``"dynopool"``: ``exclude`` (qualified names of layers, or
            of modules whose layers, to keep), ``min_size`` (of every
            DynOPool2d, default 2), ``backend``, ``input_size`` ((C, H, W) or
            (H, W) of an input the model accepts, for the probes; default timm's
            ``pretrained_cfg['input_size']``, else 224×224).
            For ``"shape_adaptor"`` (VGG-like, ResNet, inverted-residual and
            ConvNeXt-like families only):
            ``input_dim`` (required: the input resolution D_in, e.g. 32 or 224;
            one number, also for non-square inputs), ``output_dim`` (D_out of
            Eq. 4, default 8; standard mode), ``num`` (the number of adaptors;
            default Eq. 3 in standard mode, the official 2–4 in AutoSC; AutoTL
            has one per down-sampling layer), ``mode`` (``"standard"``,
            ``"autosc"`` or ``"autotl"``), ``r1``/``r2`` (the search space,
            default 0.5, 1), ``layout`` (``"keep"``, the default: the network's
            own layers; ``"official"``: the official code's layout for ``mode``
            and ``input_dim``, e.g. the CIFAR ResNet; see the module docs),
            ``backend``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"convert: `model` must be a torch.nn.Module, got {type(model).__name__}")
    if method == "shape_adaptor":
        # Bad options and unknown networks are refused before the (possibly large) copy.
        opts = _sa_options(options)
        family = _family(model)
        rng = torch.random.get_rng_state()
        converted = _SA_CONVERTERS[family](copy.deepcopy(model), opts)
        _check_sa(model, converted, opts)
        if inplace:  # checked on the copy: now the model itself, with the same random draws (new projections)
            torch.random.set_rng_state(rng)
            converted = _SA_CONVERTERS[family](model, opts)
        return converted
    if method == "dynopool":
        opts = _dp_options(model, options)
        if not inplace:
            model = copy.deepcopy(model)
        return _convert_dynopool(model, opts)
    raise ValueError(f"convert: `method` must be 'dynopool' or 'shape_adaptor', got {method!r}")
