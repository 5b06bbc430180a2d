"""``resizeops.convert``: put learnable resizers into an existing network (issue 5 item 2).

``method="dynopool"`` (DynOPool §4.4, SPEC §2.4): every pooling layer and every
strided convolution becomes learnable, except global pooling. A pooling layer
(``MaxPool2d``/``AvgPool2d`` with stride > 1) is replaced by a
:class:`~resizeops.nn.DynOPool2d` initialised at r = 1/stride; a strided
``Conv2d`` becomes the same convolution (same weights) with stride 1 followed by
a ``DynOPool2d``. Resizers whose outputs meet in an elementwise operation or a
concatenation (a residual block's main path and its strided shortcut) must keep
one size, so they share one ``DynOPool2d`` (one α): found by tracing the model
with ``torch.fx`` and following each ``add``/``mul``/``cat`` operand back to the
nearest resizing layer. A model ``torch.fx`` cannot trace is converted without
sharing, with a warning.

Layers it cannot convert are refused with a message naming them: strided
pooling with ``ceil_mode``, ``return_indices`` or dilation, other strided layers
(``Conv1d``/``Conv3d``, transposed convolutions, ``LPPool2d``, fractional pooling),
and tied layers of different strides.

``method="shape_adaptor"`` (Shape Adaptor §3.2, §4 "Implementation", §5; SPEC
§2.3): the placement of the official code (lorenmt/shape-adaptor
``model_list.py``), adapted to torchvision's models and to user models built
from the same parts. Three families:

* VGG: torchvision ``VGG`` (its ``features``) or an ``nn.Sequential`` of
  Conv2d / BatchNorm2d / ReLU / pooling. Candidate positions are the ends
  (the ReLU) of the convolution units, the last convolution's excepted; an
  adaptor there is the VGG cell :class:`~resizeops.nn.ShapeAdaptorMaxPool2d`
  (2×2 max-pool low branch, identity high branch), inserted after the ReLU as
  ``Sequential(relu, adaptor)`` so that every index and weight name stays.
* ResNet: torchvision ``ResNet`` of ``BasicBlock``/``Bottleneck`` (or a module
  with its attributes ``conv1 bn1 relu maxpool layer1..``). The stem is an
  adaptor with a 2×2 max-pool low branch (it takes ``maxpool``'s place); a
  block becomes the residual cell :class:`ShapeAdaptorResidualBlock`: main
  path at stride 1 as the high branch, the 1×1 stride-2 shortcut + BN as the
  low branch (the block's own ``downsample`` when it has one, else a new one),
  weights ×2, then the block's ReLU.
* MobileNetV2: torchvision ``MobileNetV2`` of ``InvertedResidual``. The stem
  gets a max-pool adaptor appended; a block becomes
  :class:`ShapeAdaptorInvertedResidual`: ``adaptor(block.conv(x))``, no residual
  (as the official cell).

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
refused with a ``ValueError`` naming what was found.

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
import operator
import warnings
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

import torch
from torch import nn

from .nn import DynOPool2d, ShapeAdaptor, ShapeAdaptorMaxPool2d, _Resizer
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
# Operations whose tensor operands must have one spatial size.
_MERGES = {operator.add, operator.iadd, operator.mul, operator.imul, operator.sub, torch.add, torch.mul, torch.sub,
           torch.cat, torch.stack, "add", "add_", "mul", "mul_", "sub", "sub_"}  # fmt: skip


def _pair(v) -> Tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _stride(m: nn.Module) -> Tuple[int, int]:
    s = m.stride if m.stride is not None else m.kernel_size  # pooling: stride None means kernel_size
    return _pair(s)


def _candidates(model: nn.Module, exclude: Set[str]) -> Dict[str, nn.Module]:
    """The layers to make learnable, by qualified name; refuses what it cannot convert."""
    found: Dict[str, nn.Module] = {}
    for name, m in model.named_modules():
        if not name or name in exclude:
            continue
        if isinstance(m, _POOLS):
            if max(_stride(m)) <= 1:
                continue
            problems = []
            if m.ceil_mode:
                problems.append("ceil_mode=True")
            if isinstance(m, nn.MaxPool2d) and (m.return_indices or _pair(m.dilation) != (1, 1)):
                problems.append("return_indices or dilation")
            if problems:
                raise ValueError(
                    f"convert(method='dynopool'): cannot convert `{name}` ({m}): {', '.join(problems)}; "
                    f"pass exclude=[{name!r}] to keep it"
                )
            found[name] = m
        elif isinstance(m, nn.Conv2d):
            if max(_pair(m.stride)) > 1:
                if m.padding == "valid" or isinstance(m.padding, str):
                    raise ValueError(f"convert(method='dynopool'): cannot convert `{name}` ({m}): string padding")
                found[name] = m
        elif isinstance(m, _UNSUPPORTED_STRIDED):
            stride = getattr(m, "stride", None)
            if stride is not None and max((stride,) if isinstance(stride, int) else tuple(stride)) > 1:
                raise ValueError(
                    f"convert(method='dynopool'): cannot convert `{name}` ({type(m).__name__} with stride {stride}): "
                    f"DynOPool replaces 2-D pooling and strided Conv2d only; pass exclude=[{name!r}] to keep it"
                )
    return found


def _tie_groups(model: nn.Module, names: Iterable[str]) -> Optional[List[Set[str]]]:
    """Groups of resizing layers whose outputs meet in an elementwise op or a concatenation."""
    import torch.fx

    names = set(names)

    class _Tracer(torch.fx.Tracer):
        def is_leaf_module(self, m, qualname):
            return qualname in names or super().is_leaf_module(m, qualname)

    try:
        graph = _Tracer().trace(model)
    except Exception as e:  # noqa: BLE001 - any tracing failure: convert without sharing
        warnings.warn(
            f"convert(method='dynopool'): torch.fx could not trace the model ({type(e).__name__}: {e}); "
            "resizers are not shared, so a residual block's paths may disagree in size",
            stacklevel=3,
        )
        return None
    parent = {n: n for n in names}

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    nearest: Dict[torch.fx.Node, frozenset] = {}
    for node in graph.nodes:  # topological order
        if node.op == "call_module" and node.target in names:
            nearest[node] = frozenset([node.target])
            continue
        ups = [a for a in node.all_input_nodes]
        nearest[node] = frozenset().union(*(nearest.get(a, frozenset()) for a in ups)) if ups else frozenset()
        if node.target in _MERGES and len(ups) >= 2:
            groups = [nearest.get(a, frozenset()) for a in ups]
            members = sorted(frozenset().union(*groups))
            for other in members[1:]:
                parent[find(other)] = find(members[0])
    out: Dict[str, Set[str]] = {}
    for n in names:
        out.setdefault(find(n), set()).add(n)
    return list(out.values())


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _convert_dynopool(model: nn.Module, exclude: Sequence[str] = (), min_size: int = 2, backend: Optional[str] = None) -> nn.Module:
    layers = _candidates(model, set(exclude))
    if not layers:
        raise ValueError(
            "convert(method='dynopool'): the model has no strided pooling layer or strided Conv2d to make learnable"
        )
    groups = _tie_groups(model, layers) or [{n} for n in layers]
    shared: Dict[str, DynOPool2d] = {}
    for group in groups:
        strides = {n: _stride(layers[n]) for n in group}
        if len(set(strides.values())) > 1:
            raise ValueError(
                f"convert(method='dynopool'): layers {sorted(group)} must keep one output size (their outputs are "
                f"combined) but have different strides {strides}"
            )
        sh, sw = next(iter(strides.values()))
        ref = layers[sorted(group)[0]]
        param = next(ref.parameters(), None)
        pool = DynOPool2d((1.0 / sh, 1.0 / sw), min_size=min_size, backend=backend,
                          device=param.device if param is not None else None)  # fmt: skip
        for n in group:
            shared[n] = pool
    for name, m in layers.items():
        if isinstance(m, nn.Conv2d):
            conv = copy.deepcopy(m)
            conv.stride = (1, 1)
            _set_submodule(model, name, nn.Sequential(conv, shared[name]))
        else:
            _set_submodule(model, name, shared[name])
    return model


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
    "the VGG family (torchvision VGG, or an nn.Sequential of Conv2d/BatchNorm2d/ReLU/pooling), the ResNet family "
    "(torchvision ResNet of BasicBlock/Bottleneck) and the MobileNetV2 family (torchvision MobileNetV2 of "
    "InvertedResidual)"
)
# Layers a VGG feature extractor may hold.
_VGG_LAYERS = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.MaxPool2d, nn.AvgPool2d,
               nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Identity, nn.Dropout)  # fmt: skip


class ShapeAdaptorCell(ShapeAdaptor):
    """A Shape Adaptor with an explicit down-sampling branch: ``forward(x) = ShapeAdaptor.forward(low(x), x)``.

    The general form of :class:`~resizeops.nn.ShapeAdaptorMaxPool2d` (whose ``low``
    is a floor-mode 2×2 max-pool, fused): AutoSC uses a ceil-mode max-pool here, as
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
    """'vgg' / 'resnet' / 'mobilenet_v2', or a ValueError naming what was found (read-only)."""
    done = [n for n, m in model.named_modules() if isinstance(m, _Resizer)]
    if done:
        raise _refuse(model, f"it already holds learnable resizers (`{done[0] or type(model).__name__}`)")
    tv = _torchvision()
    if tv is not None:
        if isinstance(model, tv["VGG"]):
            _vgg_units(model, model.features)
            return "vgg"
        # User models of the family: torchvision's attribute names, run in torchvision's order.
        looks_resnet = all(hasattr(model, a) for a in ("conv1", "bn1", "relu", "maxpool", "layer1"))
        if isinstance(model, tv["ResNet"]) or looks_resnet:
            _resnet_blocks(model, tv)
            return "resnet"
        feats = getattr(model, "features", None)
        looks_mobilenet = isinstance(feats, nn.Sequential) and any(isinstance(m, tv["InvertedResidual"]) for m in feats)
        if isinstance(model, tv["MobileNetV2"]) or looks_mobilenet:
            _mobilenet_blocks(model, tv)
            return "mobilenet_v2"
    if isinstance(model, nn.Sequential):
        _vgg_units(model, model)
        return "vgg"
    raise _refuse(model, "not a network of a family it knows" + ("" if tv else " (torchvision is not installed)"))


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
    elif family == "VGG":  # the official grid-searched AutoSC numbers (note < vs ≤ 64: as the official)
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
    """A max-pool adaptor (the fused cell; AutoSC: a ceil-mode max-pool cell), or one with ``low`` as its low branch."""
    kw = dict(r1=o["r1"], r2=o["r2"], alpha_init=alpha, residual=residual, backend=o["backend"], device=_device(ref))
    if residual:
        return ShapeAdaptor(**kw)
    if low is None and o["mode"] == "autosc":
        # The official AutoSC pools with ceil_mode so that small maps never pool to 0;
        # the fused cell is floor-mode.
        low = nn.MaxPool2d(2, 2, ceil_mode=True)
    if low is None or _plain_maxpool(low):
        return ShapeAdaptorMaxPool2d(**kw)
    return ShapeAdaptorCell(low, **kw)


def _plain_maxpool(m: nn.Module) -> bool:
    """A floor-mode 2×2 / stride-2 max-pool: what the fused ShapeAdaptorMaxPool2d computes."""
    return (isinstance(m, nn.MaxPool2d) and _pair(m.kernel_size) == (2, 2) and _stride(m) == (2, 2)
            and _pair(m.padding) == (0, 0) and _pair(m.dilation) == (1, 1) and not m.ceil_mode
            and not m.return_indices)  # fmt: skip


def _strided(m: nn.Module) -> bool:
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        return max(_stride(m)) > 1
    return isinstance(m, nn.Conv2d) and max(_pair(m.stride)) > 1


def _unstride(module: nn.Module) -> None:
    """Every Conv2d in ``module`` (itself included) at stride 1."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            m.stride = (1, 1)


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


def _sa_vgg(model: nn.Module, o: dict) -> nn.Module:
    tv = _torchvision()
    seq = model.features if tv is not None and isinstance(model, tv["VGG"]) else model
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


def _resnet_blocks(model: nn.Module, tv) -> List[Tuple[nn.Sequential, int, nn.Module]]:
    """(stage, index in it, block) for every residual block; refuses blocks it does not know."""
    out = []
    k = 1
    while hasattr(model, f"layer{k}"):
        stage = getattr(model, f"layer{k}")
        if not isinstance(stage, nn.Sequential):
            raise _refuse(model, f"`layer{k}` is a {type(stage).__name__}, not an nn.Sequential of blocks")
        for j, b in enumerate(stage):
            if not (isinstance(b, (tv["BasicBlock"], tv["Bottleneck"]))
                    and type(b).forward in (tv["BasicBlock"].forward, tv["Bottleneck"].forward)):  # fmt: skip
                raise _refuse(model, f"`layer{k}.{j}` is a {type(b).__name__}, not a torchvision BasicBlock/Bottleneck")
            ds = b.downsample
            if ds is not None and not (isinstance(ds, nn.Sequential) and len(ds) >= 1 and isinstance(ds[0], nn.Conv2d)):
                raise _refuse(model, f"`layer{k}.{j}.downsample` is not a Sequential(Conv2d, norm) shortcut")
            out.append((stage, j, b))
        k += 1
    if not isinstance(getattr(model, "conv1"), nn.Conv2d):
        raise _refuse(model, f"its stem `conv1` is a {type(model.conv1).__name__}, not a Conv2d")
    if len(out) < 2:
        raise _refuse(model, f"it has {len(out)} residual block(s); a ResNet needs at least two")
    return out


def _projection(block: nn.Module, stride: int) -> nn.Sequential:
    """A new 1×1 conv (stride 2) + BN shortcut: the low branch of a block that had no shortcut."""
    cin = block.conv1.in_channels
    cout = (block.bn3 if hasattr(block, "bn3") else block.bn2).num_features
    like = dict(device=block.conv1.weight.device, dtype=block.conv1.weight.dtype)
    conv = nn.Conv2d(cin, cout, 1, stride=stride, bias=False, **like)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")  # as torchvision and the official
    # In the block's train/eval mode: a new BN of a model in eval mode must not update its statistics.
    return nn.Sequential(conv, nn.BatchNorm2d(cout, **like)).train(block.training)


def _residual_cell(o: dict, block: nn.Module, alpha: float) -> ShapeAdaptorResidualBlock:
    """The block as a residual adaptor cell: main path at stride 1, shortcut at stride 2 as the low branch."""
    for name in ("conv1", "conv2", "conv3"):
        if hasattr(block, name):
            getattr(block, name).stride = (1, 1)
    if block.downsample is not None:
        block.downsample[0].stride = (2, 2)  # the block's own shortcut weights, now the ×½ branch
        low = None
    else:
        low = _projection(block, 2)
    return ShapeAdaptorResidualBlock(block, _adaptor(o, alpha, block, residual=True), low)


def _official_resnet_layout(model: nn.Module, o: dict, blocks) -> None:
    """The official code's ResNet for ``mode`` and ``input_dim`` (``layout="official"``).

    Its stem: below 64 pixels (standard, AutoTL: up to 64) a 3×3 stride-1
    convolution and, in AutoSC, no max-pool (the CIFAR ResNet); above, standard and
    AutoTL use a 7×7 stride-1 convolution and AutoSC keeps the 7×7 stride-2 one and
    the max-pool. In standard mode every stage's first block has a 1×1 projection
    (torchvision's ``layer1.0`` of BasicBlock ResNets has none).
    """
    d, mode = o["input_dim"], o["mode"]
    if mode == "autosc":
        if d < 64:
            model.conv1 = _new_conv(model.conv1, 3, (1, 1))
            model.maxpool = nn.Identity()
    elif d <= 64:
        # At its stride for now: the mode takes it to 1 (AutoTL: with an adaptor in its place).
        model.conv1 = _new_conv(model.conv1, 3, model.conv1.stride)
    if mode == "standard":
        for stage, j, b in blocks:
            if j == 0 and b.downsample is None:
                b.downsample = _projection(b, 1)


def _sa_resnet(model: nn.Module, o: dict) -> nn.Module:
    blocks = _resnet_blocks(model, _torchvision())
    if o["layout"] == "official":
        _official_resnet_layout(model, o, blocks)
    mode = o["mode"]
    cells: Dict[int, float] = {}  # id(block) → α of its residual cell
    if mode == "standard":
        # Candidates: the stem, then every block but the last (the official counts sum(layers) + 1 − 1).
        candidates = ["stem"] + [b for _, _, b in blocks[:-1]]
        num = _count(o, "ResNet", candidates, "the stem and every block but the last")
        alpha = _alpha(o, num)
        chosen = _spread(candidates, num)
        model.conv1.stride = (1, 1)
        # The stem's adaptor (always the first candidate) takes the max-pool's place.
        model.maxpool = _adaptor(o, alpha, model.conv1) if "stem" in chosen else nn.Identity()
        for _, _, b in blocks:
            if not any(b is c for c in chosen):
                _unstride(b)  # a stage's first block keeps its shortcut projection, at stride 1
                b.stride = 1
            else:
                cells[id(b)] = alpha
    elif mode == "autosc":
        # Not at a down-sampling layer: no stage's first block, and not the last block.
        firsts = {id(stage[0]) for stage, _, _ in blocks}
        candidates = [b for _, _, b in blocks[:-1] if id(b) not in firsts]
        num = _count(o, "ResNet", candidates, "every block but a stage's first and the last")
        # The official divides by sum(layers) − 3 − 1: one more than the candidates
        # (it discounts 3 human resizing blocks but skips all 4 stage-first ones).
        for b in _spread(candidates, num, span=len(candidates) + 1):
            cells[id(b)] = ALPHA_AUTOSC
    else:
        stem = []
        if _strided(model.conv1):
            model.conv1.stride = (1, 1)
            stem.append(_adaptor(o, ALPHA_AUTOTL, model.conv1))
        if _strided(model.maxpool):
            # As the official: a 2×2 max-pool low branch (not the original 3×3 pool).
            stem.append(_adaptor(o, ALPHA_AUTOTL, model.conv1))
        strided = [b for _, _, b in blocks if any(_strided(m) for m in b.modules())]
        _fixed_count(o, "ResNet", len(stem) + len(strided))
        if stem:
            model.maxpool = stem[0] if len(stem) == 1 else nn.Sequential(*stem)
        for b in strided:
            cells[id(b)] = ALPHA_AUTOTL
    events: list = [_factor(model.conv1, model.maxpool)] if mode == "autosc" else []
    for stage, j, b in blocks:
        if id(b) in cells:
            stage[j] = _residual_cell(o, b, cells[id(b)])
            events.append(stage[j].adaptor)
        elif mode == "autosc":  # the main path's stride (its shortcut's is the same)
            events.append(_factor(*(getattr(b, c) for c in ("conv1", "conv2", "conv3") if hasattr(b, c))))
    if mode == "autosc":
        _use_global_sizes(o, events)
    return model


# -- MobileNetV2 --------------------------------------------------------------


def _mobilenet_blocks(model: nn.Module, tv) -> nn.Sequential:
    """``features``: a conv stem, InvertedResidual blocks, a last conv; refuses other layouts."""
    f = model.features
    if not isinstance(f, nn.Sequential) or len(f) < 3:
        raise _refuse(model, "its `features` is not an nn.Sequential of stem, blocks and last conv")
    for i in (0, len(f) - 1):
        if not (isinstance(f[i], nn.Sequential) and len(f[i]) and isinstance(f[i][0], nn.Conv2d)):
            raise _refuse(model, f"`features.{i}` ({type(f[i]).__name__}) is not a conv-norm-activation layer")
    for i in range(1, len(f) - 1):
        b = f[i]
        if not (isinstance(b, tv["InvertedResidual"]) and type(b).forward is tv["InvertedResidual"].forward):
            raise _refuse(model, f"`features.{i}` is a {type(b).__name__}, not a torchvision InvertedResidual")
    return f


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
                f[0].append(adaptor)  # the stem's adaptor follows its activation
            else:
                f[i] = ShapeAdaptorInvertedResidual(f[i], adaptor)
            events.append(adaptor)
        elif mode == "autosc":
            events.append(_factor(f[i]))
    if mode == "autosc":
        _use_global_sizes(o, events)
    return model


_SA_CONVERTERS = {"vgg": _sa_vgg, "resnet": _sa_resnet, "mobilenet_v2": _sa_mobilenet}


def convert(model: nn.Module, method: str, *, inplace: bool = False, **options) -> nn.Module:
    """A copy of ``model`` (or ``model`` itself with ``inplace``) with learnable resizers.

    Args:
        model: a network built from standard layers (torchvision's ``vgg16``,
            ``resnet50``, ``mobilenet_v2``, ``efficientnet_b0``, or your own).
        method: ``"dynopool"`` or ``"shape_adaptor"`` (see the module docs).
        options: for ``"dynopool"``: ``exclude`` (qualified names of layers to
            keep), ``min_size`` (of every DynOPool2d, default 2), ``backend``.
            For ``"shape_adaptor"`` (VGG, ResNet and MobileNetV2 families only):
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
        if not inplace:
            model = copy.deepcopy(model)
        return _SA_CONVERTERS[family](model, opts)
    if method == "dynopool":
        if not inplace:
            model = copy.deepcopy(model)
        return _convert_dynopool(model, **options)
    raise ValueError(f"convert: `method` must be 'dynopool' or 'shape_adaptor', got {method!r}")
