"""From a model to a graph: the ``torch.fx`` trace that the analysis runs.

:func:`trace` is the entry point. Its tracer keeps resizeops' learnable resizers
(``DynOPool2d``, ``ShapeAdaptor*``), timm's registered no-trace modules and
functions (when timm is imported) and the user's ``leaf_modules`` as single
nodes, and traces an ``ElasticBlock`` *through*, recording its down-sampling and
its merge as one node each (:func:`_elastic_down`, :func:`_elastic_merge`: the
block's own forward branches on shapes, which fx cannot trace; their names, with
the underscore, are the nodes' names in the report). A module shared
by several call sites is named after the call site. Every tracing failure
becomes one :class:`RFTraceError` naming where it happened and the usual fixes.
"""

from __future__ import annotations

import importlib
import sys
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
import torch.fx
from torch import nn

from resizeops.core import ops as _ops
from resizeops.models.nn import ElasticBlock, _half_resolution, _Resizer


class RFTraceError(ValueError):
    """The model cannot be analysed: torch.fx cannot trace it, or an op's effect on the receptive field is unknown."""


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


def trace(model: nn.Module, leaf_modules, concrete_args) -> torch.fx.GraphModule:
    """``model``'s graph with one image input; RFTraceError when fx cannot trace it or it takes more inputs."""
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
