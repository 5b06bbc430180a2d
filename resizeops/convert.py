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
"""

from __future__ import annotations

import copy
import operator
import warnings
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

import torch
from torch import nn

from .nn import DynOPool2d

__all__ = ["convert"]

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


def convert(model: nn.Module, method: str, *, inplace: bool = False, **options) -> nn.Module:
    """A copy of ``model`` (or ``model`` itself with ``inplace``) with learnable resizers.

    Args:
        model: a network built from standard layers (torchvision's ``vgg16``,
            ``resnet50``, ``mobilenet_v2``, ``efficientnet_b0``, or your own).
        method: ``"dynopool"`` (see the module docs).
        options: for ``"dynopool"``: ``exclude`` (qualified names of layers to
            keep), ``min_size`` (of every DynOPool2d, default 2), ``backend``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"convert: `model` must be a torch.nn.Module, got {type(model).__name__}")
    if not inplace:
        model = copy.deepcopy(model)
    if method == "dynopool":
        return _convert_dynopool(model, **options)
    raise ValueError(f"convert: `method` must be 'dynopool' or 'shape_adaptor', got {method!r}")
