"""What ``resizeops.convert`` learns about a network before changing it (private).

* :func:`trace`: a ``torch.fx`` graph of the model, with chosen modules kept whole
  (leaves). A submodule fx cannot trace (data-dependent control flow, say) is
  kept whole too, and tracing starts again; only a root ``forward`` fx cannot
  trace gives no graph.
* :func:`run_graph` / :func:`run_module`: run a graph (some modules swapped for
  others) on meta tensors, or a module on fake ones (``FakeTensorMode``):
  shapes only, no compute, whatever the input size; say where it fails and
  why.
* :func:`lineage_ties`: which resizing layers must share one scale so that the
  tensors an elementwise operation or a concatenation combines keep one size.
* :func:`upstream`: the resizing layers nearest above a node, and the fixed
  resizing operations met on the way (a named reason for a refusal).
* :func:`units`: the network as a chain of units (layers and blocks, each
  classified by its own forward), what the Shape Adaptor families are
  recognised from.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import operator
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

import torch
import torch.fx
from torch import nn
from torch.nn import functional as F

# Operations whose tensor operands must have one spatial size.
MERGES = {operator.add, operator.iadd, operator.mul, operator.imul, operator.sub, operator.isub, operator.truediv,
          torch.add, torch.mul, torch.sub, torch.cat, torch.concat, torch.stack, torch.where,
          "add", "add_", "mul", "mul_", "sub", "sub_", "div", "div_"}  # fmt: skip
_CONCATS = {torch.cat, torch.concat, torch.stack}
# Calls whose output size comes from a size argument (position, keyword), not from their input.
_SIZE_ARGUMENT = {F.interpolate: (1, "size"), F.upsample: (1, "size"), F.adaptive_avg_pool2d: (1, "output_size"),
                  F.adaptive_max_pool2d: (1, "output_size")}  # fmt: skip
# Fixed resizing operations (named in refusals when they sit between a merge and the resizers above it).
_RESIZING_MODULES = (nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d, nn.PixelShuffle, nn.PixelUnshuffle,
                     nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.MaxPool2d, nn.AvgPool2d, nn.LPPool2d,
                     nn.FractionalMaxPool2d, nn.Conv2d, nn.ConvTranspose2d)  # fmt: skip
_RESIZING_FUNCTIONS = {F.interpolate, F.upsample, F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d,
                       F.adaptive_max_pool2d, F.pixel_shuffle, F.pixel_unshuffle, F.conv2d}  # fmt: skip


def describe(m: nn.Module) -> str:
    """``Type(extra_repr)`` on one line."""
    extra = m.extra_repr().replace("\n", " ")
    return f"{type(m).__name__}({extra})"


# =============================================================================
# Tracing
# =============================================================================


class _Tracer(torch.fx.Tracer):
    """A tracer that keeps ``leaves`` whole and notes the innermost module a tracing failure came from.

    Buffers are proxied: an in-place update in a forward (a batch norm counting
    batches) is recorded, not run on the model's buffer.
    """

    proxy_buffer_attributes = True

    def __init__(self, leaves: Set[str]) -> None:
        super().__init__()
        self.leaves = leaves
        self.failed_in: Optional[str] = None

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return qualname in self.leaves or super().is_leaf_module(m, qualname)

    def call_module(self, m, forward, args, kwargs):
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:
                try:
                    self.failed_in = self.path_of_module(m)
                except NameError:  # a module outside the hierarchy: nothing to keep whole
                    pass
            raise


@dataclass
class Traced:
    """A traced model: ``gm`` (None when the root's forward cannot be traced, with ``error``) and the
    submodules kept whole because fx could not trace them (``opaque``: name → the tracing error)."""

    gm: Optional[torch.fx.GraphModule]
    opaque: Dict[str, str] = field(default_factory=dict)
    error: Optional[str] = None


def trace(model: nn.Module, leaves: Iterable[str] = ()) -> Traced:
    leaves = set(leaves)
    opaque: Dict[str, str] = {}
    limit = sum(1 for _ in model.modules())
    for _ in range(limit + 1):
        tracer = _Tracer(leaves | set(opaque))
        try:
            graph = tracer.trace(model)
        except Exception as e:  # noqa: BLE001 - any tracing failure is handled below
            why = f"{type(e).__name__}: {_first_line(e)}"
            if not tracer.failed_in or tracer.failed_in in opaque:
                return Traced(None, opaque, why)
            opaque[tracer.failed_in] = why
            continue
        return Traced(torch.fx.GraphModule(model, graph, class_name=type(model).__name__), opaque)
    return Traced(None, opaque, "too many submodules fx cannot trace")


def shallow_trace(module: nn.Module) -> Optional[torch.fx.Graph]:
    """The graph of ``module``'s own forward, every child a leaf; None if fx cannot trace it."""

    class _Shallow(torch.fx.Tracer):
        proxy_buffer_attributes = True  # see _Tracer

        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            return m is not module

    try:
        return _Shallow().trace(module)
    except Exception:  # noqa: BLE001 - not traceable: the caller treats the module as opaque
        return None


def _first_line(e: BaseException, limit: int = 240) -> str:
    text = str(e).strip().splitlines()
    line = text[0] if text else type(e).__name__
    return line if len(line) <= limit else line[: limit - 1] + "…"


# =============================================================================
# Probing with fake tensors
# =============================================================================


@dataclass
class ProbeInput:
    shape: Tuple[int, int, int, int]
    dtype: torch.dtype
    device: torch.device

    def make(self, device=None) -> torch.Tensor:
        return torch.empty(self.shape, dtype=self.dtype, device=device or self.device)

    def __str__(self) -> str:
        return "×".join(str(s) for s in self.shape)


def probe_input(model: nn.Module, size: Sequence[int], channels: Optional[int] = None) -> ProbeInput:
    """A batch of 2 at ``size`` = (H, W) with ``channels``, else those of the model's first Conv2d, else 3."""
    if channels is None:
        conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        channels = conv.in_channels if conv is not None else 3
    ref = next((t for t in list(model.parameters()) + list(model.buffers()) if t.is_floating_point()), None)
    dtype = ref.dtype if ref is not None else torch.get_default_dtype()
    device = ref.device if ref is not None else torch.device("cpu")
    return ProbeInput((2, int(channels), int(size[0]), int(size[1])), dtype, device)


@dataclass
class Failure:
    """Where a probe failed: the fx node (graph runs) or the innermost module (module runs), and why."""

    where: str
    error: str
    node: Optional[torch.fx.Node] = None


class _NodeFailed(Exception):
    def __init__(self, node: torch.fx.Node, error: BaseException) -> None:
        super().__init__(str(error))
        self.node, self.error = node, error


class _Probe(torch.fx.Interpreter):
    """Runs a graph with some modules swapped (``swap``: target → module), recording output shapes."""

    def __init__(self, gm: torch.fx.GraphModule, swap: Dict[str, nn.Module]) -> None:
        super().__init__(gm, garbage_collect_values=False)
        self.swap = swap
        self.shapes: Dict[torch.fx.Node, Tuple[int, ...]] = {}

    def call_module(self, target, args, kwargs):
        m = self.swap.get(target)
        if m is not None:
            return m(*args, **kwargs)
        if isinstance(self.fetch_attr(target), nn.modules.batchnorm._BatchNorm):
            return args[0]  # same shape; on meta tensors batch_norm is a slow Python decomposition
        return super().call_module(target, args, kwargs)

    def call_function(self, target, args, kwargs):
        if target is F.batch_norm:
            return args[0]
        return super().call_function(target, args, kwargs)

    def run_node(self, n: torch.fx.Node):
        try:
            out = super().run_node(n)
        except Exception as e:  # noqa: BLE001 - reported with the node
            raise _NodeFailed(n, e) from e
        if isinstance(out, torch.Tensor):
            self.shapes[n] = tuple(out.shape)
        return out


@contextlib.contextmanager
def fake_mode():
    """A FakeTensorMode for probes; failed shape checks are not logged (they are what the probes look for)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    log = logging.getLogger("torch._subclasses.fake_tensor")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield FakeTensorMode(allow_non_fake_inputs=True)
    finally:
        log.setLevel(level)


def probe_copy(model: nn.Module, own: Iterable[torch.Tensor] = ()) -> nn.Module:
    """A copy of ``model`` to probe with fake tensors: it shares the weights and buffers but for ``own``
    (the parameters the probes set), and its batch norms are identities (same shapes; on fake tensors a
    training-mode batch norm is a slow decomposition, and it would count batches)."""
    own = {id(t) for t in own}
    memo = {id(t): t for t in list(model.parameters()) + list(model.buffers()) if id(t) not in own}
    copy_ = copy.deepcopy(model, memo)
    for name, m in list(copy_.named_modules()):
        for key, child in list(m.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(m, key, nn.Identity())
    return copy_


class _Runner(nn.Module):
    """Holds ``gm`` so that ``torch.func.functional_call`` can swap its weights for meta tensors."""

    def __init__(self, gm: torch.fx.GraphModule, swap: Dict[str, nn.Module]) -> None:
        super().__init__()
        self.gm = gm
        self.swap = swap  # a plain dict: the stand-ins are not submodules (their weights stay out of the swap)
        self.probe: Optional[_Probe] = None

    def forward(self, x: torch.Tensor):
        self.probe = _Probe(self.gm, self.swap)
        return self.probe.run(x)


def run_graph(gm: torch.fx.GraphModule, swap: Dict[str, nn.Module], spec: ProbeInput
              ) -> Tuple[Optional[Failure], Dict[torch.fx.Node, Tuple[int, ...]]]:  # fmt: skip
    """Run ``gm`` on a meta input (every weight and buffer a meta tensor: shapes only, nothing of the model
    is touched), ``swap``'s modules in place of their targets; (failure or None, output shape of each node).

    The stand-ins in ``swap`` must work on meta tensors by themselves (see :class:`MetaPool`)."""
    runner = _Runner(gm, swap)
    state = {k: torch.empty_like(t, device="meta")
             for k, t in list(runner.named_parameters()) + list(runner.named_buffers())}  # fmt: skip
    try:
        torch.func.functional_call(runner, state, (spec.make("meta"),))
    except _NodeFailed as f:
        failure = Failure(where_node(gm, f.node), f"{type(f.error).__name__}: {_first_line(f.error)}", f.node)
        return failure, runner.probe.shapes
    return None, runner.probe.shapes


class MetaPool(nn.Module):
    """A shape-only stand-in of a DynOPool2d at ``alpha``; with ``conv``, of a strided conv at stride 1
    followed by one (the conv runs on meta weights: its own forward, so 'same'-padding subclasses too)."""

    def __init__(self, alpha: Tuple[float, float], min_size: int, conv: Optional[nn.Conv2d] = None) -> None:
        super().__init__()
        self.alpha, self.min_size = alpha, min_size
        self.conv = None
        if conv is not None:
            shim = copy.copy(conv)  # the same class and settings; weights of its own, on meta
            shim._parameters = {k: None if v is None else torch.empty_like(v, device="meta")
                                for k, v in conv._parameters.items()}  # fmt: skip
            shim.stride = (1, 1)
            self.__dict__["conv"] = shim  # not a submodule: outside functional_call's swap

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from resizeops.core.ops import dynopool2d_output_size

        if self.conv is not None:
            x = self.conv(x)
        size = tuple(dynopool2d_output_size(tuple(x.shape[-2:]), self.alpha, self.min_size))
        return x.new_empty(tuple(x.shape[:-2]) + size)


def run_module(model: nn.Module, spec: ProbeInput, mode) -> Optional[Failure]:
    """Run ``model`` on a fake input; the innermost module a failure came from, or None."""
    names = {m: n for n, m in model.named_modules(remove_duplicate=False)}
    stack: List[nn.Module] = []

    def enter(m, args):
        stack.append(m)

    def leave(m, args, out):
        stack.pop()

    handles = []
    for m in model.modules():
        handles.append(m.register_forward_pre_hook(enter))
        handles.append(m.register_forward_hook(leave))
    try:
        with mode:
            model(spec.make())
    except Exception as e:  # noqa: BLE001 - reported with the module
        inner = stack[-1] if stack else model
        name = names.get(inner, "")
        where = f"`{name}` ({type(inner).__name__})" if name else f"the forward of {type(model).__name__}"
        return Failure(where, f"{type(e).__name__}: {_first_line(e)}")
    finally:
        for h in handles:
            h.remove()
    return None


def where_node(gm: torch.fx.GraphModule, node: torch.fx.Node) -> str:
    """A node as a user reads it: the module it calls, or the operation and the module whose forward holds it."""
    if node.op == "call_module":
        return f"`{node.target}` ({describe(gm.get_submodule(node.target))})"
    op = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        path, cls = list(stack.values())[-1]
        cls = cls if isinstance(cls, str) else getattr(cls, "__name__", str(cls))
        return f"`{op}` in `{path}` ({cls.rsplit('.', 1)[-1]})"
    return f"`{op}` in the forward of {type(gm).__name__}"


# =============================================================================
# Which resizers must share a scale
# =============================================================================


def is_merge(node: torch.fx.Node) -> bool:
    return node.op in ("call_function", "call_method") and node.target in MERGES


def _size_source(node: torch.fx.Node) -> Optional[torch.fx.Node]:
    """For ``interpolate(x, size=t.shape[-2:])`` and the like: the node the size comes from."""
    spec = _SIZE_ARGUMENT.get(node.target) if node.op == "call_function" else None
    if spec is None:
        return None
    pos, key = spec
    arg = node.kwargs.get(key, node.args[pos] if len(node.args) > pos else None)
    found: List[torch.fx.Node] = []
    torch.fx.node.map_arg(arg, lambda n: found.append(n) or n)
    return found[0] if found else None


class _UnionFind:
    def __init__(self, items: Iterable[str]) -> None:
        self.parent = {n: n for n in items}

    def find(self, a: str) -> str:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def groups(self) -> List[List[str]]:
        out: Dict[str, List[str]] = {}
        for n in self.parent:
            out.setdefault(self.find(n), []).append(n)
        return sorted(sorted(g) for g in out.values())


def lineage_ties(gm: torch.fx.GraphModule, resizers: Iterable[str], shapes: Dict[torch.fx.Node, Tuple[int, ...]]
                 ) -> List[List[str]]:  # fmt: skip
    """Groups of resizers (fx targets) that must share one scale.

    Each tensor's *lineage* is the sequence of resizers its size went through
    from the input. The operands an elementwise operation or a concatenation
    combines must keep one size for every scale, so operands of equal lineage
    length have their resizers tied position by position (a residual block's
    strided main path and its shortcut; a strided branch fused into another that
    went through the same number of resizers). Operands that are broadcast
    (smaller than the result, e.g. a squeeze-and-excitation gate) carry no size
    and tie nothing; lineages of different lengths tie nothing either (the
    probes then find out whether the sizes still agree).
    """
    resizers = set(resizers)
    ties = _UnionFind(resizers)
    lineage: Dict[torch.fx.Node, Optional[Tuple[str, ...]]] = {}
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            lineage[node] = ()
            continue
        ins = [a for a in node.all_input_nodes if lineage.get(a) is not None]
        if node.op == "call_module" and node.target in resizers:
            lineage[node] = (lineage[ins[0]] if ins else ()) + (node.target,)
            continue
        if not ins:
            lineage[node] = None
            continue
        source = _size_source(node)
        if source is not None and lineage.get(source) is not None:
            lineage[node] = lineage[source]
            continue
        if is_merge(node) and len(ins) >= 2:
            out = shapes.get(node)
            if node.target in _CONCATS or out is None:
                sized = ins
            else:
                sized = [a for a in ins if shapes.get(a) == out] or ins
            first = lineage[sized[0]]
            for other in sized[1:]:
                theirs = lineage[other]
                if len(theirs) == len(first):
                    for a, b in zip(first, theirs):
                        ties.union(a, b)
            lineage[node] = first
            continue
        lineage[node] = lineage[ins[0]]
    return ties.groups()


def upstream(node: torch.fx.Node, resizers: Set[str], shapes: Dict[torch.fx.Node, Tuple[int, ...]], gm,
             skip: Iterable[str] = ()) -> Tuple[Set[str], List[torch.fx.Node]]:  # fmt: skip
    """The resizers that make ``node``'s inputs disagree, and the fixed resizing operations on the way.

    For each input: the resizers nearest above it, and all resizers above it.
    Those above every input scale them all alike: the answer is the nearest
    ones but for those, or, when nothing else is left, the nearest ones. The
    fixed resizing operations (those that scale a side by 2/3 or less, or 3/2
    or more, but for the modules in ``skip``) are the ones between ``node`` and
    the resizers nearest above it.
    """
    skip = set(skip)
    fixed: Set[torch.fx.Node] = set()
    nearest_all: Set[str] = set()
    common: Optional[Set[str]] = None
    for operand in node.all_input_nodes:
        nearest: Set[str] = set()
        above: Set[str] = set()
        seen: Set[torch.fx.Node] = set()
        todo = [(operand, True)]  # (node, still below the nearest resizers)
        while todo:
            a, near = todo.pop()
            if (a, near) in seen:
                continue
            seen.add((a, near))
            if a.op == "call_module" and a.target in resizers:
                above.add(a.target)
                if near:
                    nearest.add(a.target)
                near = False
            elif near and not (a.op == "call_module" and a.target in skip) and _fixed_resize(a, shapes, gm):
                fixed.add(a)
            todo.extend((b, near) for b in a.all_input_nodes)
        nearest_all |= nearest
        common = above if common is None else common & above
    cause = nearest_all - (common or set())
    return cause or nearest_all, sorted(fixed, key=lambda n: n.name)


def _fixed_resize(node: torch.fx.Node, shapes, gm) -> bool:
    """A module or function of a resizing kind that scales a spatial side by 2/3 or less, or 3/2 or more."""
    if node.op == "call_module":
        kind = isinstance(gm.get_submodule(node.target), _RESIZING_MODULES)
    else:
        kind = node.op == "call_function" and node.target in _RESIZING_FUNCTIONS
    if not kind or not node.all_input_nodes:
        return False
    a, b = shapes.get(node.all_input_nodes[0]), shapes.get(node)
    if a is None or b is None or len(a) != 4 or len(b) != 4:
        return False
    return any(3 * o <= 2 * i or 2 * o >= 3 * i for i, o in zip(a[-2:], b[-2:]))


# =============================================================================
# A network as a chain of units (the Shape Adaptor families)
# =============================================================================


def spatial_conv(m: nn.Module) -> bool:
    """A Conv2d that looks at neighbours or strides (not a 1×1 stride-1 projection)."""
    return isinstance(m, nn.Conv2d) and (max(m.kernel_size) > 1 or max(m.stride) > 1)


def depthwise_conv(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels == m.out_channels


@dataclass
class Unit:
    """One step of a network's chain: a module (by qualified name, with its parent and key in the parent).

    ``kind``: ``"layer"`` (a torch.nn layer), ``"plain"`` (a chain of layers: a conv unit, a stem, an
    inverted-residual block without a skip), ``"residual"`` (its output adds its input, or a projection
    of it, to a main path: ``shortcut`` is ``"identity"`` or ``"projection"``), ``"block"`` (other
    branching with spatial convolutions) or ``"opaque"`` (fx cannot trace it).
    """

    name: str
    module: nn.Module
    parent: nn.Module
    key: str
    kind: str
    shortcut: Optional[str] = None


def _is_torch_layer(m: nn.Module) -> bool:
    return torch.fx.Tracer().is_leaf_module(m, "")


def _data_inputs(node: torch.fx.Node) -> List[torch.fx.Node]:
    return [a for a in node.all_input_nodes if a.op != "get_attr"]


def _chain(graph: torch.fx.Graph) -> Optional[List[torch.fx.Node]]:
    """The compute nodes of a graph that is a single path from its first input to its output, else None."""
    nodes = [n for n in graph.nodes if n.op not in ("placeholder", "output", "get_attr")]
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    output = next(n for n in graph.nodes if n.op == "output")
    if not placeholders or len(_data_inputs(output)) != 1:
        return None
    path = []
    cur = _data_inputs(output)[0]
    while cur.op != "placeholder":
        ins = _data_inputs(cur)
        if len(ins) != 1 or len(cur.users) != 1:
            return None
        path.append(cur)
        cur = ins[0]
    if cur is not placeholders[0] or len(path) != len(nodes) or len(cur.users) != 1:
        return None
    return path[::-1]


def ancestors(node: torch.fx.Node, inputs=lambda n: n.all_input_nodes) -> Iterator[torch.fx.Node]:
    """``node`` and every node it is computed from (through ``inputs``), each once."""
    todo, seen = [node], set()
    while todo:
        a = todo.pop()
        if a not in seen:
            seen.add(a)
            yield a
            todo.extend(inputs(a))


def residual(graph: torch.fx.Graph, owner: nn.Module):
    """(add node, main operand, shortcut operand, shortcut kind) when the graph (of ``owner``'s forward)
    outputs, up to unary operations after it, an ``add`` of two paths from the input; else None."""
    output = next(n for n in graph.nodes if n.op == "output")
    ins = _data_inputs(output)
    if len(ins) != 1:
        return None
    cur = ins[0]
    while len(_data_inputs(cur)) == 1 and cur.op != "placeholder":
        cur = _data_inputs(cur)[0]
    adds = (operator.add, operator.iadd, torch.add, "add", "add_")
    if not (cur.op in ("call_function", "call_method") and cur.target in adds):
        return None
    operands = _data_inputs(cur)
    if len(operands) != 2:
        return None
    def convs(n: torch.fx.Node) -> int:
        return sum(sum(isinstance(m, nn.Conv2d) for m in owner.get_submodule(a.target).modules())
                   for a in ancestors(n, _data_inputs) if a.op == "call_module")  # fmt: skip

    a, b = operands
    main, short = (a, b) if convs(a) >= convs(b) else (b, a)
    return cur, main, short, ("identity" if convs(short) == 0 else "projection")


def shallow(module: nn.Module) -> Optional[torch.fx.GraphModule]:
    """:func:`shallow_trace` as a GraphModule over ``module`` (its children as leaves)."""
    graph = shallow_trace(module)
    if graph is None:
        return None
    return torch.fx.GraphModule(module, graph, class_name=type(module).__name__)


class _Kinds:
    """(kind, shortcut) of modules, as :class:`Unit` describes (a chain holding blocks is a ``"container"``),
    with each module's shallow graph traced once."""

    def __init__(self) -> None:
        self.kinds: Dict[int, Tuple[str, Optional[str]]] = {}
        self.graphs: Dict[int, Optional[torch.fx.GraphModule]] = {}

    def graph(self, m: nn.Module) -> Optional[torch.fx.GraphModule]:
        if id(m) not in self.graphs:
            self.graphs[id(m)] = shallow(m)
        return self.graphs[id(m)]

    def __call__(self, m: nn.Module) -> Tuple[str, Optional[str]]:
        if id(m) not in self.kinds:
            self.kinds[id(m)] = self._classify(m)
        return self.kinds[id(m)]

    def _classify(self, m: nn.Module) -> Tuple[str, Optional[str]]:
        if _is_torch_layer(m):
            return "layer", None
        gm = self.graph(m)
        if gm is None:
            return "opaque", None
        path = _chain(gm.graph)
        if path is not None:
            # A container holds residual blocks or containers, or several other blocks (a stage of
            # Inception-like blocks); one branching child among layers (a mixed-kernel depthwise conv in
            # an inverted residual) keeps it a plain unit.
            children = [gm.get_submodule(n.target) for n in path if n.op == "call_module"]
            kinds = [self(c)[0] for c in children]
            branchy = sum(k in ("block", "opaque") and _any_spatial(c) for k, c in zip(kinds, children))
            if any(k in ("residual", "container") for k in kinds) or branchy >= 2:
                return "container", None
            return "plain", None
        res = residual(gm.graph, m)
        if res is not None:
            return "residual", res[3]
        # Other branching: a block if it looks at neighbours, else a gate (squeeze-and-excitation) that keeps the size.
        return ("block", None) if _any_spatial(m) else ("layer", None)


def _any_spatial(m: nn.Module) -> bool:
    return any(map(spatial_conv, m.modules()))


def units(model: nn.Module) -> Optional[List[Unit]]:
    """The model as a chain of units in call order (containers opened), or None if it is not a chain.

    A container is a module whose forward is a chain of calls of its children,
    one of which holds blocks (a stage, a ``Sequential`` of stages); it is
    opened, its children become units. An ``nn.Sequential`` of one module that is
    not a torch layer stands for that module (a stage of a single block).
    """
    kinds = _Kinds()
    if kinds(model)[0] not in ("container", "plain"):
        return None
    names = {id(m): n for n, m in model.named_modules()}
    out: List[Unit] = []

    def walk(m: nn.Module) -> bool:
        gm = kinds.graph(m)
        path = _chain(gm.graph) if gm is not None else None
        if path is None:
            return False
        for node in path:
            if node.op != "call_module":
                continue
            parent, key, child = m, node.target, m.get_submodule(node.target)
            while type(child) is nn.Sequential and len(child) == 1 and not _is_torch_layer(child[0]):
                parent, key, child = child, "0", child[0]
            kind, short = kinds(child)
            if kind == "container":
                if not walk(child):
                    return False
                continue
            out.append(Unit(names[id(child)], child, parent, key, kind, short))
        return True

    return out if walk(model) else None


def same_in_train_and_eval(module: nn.Module) -> bool:
    """Whether ``module``'s own forward traces to the same graph in training and in eval mode (a graph
    made from it keeps the module's behaviour in both). Only the module's own flag is flipped (its
    children are leaves of the trace), and restored."""
    mode = module.training
    try:
        codes = []
        for training in (True, False):
            module.training = training
            graph = shallow_trace(module)
            if graph is None:
                return False
            codes.append(graph.python_code("self").src)
    finally:
        module.training = mode
    return codes[0] == codes[1]
