"""Per-op rules: the kernel and stride of every layer the analysis knows.

Entry points: :func:`module_rule` for a module call (the user's ``rules`` first,
then :data:`MODULE_RULES` in order: the first class the module is an instance
of), :func:`function_rule` for a function or method call (the user's rules
first, then :data:`FUNCTION_RULES` by the op's name, :data:`BASE_RULES` by the
name without leading underscores, else pointwise). Each rule takes the
:class:`~.context.Context` and the :class:`~.context.Call` and returns the
output's state (None for values that carry none); it records the node's row.

The kernels and strides are those of ``docs/SEMANTICS.md``, "Receptive fields"
(its table of op rules): ``k_eff = d(k − 1) + 1`` for convolutions and pooling,
a transposed convolution's ``floor((k_eff − 1)/s) + 1`` at stride ``1/s``,
interpolation from its sizes, the learnable resizers at their current scale
(DynOPool2d at r: kernel ``1 + 1/(2r)``, stride ``1/r``; a Shape Adaptor's two
bilinear branches at stride ``1/s``), r = ∞ for adaptive / global pooling.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

from torch import nn

from resizeops.models.nn import DynOPool2d, ShapeAdaptor, ShapeAdaptorMaxPool2d

from .context import Call, Context, is_torch_fn, pairf
from .layout import (
    cat,
    contract_last,
    getitem,
    global_context,
    keep_or_drop,
    permute,
    pointwise,
    reduce,
    reshape,
)
from .state import AXES, INF, Pair, TensorRF, is_tensor, join, keep_tags, map_out, right_align, spatial_size, tags_for
from .tracing import RFTraceError

Rule = Callable[[Context, Call], Any]


# =============================================================================
# Rule bodies shared by modules and functions
# =============================================================================


def interp_kernel(n: int, o: int, mode: str, antialias: bool) -> Tuple[float, float]:
    """(k, s) of a 1-D interpolation from n to o samples, in input pixels."""
    if n == o:
        return 1.0, 1.0
    s = n / o
    if mode in ("nearest", "nearest-exact"):
        return 1.0, s
    if mode == "area":  # adaptive average pooling: the widest window
        k = max(math.ceil((i + 1) * n / o) - math.floor(i * n / o) for i in range(o))
        return float(k), s
    taps = 4.0 if mode == "bicubic" else 2.0
    if antialias and s > 1:
        return float(math.ceil(taps * s)), s
    return taps, s


def _interpolate(ctx: Context, c: Call, mode: str, align_corners: bool, antialias: bool):
    kh, sh = interp_kernel(int(c.x.shape[-2]), int(c.value.shape[-2]), mode, antialias)
    kw, sw = interp_kernel(int(c.x.shape[-1]), int(c.value.shape[-1]), mode, antialias)
    return ctx.layer(c, "resize", (kh, kw), (sh, sw), op=f"{c.op} ({mode})", ins=[c.rf])


def _conv_transpose(ctx: Context, c: Call, kernel, stride, dilation):
    ke = ctx.keff(kernel, dilation)
    sh, sw = pairf(stride)
    # Each output reads at most floor((k_eff − 1)/s) + 1 inputs; the output grid is s times finer.
    k = (math.floor((ke[0] - 1) / sh) + 1, math.floor((ke[1] - 1) / sw) + 1)
    return ctx.layer(c, "resize", k, (1.0 / sh, 1.0 / sw), ins=[c.rf])


def _by_size(ctx: Context, c: Call, kind: str, k: Pair):
    """A layer whose stride is its input size over its output size (fractional max-pool)."""
    s = (c.x.shape[-2] / c.value.shape[-2], c.x.shape[-1] / c.value.shape[-1])
    return ctx.layer(c, kind, k, s, ins=[c.rf])


def _pixel_shuffle(ctx: Context, c: Call, f: float):
    return ctx.layer(c, "resize", (1.0, 1.0), (1.0 / f, 1.0 / f), ins=[c.rf])  # kernel 1, stride 1/f


def _pixel_unshuffle(ctx: Context, c: Call, f: float):
    return ctx.layer(c, "resize", (f, f), (f, f), ins=[c.rf])  # kernel f, stride f


def _global(ctx: Context, c: Call):
    """Adaptive / global pooling: r = ∞ on both axes, the dims kept where the rank stays."""
    out = map_out(c.value, lambda t: TensorRF.global_(keep_tags(c.rf, t)))
    ctx.row(c.node, c.op, "global", (INF, INF), (1, 1), out, c.value, c.ins)
    return out


def _unchanged(ctx: Context, c: Call):
    """Padding: sizes change, receptive fields do not (a pointwise row)."""
    out = c.rf.with_tags(c.rf.tags)
    ctx.row(c.node, c.op, "pointwise", (1, 1), (1, 1), out, c.value, c.ins)
    return out


def _context_row(ctx: Context, c: Call, dims):
    """Softmax / normalisation over ``dims`` as a pointwise row with global context."""
    out = global_context(c.rf, c.x, dims)
    ctx.row(c.node, c.op, "pointwise", (1, 1), (1, 1), out, c.value, c.ins)
    return out


def user_rule(ctx: Context, c: Call, rule: Callable, target) -> Optional[TensorRF]:
    """A rule of ``analyze(..., rules=...)``: ``rule(module_or_fn, in_size, out_size)`` gives
    ``(kernel, stride)``, ``"global"`` or ``"pointwise"``."""
    if not c.operands:
        return None
    rf, v, value, n = c.rf, c.x, c.value, c.node
    in_size = spatial_size(rf, v) or (0, 0)
    out_size = spatial_size(rf, value) if is_tensor(value) and rf.tags and len(rf.tags) == value.dim() else None
    got = rule(target, in_size, out_size)
    if got == "pointwise":
        out = pointwise(ctx, n, c.operands, value)
        ctx.row(n, c.op, "pointwise", (1, 1), (1, 1), out, value, c.ins)
        return out
    if got == "global":
        out = map_out(value, lambda t: TensorRF.global_())
        ctx.row(n, c.op, "global", (INF, INF), (1, 1), out, value, c.ins)
        return out
    k, s = got
    return ctx.layer(c, "conv", pairf(k), pairf(s), ins=[rf], retag=True)


# =============================================================================
# Modules
# =============================================================================


def _dynopool(ctx: Context, c: Call, m: DynOPool2d):
    rh, rw = m.ratio
    return ctx.layer(c, "resize", (1 + 1 / (2 * rh), 1 + 1 / (2 * rw)), (1 / rh, 1 / rw))


def _shape_adaptor(ctx: Context, c: Call, m: ShapeAdaptor):
    n, op, operands, value = c.node, c.op, c.operands, c.value
    s = m.scale()
    if isinstance(m, ShapeAdaptorMaxPool2d):
        full, xf = operands[0]
        low, _, _ = ctx.spatial(n, full, xf, (2.0, 2.0), (2.0, 2.0))  # the max-pool 2×2 branch
        d_low = (xf.shape[-2] // 2, xf.shape[-1] // 2)
    elif isinstance(getattr(m, "low", None), (nn.MaxPool2d, nn.AvgPool2d)):
        # A cell with its own pooling layer as the low branch (convert's AutoSC and AutoTL cells).
        full, xf = operands[0]
        pool = m.low
        k = ctx.keff(pool.kernel_size, getattr(pool, "dilation", 1))
        low, _, _ = ctx.spatial(n, full, xf, k, pairf(pool.stride or pool.kernel_size))
        d_low = tuple(pool(xf).shape[-2:])
    else:
        if len(operands) < 2:
            raise RFTraceError(f"rf.analyze: `{n.target}` (ShapeAdaptor) needs forward(x_low, x_full)")
        (low, xl), (full, xf) = operands[0], operands[1]
        d_low = (xl.shape[-2], xl.shape[-1])
    d_full = (xf.shape[-2], xf.shape[-1])
    o = (value.shape[-2], value.shape[-1])
    # Full branch: bilinear D → floor(D·s) at the learned stride 1/s; low branch: bilinear
    # from its own size, its stride scaled by its down-sampling relative to the full branch.
    kf = tuple(1.0 if o[i] == d_full[i] else 2.0 for i in range(2))
    sf = (1.0 / s, 1.0 / s)
    kl = tuple(1.0 if o[i] == d_low[i] else 2.0 for i in range(2))
    sl = tuple(sf[i] * d_low[i] / d_full[i] for i in range(2))
    f_out, kk, ss = ctx.spatial(n, full, xf, kf, sf)
    l_out, _, _ = ctx.spatial(n, low, xf, kl, sl)
    out = join([f_out, l_out], f_out.tags)
    ctx.row(n, op, "resize", kk, ss, out, value, c.ins)
    return out


def _conv(ctx: Context, c: Call, m: nn.Conv2d):
    return ctx.layer(c, "conv", ctx.keff(m.kernel_size, m.dilation), pairf(m.stride))


def _pool(ctx: Context, c: Call, m):
    stride = m.stride if m.stride is not None else m.kernel_size
    return ctx.layer(c, "pool", ctx.keff(m.kernel_size, getattr(m, "dilation", 1)), pairf(stride))


def _upsample(ctx: Context, c: Call, m: nn.Upsample):
    return _interpolate(ctx, c, m.mode, bool(m.align_corners), False)


def _flatten(ctx: Context, c: Call, m):
    out = reshape(ctx, c.node, c.rf, c.x, c.value)
    ctx.row(c.node, c.op, "reshape", (1, 1), (1, 1), out, c.value, c.ins)
    return out


def _linear(ctx: Context, c: Call, m):
    out = contract_last(ctx, c.node, c.operands, c.value)
    kind_k = tuple(INF if (c.rf.tags and c.rf.tags[-1] == t) else 1.0 for t in AXES)
    ctx.row(c.node, c.op, "linear", kind_k, (1, 1), out, c.value, c.ins)
    return out


def _softmax(ctx: Context, c: Call, m):
    return _context_row(ctx, c, None if m.dim is None else [m.dim])


def _instance_norm(ctx: Context, c: Call, m):
    if m.track_running_stats and not m.training:
        return _module_fallback(ctx, c, m)  # normalised by running statistics: pointwise
    return _group_norm(ctx, c, m)


def _group_norm(ctx: Context, c: Call, m):
    return _context_row(ctx, c, list(range(1, c.x.dim())) if is_tensor(c.x) else None)


def _layer_norm(ctx: Context, c: Call, m: nn.LayerNorm):
    return _context_row(ctx, c, list(range(-len(m.normalized_shape), 0)))


def _module_fallback(ctx: Context, c: Call, m: nn.Module):
    """A module no rule names: a convolution or pooling if it has ``kernel_size`` and ``stride``
    (timm's, your own), else pointwise (said so in the report unless it is a torch.nn layer)."""
    ks, st = getattr(m, "kernel_size", None), getattr(m, "stride", None)
    if ks is not None and st is not None and not c.rf.is_global:
        try:
            k = ctx.keff(ks, getattr(m, "dilation", 1))
            s = pairf(st)
        except (TypeError, ValueError):
            k = None
        if k is not None:
            return ctx.layer(c, "pool" if "pool" in c.op.lower() else "conv", k, s, retag=True)
    out = pointwise(ctx, c.node, c.operands, c.value)
    if not any(cls.__module__.startswith("torch.nn") and cls is not nn.Module for cls in type(m).__mro__):
        ctx.assume(f"{c.node.target} ({c.op})")  # a subclass of a torch.nn layer is that layer
    ctx.row(c.node, c.op, "pointwise", (1, 1), (1, 1), out, c.value, c.ins)
    return out


_PADS = (nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d) + (
    (nn.CircularPad2d,) if hasattr(nn, "CircularPad2d") else ()
)
_ADAPTIVE = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d,
             nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool3d)  # fmt: skip

#: (module classes, rule(ctx, call, module)), tried in order: the first the module is an instance of
MODULE_RULES: Sequence[Tuple[Tuple[type, ...], Callable]] = (
    ((DynOPool2d,), _dynopool),
    ((ShapeAdaptor,), _shape_adaptor),
    ((nn.Conv2d,), _conv),
    ((nn.ConvTranspose2d,), lambda ctx, c, m: _conv_transpose(ctx, c, m.kernel_size, m.stride, m.dilation)),
    ((nn.MaxPool2d, nn.AvgPool2d, nn.LPPool2d), _pool),
    ((nn.FractionalMaxPool2d,), lambda ctx, c, m: _by_size(ctx, c, "pool", pairf(m.kernel_size))),
    (_ADAPTIVE, lambda ctx, c, m: _global(ctx, c)),
    ((nn.Upsample,), _upsample),  # UpsamplingNearest2d / UpsamplingBilinear2d subclass it
    ((nn.PixelShuffle,), lambda ctx, c, m: _pixel_shuffle(ctx, c, float(m.upscale_factor))),
    ((nn.PixelUnshuffle,), lambda ctx, c, m: _pixel_unshuffle(ctx, c, float(m.downscale_factor))),
    (_PADS, lambda ctx, c, m: _unchanged(ctx, c)),
    ((nn.Flatten, nn.Unflatten), _flatten),
    ((nn.Linear, nn.Bilinear, nn.LazyLinear), _linear),
    ((nn.Softmax, nn.LogSoftmax, nn.Softmin), _softmax),
    ((nn.GroupNorm,), _group_norm),
    ((nn.modules.instancenorm._InstanceNorm,), _instance_norm),
    ((nn.LayerNorm,), _layer_norm),
)


def module_rule(ctx: Context, c: Call, m: nn.Module, user_rules: Mapping[Any, Callable]) -> Optional[TensorRF]:
    """The output state of a call of module ``m``: the user's rule for its class (or a base
    class), else the first of :data:`MODULE_RULES` that fits, else :func:`_module_fallback`."""
    if not c.operands:
        return None
    for key in type(m).__mro__:
        if key in user_rules:
            return user_rule(ctx, c, user_rules[key], m)
    for classes, rule in MODULE_RULES:
        if isinstance(m, classes):
            return rule(ctx, c, m)
    return _module_fallback(ctx, c, m)


# =============================================================================
# Functions and methods
# =============================================================================

_REDUCTIONS = {"mean", "sum", "amax", "amin", "max", "min", "std", "var", "logsumexp", "nansum", "nanmean",
               "median", "nanmedian", "prod", "norm", "std_mean", "var_mean", "argmax", "argmin", "any", "all"}  # fmt: skip
_RESHAPES = {"view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze", "view_as", "reshape_as", "contiguous",
             "clone", "to", "type", "float", "double", "half", "bfloat16", "detach", "type_as", "requires_grad_",
             "cpu", "cuda", "ravel"}  # fmt: skip
_PERMUTES = {"permute", "transpose", "swapaxes", "swapdims", "movedim", "moveaxis", "t"}
_SPLITS = {"chunk", "split", "tensor_split", "split_with_sizes", "hsplit", "vsplit", "dsplit"}
_EXPANDS = {"expand", "expand_as", "repeat", "tile", "broadcast_to"}
_SOFTMAX = {"softmax", "log_softmax", "softmin", "_softmax"}
_NORM_FNS = {"group_norm", "instance_norm", "layer_norm"}
#: calls whose result carries no receptive field (sizes, new tensors)
_NO_STATE = {"zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like", "new_zeros", "new_ones",
             "new_empty", "new_full", "size", "dim", "numel"}  # fmt: skip
_LINEAR_FNS = {"linear", "matmul", "mm", "bmm", "__matmul__"}
# Functions outside torch known to keep every spatial position (torchvision's / timm's regularisers).
_KNOWN_POINTWISE = {"stochastic_depth", "drop_block2d", "drop_path", "hard_sigmoid", "hard_swish", "hard_mish",
                    "swish", "mish", "sigmoid", "gelu", "gelu_tanh", "quick_gelu"}  # fmt: skip
#: argument names of the functional pools, in position order
_POOL_ARGS = {
    "max_pool2d": ["input", "kernel_size", "stride", "padding", "dilation"],
    "avg_pool2d": ["input", "kernel_size", "stride", "padding"],
    "lp_pool2d": ["input", "norm_type", "kernel_size", "stride"],
}


def _getitem(ctx: Context, c: Call):
    container, index = c.rargs[0], c.args[1]
    if isinstance(container, (tuple, list)):  # an element of a tuple output (of split, a module …)
        return container[index] if isinstance(index, int) else type(container)(container[index])
    if not is_tensor(c.args[0]):
        return map_out(c.value, lambda t: c.rf)
    return getitem(ctx, c.node, c.rf, c.args[0], index, c.value)


def _elastic_down(ctx: Context, c: Call):
    return ctx.layer(c, "pool", (2.0, 2.0), (2.0, 2.0), op="elastic_down (avg_pool 2×2)")


def _elastic_merge(ctx: Context, c: Call):
    (low, xl), (full, _) = c.operands[0], c.operands[1]
    up, kk, ss = ctx.spatial(c.node, low, xl, (2.0, 2.0), (0.5, 0.5))
    out = join([full, up], full.tags)
    ctx.row(c.node, "elastic_merge (up×2 + add)", "join", kk, ss, out, c.value, c.ins)
    return out


def _conv2d_fn(ctx: Context, c: Call):
    """F.conv2d and timm's conv2d_same: (input, weight, bias, stride, padding, dilation, …)."""
    w = c.arg(1, "weight")
    k = ctx.keff(tuple(w.shape[-2:]), c.arg(5, "dilation", 1))
    return ctx.layer(c, "conv", k, pairf(c.arg(3, "stride", 1)))


def _conv_transpose_fn(ctx: Context, c: Call):
    w = c.arg(1, "weight")
    return _conv_transpose(ctx, c, tuple(w.shape[-2:]), c.arg(3, "stride", 1), c.arg(7, "dilation", 1))


def _pool_fn(ctx: Context, c: Call):
    names = _POOL_ARGS[c.op]
    kernel = c.arg(names.index("kernel_size"), "kernel_size")
    stride = c.arg(names.index("stride"), "stride") or kernel
    d = c.arg(names.index("dilation"), "dilation", 1) if "dilation" in names else 1
    return ctx.layer(c, "pool", ctx.keff(kernel, d), pairf(stride))


def _pool_same_fn(ctx: Context, c: Call):
    """timm's max_pool2d_same / avg_pool2d_same: (input, kernel_size, stride, padding, dilation …)."""
    kernel = c.arg(1, "kernel_size")
    stride = c.arg(2, "stride") or kernel
    d = c.arg(4, "dilation", 1) if c.op.lstrip("_").startswith("max") else 1
    return ctx.layer(c, "pool", ctx.keff(kernel, d), pairf(stride))


def _interpolate_fn(ctx: Context, c: Call):
    if c.op == "interpolate":
        mode = c.arg(3, "mode", "nearest")
        ac = bool(c.arg(4, "align_corners", False))
        aa = bool(c.arg(6, "antialias", False))
    else:
        mode, ac, aa = ("bilinear", True, False) if c.op == "upsample_bilinear" else ("nearest", False, False)
    return _interpolate(ctx, c, mode, ac, aa)


def _patch_merging(ctx: Context, c: Call):
    """torchvision's Swin: 2×2 space-to-depth on (…, H, W, C)."""
    out = ctx.on_axes(c.node, c.rf, (2.0, 2.0), (2.0, 2.0), c.value)
    ctx.row(c.node, "patch_merging (2×2)", "resize", (2, 2), (2, 2), out, c.value, c.ins)
    return out


def _window_attention(ctx: Context, c: Call):
    """torchvision's Swin: attention within windows of (wh, ww), taken as a window-sized kernel."""
    ws = pairf(c.arg(4, "window_size"))
    out = ctx.on_axes(c.node, c.rf, ws, (1.0, 1.0), c.value)
    ctx.row(c.node, "shifted_window_attention", "conv", ws, (1, 1), out, c.value, c.ins)
    return out


def _split(ctx: Context, c: Call):
    unbind = c.op == "unbind"
    dim = c.arg(1 if unbind else 2, "dim", 0)
    return map_out(c.value, lambda t: keep_or_drop(c.rf, dim if unbind else None))


def _expand(ctx: Context, c: Call):
    return map_out(c.value, lambda t: c.rf.with_tags(tags_for(right_align(c.rf.tags, t.dim()), t)))


def _reduce(ctx: Context, c: Call):
    if len(c.operands) > 1 and c.op.lstrip("_") in ("max", "min"):
        return function_fallback(ctx, c)  # torch.max(a, b): elementwise
    dims = c.arg(1, "dim", None)
    keep = bool(c.arg(2, "keepdim", False))
    return reduce(ctx, c.node, c.op, c.rf, c.x, dims, keep, c.value, c.ins)


def _norm_fn(ctx: Context, c: Call):
    if c.op.lstrip("_") == "layer_norm":
        shape = c.arg(1, "normalized_shape", ())
        nd = 1 if isinstance(shape, int) else len(shape)
        return global_context(c.rf, c.x, list(range(-nd, 0)))
    return global_context(c.rf, c.x, list(range(1, c.x.dim())))


def _linear_fn(ctx: Context, c: Call):
    out = contract_last(ctx, c.node, c.operands if c.op != "linear" else c.operands[:1], c.value)
    if len(c.operands) > 1 and c.op != "linear":
        ctx.row(c.node, c.op, "join", (1, 1), (1, 1), out, c.value, c.ins)
    return out


def function_fallback(ctx: Context, c: Call):
    """Any other function: pointwise (a join row when its operands differ); a function from
    outside torch that no rule knows is listed in the report as assumed pointwise."""
    n = c.node
    out = pointwise(ctx, n, c.operands, c.value)
    if n.op == "call_function" and not is_torch_fn(n.target) and c.op.lstrip("_") not in _KNOWN_POINTWISE:
        ctx.assume(f"{c.op} (in {ctx.caller(n)})")
    if len({id(r) for r in c.ins}) > 1:
        ctx.row(n, c.op, "join", (1, 1), (1, 1), out, c.value, c.ins)
    return out


def _by_names(names, rule: Rule) -> Dict[str, Rule]:
    return {name: rule for name in names}


#: rules by the op's exact name (:func:`~.context.fn_name`)
FUNCTION_RULES: Dict[str, Rule] = {
    "getitem": _getitem,
    "elastic_down": _elastic_down,
    "elastic_merge": _elastic_merge,
    "conv2d": _conv2d_fn,
    "conv_transpose2d": _conv_transpose_fn,
    **_by_names(_POOL_ARGS, _pool_fn),
    "fractional_max_pool2d": lambda ctx, c: _by_size(ctx, c, "pool", pairf(c.arg(1, "kernel_size"))),
    "adaptive_pool": _global,
    **_by_names(("interpolate", "upsample_bilinear", "upsample_nearest"), _interpolate_fn),
    "pixel_shuffle": lambda ctx, c: _pixel_shuffle(ctx, c, float(c.arg(1, "upscale_factor"))),
    "pixel_unshuffle": lambda ctx, c: _pixel_unshuffle(ctx, c, float(c.arg(1, "downscale_factor"))),
    "pad": _unchanged,
    "cat": lambda ctx, c: cat(ctx, c.node, "cat", c.arg(1, "dim", 0), c.operands, c.value),
    "stack": lambda ctx, c: cat(ctx, c.node, "stack", c.arg(1, "dim", 0), c.operands, c.value),
    **_by_names(_RESHAPES, lambda ctx, c: reshape(ctx, c.node, c.rf, c.x, c.value)),
    **_by_names(_PERMUTES, lambda ctx, c: permute(c.op, c.rf, c.x, c.args[1:], c.kwargs)),
    **_by_names(_SPLITS | {"unbind"}, _split),
    **_by_names(_EXPANDS, _expand),
    **_by_names(_LINEAR_FNS, _linear_fn),
}

#: rules by the op's name without leading underscores (private aten spellings, timm's helpers)
BASE_RULES: Dict[str, Rule] = {
    "pad_same": lambda ctx, c: c.rf,  # timm's dynamic 'same' padding
    "conv2d_same": _conv2d_fn,  # timm
    "max_pool2d_same": _pool_same_fn,  # timm
    "avg_pool2d_same": _pool_same_fn,  # timm
    "patch_merging_pad": _patch_merging,
    "shifted_window_attention": _window_attention,
    **_by_names(_REDUCTIONS, _reduce),
    **_by_names(_SOFTMAX, lambda ctx, c: global_context(c.rf, c.x, [c.arg(1, "dim", -1)])),
    **_by_names(_NORM_FNS, _norm_fn),
}


def function_rule(ctx: Context, c: Call, user_rules: Mapping[Any, Callable]) -> Optional[TensorRF]:
    """The output state of a call_function / call_method node: the user's rule for the
    function, else :data:`FUNCTION_RULES` by name, :data:`BASE_RULES` by the name without
    leading underscores, else :func:`function_fallback`."""
    n = c.node
    if n.op == "call_function" and n.target in user_rules:
        return user_rule(ctx, c, user_rules[n.target], n.target)
    if not c.operands:
        return None
    base = c.op.lstrip("_")
    if base in ("size", "dim", "numel", "shape") or c.op in _NO_STATE:
        return None
    rule = FUNCTION_RULES.get(c.op) or BASE_RULES.get(base) or function_fallback
    return rule(ctx, c)
