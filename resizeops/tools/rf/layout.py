"""Ops that move, merge or drop the spatial dims rather than convolve over them.

The analysis tracks the input's H and W by dimension (a state's ``tags``), not
as "the last two": ConvNeXt's channels-last blocks permute them, ShuffleNet's
channel shuffle reshapes around them, ViT flattens them into tokens. The
functions here give the output state of such ops:

* :func:`pointwise` — every position stays where it is (activations, norms,
  dropout, elementwise joins: the union of the operands' paths); a shape
  change that moves spatial positions is an error naming the op;
* :func:`reshape`, :func:`permute`, :func:`getitem`, :func:`keep_or_drop`,
  :func:`cat` — the tags follow the dims; a spatial dim of size > 1 merged with
  others makes the value global (a dense layer or attention follows: a note);
* :func:`reduce`, :func:`contract_last` — a reduction or a dense layer over a
  spatial dim: r = ∞ on that axis;
* :func:`global_context` — softmax and normalisations over a spatial dim: the
  position's own finite path joined with an infinite one.

Each takes the :class:`~.context.Context` (rows, notes, error messages) and the
node where it needs them.
"""

from __future__ import annotations

import math
from typing import List, Optional

import torch

from .context import Context, arg, fn_name
from .state import AXES, INF, AxisPaths, TensorRF, is_tensor, join, map_out, where


def pointwise(ctx: Context, n, operands, value):
    """Ops that keep every spatial position where it is (activations, norms, dropout,
    elementwise joins): the union of the operands' paths. Anything else that moves
    spatial positions is an error naming the op."""
    return map_out(value, lambda t: _pointwise_one(ctx, n, operands, t))


def _pointwise_one(ctx: Context, n, operands, out: torch.Tensor) -> TensorRF:
    rfs = [r for r, _ in operands]
    finite = [(r, v) for r, v in operands if not r.is_global and r.tags is not None and is_tensor(v)]
    tags: List[Optional[str]] = [None] * out.dim()
    for r, v in finite:
        off = out.dim() - v.dim()
        for p, t in enumerate(r.tags):
            if t is None:
                continue
            q = p + off
            if q < 0 or (v.shape[p] != out.shape[q] and v.shape[p] != 1) or (tags[q] not in (None, t)):
                raise ctx.error(
                    n, f"it maps a tensor of shape {tuple(v.shape)} (spatial dims at {where(r.tags)}) to "
                    f"{tuple(out.shape)}"
                )
            tags[q] = t
    if not finite:
        # only global operands (a squeeze-excitation branch): keep dims that stay in place
        for r, v in operands:
            if r.tags is not None and is_tensor(v) and v.dim() == out.dim() and len(r.tags) == out.dim():
                tags = [t if v.shape[i] in (out.shape[i], 1) else None for i, t in enumerate(r.tags)]
                break
        return join(rfs, tuple(tags) if any(tags) else None)
    return join(rfs, tuple(tags))


def reshape(ctx: Context, n, rf: TensorRF, x, value):
    """view / reshape / flatten / squeeze …: a spatial dim survives when the block structure
    around it does; a spatial dim of size > 1 merged with others makes the value global
    (a dense layer sees all of it next)."""
    if not is_tensor(value) or not is_tensor(x):
        return rf
    if rf.is_global:
        return TensorRF.global_()
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
                place, op = n.target, type(ctx.module.get_submodule(n.target)).__name__
            else:
                place, op = ctx.caller(n), fn_name(n)
            ctx.note(f"{place}: `{op}` {tuple(S)} → {tuple(T)} merges or splits a spatial dim of size > 1: "
                     "taken as global (a dense layer or attention follows)")
            return TensorRF.global_()
    return TensorRF(tuple(new), h, w)


def permute(name: str, rf: TensorRF, x, rest, kwargs):
    """permute / transpose / swapaxes / movedim / t: the tags move with the dims."""
    if rf.tags is None or not is_tensor(x):
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
        a = int(arg(rest, kwargs, 0, "dim0", 0)) % nd
        b = int(arg(rest, kwargs, 1, "dim1", 1)) % nd
        order[a], order[b] = order[b], order[a]
    return rf.with_tags(tuple(rf.tags[i] for i in order))


def keep_or_drop(rf: TensorRF, dim):
    """A piece of a split (``dim`` None: same rank) or of ``unbind(dim)`` (the dim is gone)."""
    if dim is None or rf.tags is None:
        return rf
    d = int(dim) % len(rf.tags)
    return rf.with_tags(rf.tags[:d] + rf.tags[d + 1:])


def getitem(ctx: Context, n, rf: TensorRF, x: torch.Tensor, idx, value):
    """Indexing: ints drop dims, None adds one, a strided slice of a spatial dim is a stride
    (kernel 1, a row of its own); advanced indexing is taken as pointwise (an error if it
    moves spatial positions)."""
    if rf.is_global:
        return map_out(value, lambda t: TensorRF.global_())
    items = list(idx) if isinstance(idx, tuple) else [idx]
    if any(isinstance(i, (torch.Tensor, list)) or (i is not None and not isinstance(i, (int, slice, type(Ellipsis))))
           for i in items):  # fmt: skip
        return pointwise(ctx, n, [(rf, x)], value)
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
    out = TensorRF(tuple(new_tags), axes["h"], axes["w"])
    if not is_tensor(value) or len(new_tags) != value.dim():
        return rf
    if strides["h"] != 1 or strides["w"] != 1:
        ctx.row(n, "getitem (strided slice)", "resize", (1, 1), (strides["h"], strides["w"]), out, value, [rf])
    return out


def cat(ctx: Context, n, name: str, dim, operands, value):
    """cat / stack: the union of the operands' paths (a join row when several), a new dim for stack."""
    ins = [r for r, _ in operands]
    first, _ = operands[0]
    tags = first.tags
    if name == "stack" and tags is not None:
        d = dim % (len(tags) + 1)
        tags = tags[:d] + (None,) + tags[d:]
    finite = [r for r in ins if not r.is_global]
    if finite:
        tags = next((r.tags for r in finite), tags)
        if name == "stack" and tags is not None and len(tags) != value.dim():
            d = dim % (len(tags) + 1)
            tags = tags[:d] + (None,) + tags[d:]
    out = join(ins, tags if tags is not None and len(tags) == value.dim() else None)
    if len(ins) > 1:
        ctx.row(n, name, "join", (1, 1), (1, 1), out, value, ins)
    return out


def reduce(ctx: Context, n, name: str, rf: TensorRF, x, dims, keep: bool, value, ins):
    """mean / amax / sum … over ``dims`` (None: all): r = ∞ on every spatial axis reduced (a global row)."""
    if not is_tensor(x):
        return rf
    nd = x.dim()
    if dims is None:
        dims_l = list(range(nd))
    else:
        dims_l = [int(d) % nd for d in (dims if isinstance(dims, (list, tuple)) else [dims])]
    tags = rf.tags if rf.tags is not None else (None,) * nd
    reduced = {tags[d] for d in dims_l if tags[d] is not None}
    h = AxisPaths.infinite() if "h" in reduced else rf.h
    w = AxisPaths.infinite() if "w" in reduced else rf.w
    new = tuple(t for i, t in enumerate(tags) if keep or i not in dims_l)
    out = TensorRF(new, h, w)
    out = map_out(value, lambda t: out.with_tags(new if t.dim() == len(new) else None))
    if reduced:
        ctx.row(n, name, "global", tuple(INF if t in reduced else 1.0 for t in AXES), (1, 1), out, value, ins)
    return out


def global_context(rf: TensorRF, x, dims):
    """An op whose output mixes its own position with statistics over ``dims`` (softmax,
    group/instance/layer norm): a finite path (the position) and an infinite one per
    spatial axis among ``dims``."""
    if not is_tensor(x) or rf.tags is None or dims is None:
        return rf
    nd = x.dim()
    hit = {rf.tags[int(d) % nd] for d in dims if rf.tags[int(d) % nd] is not None}
    h = AxisPaths.join([rf.h, AxisPaths.infinite()]) if "h" in hit else rf.h
    w = AxisPaths.join([rf.w, AxisPaths.infinite()]) if "w" in hit else rf.w
    return TensorRF(rf.tags, h, w)


def contract_last(ctx: Context, n, operands, value):
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
            return map_out(value, lambda t: TensorRF.global_())
        t = hit.pop()
        h = AxisPaths.infinite() if t == "h" else rf.h
        w = AxisPaths.infinite() if t == "w" else rf.w
        tags = tuple(u if u != t else None for u in rf.tags) if rf.tags else None
        return TensorRF(tags, h, w)
    return pointwise(ctx, n, operands, value)
