"""Pure-PyTorch reference implementations: the ground truth (docs/SEMANTICS.md: DynOPool, resize_blend).

These functions are plain differentiable PyTorch, so they also serve as the
"eager reference" and, under ``torch.compile``, the "compiled reference" of the
benchmarks. They take already validated arguments with an explicit output size;
the public ops in :mod:`resizeops.ops` validate, dispatch and call them through
the ``reference`` backend.

Half types (float16, bfloat16) are computed in float32 and cast back at the end,
the same accumulation rule the kernels follow (SEMANTICS.md, "Conventions").
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

__all__ = [
    "dynopool2d",
    "dynopool2d_at",
    "resize",
    "resize_blend",
    "shape_adaptor_maxpool",
    "output_memory_format",
    "compute_dtype",
]

Scale = Optional[Tuple[float, float]]
_aten = torch.ops.aten


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype arithmetic happens in: float32 for half types, else ``dtype``."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _is_channels_last(x: torch.Tensor) -> bool:
    # Channels innermost: a channels_last tensor, or a slice of one. A tensor that
    # is contiguous in both formats (C == 1, or H == W == 1) counts as NCHW, as
    # torch's suggest_memory_format does.
    if x.dim() != 4 or x.is_contiguous():
        return False
    if x.is_contiguous(memory_format=torch.channels_last):
        return True
    s = x.stride()
    return s[1] < s[3] <= s[2] and x.shape[1] > 1


def output_memory_format(*tensors: torch.Tensor) -> torch.memory_format:
    """channels_last if any 4-D input is channels_last (in → out), else contiguous."""
    return torch.channels_last if any(_is_channels_last(t) for t in tensors) else torch.contiguous_format


def _in_format(t: torch.Tensor, fmt: torch.memory_format) -> torch.Tensor:
    """``t`` with exactly the strides of ``torch.empty(t.shape, memory_format=fmt)``.

    Every backend allocates its outputs that way. ``contiguous(memory_format=fmt)``
    alone keeps any stride of a size-1 dimension (an (N, C, 1, 1) tensor is
    contiguous in both formats), so a tensor that is already dense in ``fmt`` is
    viewed with the canonical strides (same memory, same values).
    """
    t = t.contiguous(memory_format=fmt)
    n, c, h, w = t.shape
    want = (c * h * w, 1, w * c, c) if fmt == torch.channels_last else (c * h * w, h * w, w, 1)
    return t if t.stride() == want else t.as_strided(t.shape, want, t.storage_offset())


class _Axis(NamedTuple):
    """The 2·out_size queries of one axis (in_size → out_size): taps and second-tap weight."""

    i0: torch.Tensor  # floor(u), int64
    i1: torch.Tensor  # min(i0 + 1, in_size − 1)
    w1: torch.Tensor  # u − i0; w0 = 1 − w1. Carries the gradient to Ĥ.
    edge: torch.Tensor  # i1 == i0: the last pixel, whose second tap does not exist
    inside: torch.Tensor  # 0 ≤ u < in_size − 1: where u is not clipped (derivative 1)


def _query_axis(size_hat: torch.Tensor, out_size: int, in_size: int) -> _Axis:
    """Queries j ∈ [0, 2·out_size) along one axis (DynOPool Eq. 2, docs/SEMANTICS.md):
    u_j = (2j+1)·in/(4Ĥ) − 1/2, the pixel coordinate of y_j = −1 + (2j+1)/(2Ĥ) under
    grid_sample's align_corners=False, clipped to [0, in−1] (border padding).

    Computed as ((2j+1)·in − 2Ĥ)/(4Ĥ): one rounding of exact integers (below 2^24 in
    float32), the same in every backend (math.h dynopool_query_coord), so a query that
    lies on a pixel (α = 2 on an even size: u_j = j) is exactly there. The clip's
    derivative is 1 on [0, in−1) and 0 elsewhere, and d/du of the interpolation is
    x[i0+1] − x[i0] with i0 = floor(u): at a pixel, the derivative towards larger u
    (docs/DESIGN.md, "Rounding and ties").
    """
    j = torch.arange(2 * out_size, dtype=size_hat.dtype, device=size_hat.device)
    u = ((2 * j + 1) * in_size - 2 * size_hat) / (4 * size_hat)
    hi = in_size - 1
    inside = (u >= 0) & (u < hi)
    u = torch.where(inside, u, u.detach().clamp(0, hi))
    i0 = u.detach().floor().long().clamp(0, hi)
    i1 = (i0 + 1).clamp(max=hi)
    return _Axis(i0, i1, u - i0.to(u.dtype), i1 == i0, inside)


def _lerp(a: torch.Tensor, b: torch.Tensor, w1: torch.Tensor) -> torch.Tensor:
    """One step of DynOPool's bilinear query: w0·a + w1·b (w0 = 1 − w1), and exactly a
    where a == b, so that equal pixels give their value at any position and tied
    queries stay tied (math.h lerp_tie; docs/DESIGN.md, "Rounding and ties")."""
    return torch.where(a == b, a, (1 - w1) * a + w1 * b)


class _QueryLerp(torch.autograd.Function):
    """:func:`_lerp` with bilinear interpolation's gradients everywhere, also where
    a == b: w0·g to a, w1·g to b (none at the last pixel, whose second tap does not
    exist: an infinite g passes whole, as grid_sample skips that tap), (b − a)·g to w1.
    Its backward is made of differentiable ops, so the reference stays twice
    differentiable."""

    @staticmethod
    def forward(a, b, w1, edge):
        return _lerp(a, b, w1)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, g):
        a, b, w1, edge = ctx.saved_tensors
        ga, gb, gw1 = _lerp_backward(g, a, b, w1, edge)
        return ga, gb, gw1.sum_to_size(w1.shape), None


def _lerp_backward(g, a, b, w1, edge):
    """The gradients of a query step (:class:`_QueryLerp`) to a, b and (unreduced) w1."""
    return g * (1 - w1), torch.where(edge, 0, g * w1), g * (b - a)


def _queries(x: torch.Tensor, rows: _Axis, cols: _Axis) -> Tuple[torch.Tensor, torch.Tensor]:
    """The (N, C, 2Ho, 2Wo) query values, and the (N, C, 2Ho, W) rows they interpolate:
    first along H at every column (v), then along W (q), as every backend computes them."""
    v = _QueryLerp.apply(x[:, :, rows.i0, :], x[:, :, rows.i1, :], rows.w1[:, None], rows.edge[:, None])
    q = _QueryLerp.apply(v[..., cols.i0], v[..., cols.i1], cols.w1, cols.edge)
    return q, v


def dynopool2d_at(x: torch.Tensor, h_hat: torch.Tensor, w_hat: torch.Tensor, out_size: Sequence[int]) -> torch.Tensor:
    """DynOPool forward for given (possibly real-valued) surrogate sizes Ĥ, Ŵ.

    The 2Ho×2Wo bilinear queries (border padding; :func:`_query_axis`, :func:`_lerp`),
    then ``max_pool2d(2)``: the first maximum of each 2×2 group in (0,0),(0,1),(1,0),(1,1)
    order wins ties, a NaN wins. ``h_hat``/``w_hat`` are 0-d tensors; gradients flow to
    them and to ``x``. Computes in :func:`compute_dtype`; returns that dtype.
    """
    cdt = compute_dtype(x.dtype)
    ho, wo = int(out_size[0]), int(out_size[1])
    rows = _query_axis(h_hat.to(cdt), ho, x.shape[-2])
    cols = _query_axis(w_hat.to(cdt), wo, x.shape[-1])
    q, _ = _queries(x.to(cdt), rows, cols)
    return F.max_pool2d(q, 2)


def dynopool2d(x: torch.Tensor, alpha: torch.Tensor, out_size: Sequence[int]) -> torch.Tensor:
    """Reference DynOPool (SEMANTICS.md, "DynOPool") with the straight-through size surrogate.

    Ĥ = Ho + hs − sg(hs), hs = H/α_h: its value is Ho and dĤ/dα_h = −H/α_h².
    Returns a tensor of ``x``'s dtype, contiguous in ``x``'s memory format.
    """
    h, w = x.shape[-2], x.shape[-1]
    ho, wo = int(out_size[0]), int(out_size[1])
    a = alpha.to(compute_dtype(alpha.dtype))
    hs = h / a[0]
    ws = w / a[1]
    h_hat = (hs - hs.detach()) + ho
    w_hat = (ws - ws.detach()) + wo
    out = dynopool2d_at(x, h_hat, w_hat, (ho, wo))
    return _in_format(out.to(x.dtype), output_memory_format(x))


def resize(x: torch.Tensor, size: Sequence[int], align_corners: bool, scale: Scale = None) -> torch.Tensor:
    """R of SEMANTICS.md, "resize_blend": bilinear resize of ``x`` to ``size`` with F.interpolate semantics.

    With ``scale`` = (sh, sw): ``interpolate(scale_factor=scale,
    recompute_scale_factor=False)`` then a crop of the top-left ``size`` window.
    An input already of ``size`` with no scale passes through unchanged.
    """
    ho, wo = int(size[0]), int(size[1])
    if scale is None:
        if x.shape[-2] == ho and x.shape[-1] == wo:
            return x
        return F.interpolate(x, size=(ho, wo), mode="bilinear", align_corners=align_corners)
    if not align_corners:
        # Only the kept window, never the whole up-scaled image (below).
        plan = _CropPlan(x.shape, (ho, wo), scale)
        y = _aten.upsample_bilinear2d(plan.input(x), list(plan.call_size), False, *plan.scale)
        return y[..., :ho, :wo]
    # align_corners=True maps output index d to d·(H−1)/(floor(H·s)−1): the full
    # size enters the map, which interpolate only takes as its output size.
    y = F.interpolate(
        x,
        scale_factor=(float(scale[0]), float(scale[1])),
        mode="bilinear",
        align_corners=align_corners,
        recompute_scale_factor=False,
    )
    return y[..., :ho, :wo]


class _CropPlan:
    """``interpolate(x, scale_factor=s, recompute_scale_factor=False)[..., :ho, :wo]``
    under align_corners=False, without computing what the crop throws away.

    There the source index of output d is (d + 0.5)/s − 0.5, which depends on s but
    not on the output size, so ``upsample_bilinear2d(x, (ho, wo), scales=s)`` gives
    the kept window directly, bit for bit, with one exception per axis: ATen copies
    an axis whose output size equals its input size (taps (d, d)). So an axis whose
    full size floor(H·s) equals H (copied by the full call) is sliced to its first
    ho pixels and copied, and an axis whose window ho equals H but whose full size
    does not (interpolated by the full call) asks for ho + 1 outputs, then crops.
    """

    def __init__(self, shape: Sequence[int], size: Sequence[int], scale: Tuple[float, float]):
        self.in_size = (int(shape[-2]), int(shape[-1]))
        keep, call = [], []
        for n_in, n_out, s in zip(self.in_size, size, scale):
            full = math.floor(n_in * float(s))
            if full == n_in:  # copied by interpolate: the first n_out pixels as they are
                keep.append(n_out)
                call.append(n_out)
            else:
                keep.append(n_in)
                call.append(n_out + 1 if n_out == n_in else n_out)
        self.keep, self.call_size = tuple(keep), tuple(call)
        self.scale = (float(scale[0]), float(scale[1]))

    def input(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., : self.keep[0], : self.keep[1]]

    def backward(self, g: torch.Tensor, in_shape: Sequence[int]) -> torch.Tensor:
        """The gradient to x of the window, given its gradient g (ho × wo)."""
        g = F.pad(g, (0, self.call_size[1] - g.shape[-1], 0, self.call_size[0] - g.shape[-2]))
        kept = list(in_shape[:2]) + list(self.keep)
        gx = _aten.upsample_bilinear2d_backward(g, list(self.call_size), kept, False, *self.scale)
        return F.pad(gx, (0, self.in_size[1] - self.keep[1], 0, self.in_size[0] - self.keep[0]))


def resize_blend(
    x1: torch.Tensor,
    x2: torch.Tensor,
    w1: Union[torch.Tensor, float],
    w2: Union[torch.Tensor, float],
    size: Sequence[int],
    align_corners: bool = True,
    scales: Optional[Tuple[Scale, Scale]] = None,
) -> torch.Tensor:
    """Reference ``w1·R(x1) + w2·R(x2)`` (SEMANTICS.md, "resize_blend"), computed in float32 for half types."""
    return blend(resize, x1, x2, w1, w2, size, align_corners, scales)


def blend(resize_fn, x1, x2, w1, w2, size, align_corners, scales) -> torch.Tensor:
    """``w1·R(x1) + w2·R(x2)`` with ``R = resize_fn`` (:func:`resize`'s signature), in the
    compute dtype, in the ops' output format: the reference, and the ONNX decomposition."""
    s1, s2 = (None, None) if scales is None else scales
    cdt = compute_dtype(x1.dtype)
    r1 = resize_fn(x1.to(cdt), size, align_corners, s1)
    r2 = resize_fn(x2.to(cdt), size, align_corners, s2)
    if isinstance(w1, torch.Tensor):
        w1 = w1.to(cdt)
    if isinstance(w2, torch.Tensor):
        w2 = w2.to(cdt)
    out = w1 * r1 + w2 * r2
    return _in_format(out.to(x1.dtype), output_memory_format(x1, x2))


def shape_adaptor_maxpool(
    x: torch.Tensor,
    w1: Union[torch.Tensor, float],
    w2: Union[torch.Tensor, float],
    size: Sequence[int],
    align_corners: bool = True,
) -> torch.Tensor:
    """Reference shape_adaptor_maxpool ``w1·R(maxpool2x2(x)) + w2·R(x)`` (the VGG cell of Shape Adaptor Fig. 2).

    Defined in docs/SEMANTICS.md, "shape_adaptor_maxpool".

    Exactly the composition ``resize_blend(max_pool2d(x, 2), x, w1, w2, size,
    align_corners)``: the max is exact in every dtype, so pooling before the
    float32 cast of half types changes nothing.
    """
    return resize_blend(F.max_pool2d(x, 2), x, w1, w2, size, align_corners)


# --------------------------------------------------------------------------
# Backward passes, written by hand from the forward's pieces and ATen's own
# backward kernels.
#
# The public ops' backward (``resizeops::_dynopool2d_backward`` and
# ``resizeops::_resize_blend_backward``) run below autograd, where the autograd
# engine cannot be used, so the reference backend chains the backward kernels of
# max_pool2d and interpolate and the query steps' gradients by hand. The tests
# check these against torch.autograd through the forward functions above.
# --------------------------------------------------------------------------

def dynopool2d_backward(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    alpha: torch.Tensor,
    out_size: Sequence[int],
    need_x: bool = True,
    need_alpha: bool = True,
) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Gradients of :func:`dynopool2d` to ``x`` and ``alpha`` (None where not needed).

    The forward's queries again, max_pool2d's backward to the winners, then each query
    step's backward (:func:`_lerp_backward`) by hand: along W to the rows v, along H to
    x. grad_alpha_h = Σ_j dL/dw1_j · du_j/dĤ · dĤ/dα_h with du_j/dĤ = −(2j+1)·H/(4Ĥ²)
    where u_j is not clipped (0 elsewhere) and dĤ/dα_h = −H/α_h² (the straight-through
    surrogate, DynOPool Eq. 3–4).
    """
    h, w = x.shape[-2], x.shape[-1]
    ho, wo = int(out_size[0]), int(out_size[1])
    cdt = compute_dtype(x.dtype)
    xc = x.to(cdt)
    # Ĥ's value is Ho exactly (the surrogate's straight-through part is zero).
    h_hat, w_hat = (torch.tensor(float(v), dtype=cdt, device=x.device) for v in (ho, wo))
    rows, cols = _query_axis(h_hat, ho, h), _query_axis(w_hat, wo, w)
    q, v = _queries(xc, rows, cols)
    _, idx = F.max_pool2d(q, 2, return_indices=True)
    grad_q = _aten.max_pool2d_with_indices_backward(grad_out.to(cdt), q, [2, 2], [2, 2], [0, 0], [1, 1], False, idx)
    # Along W: the query columns' taps into the rows v.
    g_left, g_right, g_cols = _lerp_backward(grad_q, v[..., cols.i0], v[..., cols.i1], cols.w1, cols.edge)
    grad_v = torch.zeros_like(v).index_add_(3, cols.i0, g_left).index_add_(3, cols.i1, g_right)
    top, bot = xc[:, :, rows.i0, :], xc[:, :, rows.i1, :]
    gx = ga = None
    if need_x:
        g_top, g_bot, _ = _lerp_backward(grad_v, top, bot, rows.w1[:, None], rows.edge[:, None])
        grad_x = torch.zeros_like(xc).index_add_(2, rows.i0, g_top).index_add_(2, rows.i1, g_bot)
        gx = _in_format(grad_x.to(x.dtype), output_memory_format(x))
    if need_alpha:
        dl_dw1_rows = (grad_v * (bot - top)).sum(dim=(0, 1, 3))  # (2Ho,)
        dl_dw1_cols = g_cols.sum(dim=(0, 1, 2))  # (2Wo,)
        size_grads = []
        for dl_dw1, axis, n_in, n_hat in ((dl_dw1_rows, rows, h, h_hat), (dl_dw1_cols, cols, w, w_hat)):
            j = torch.arange(dl_dw1.numel(), dtype=cdt, device=x.device)
            du = torch.where(axis.inside, -(2 * j + 1) * n_in / (4 * n_hat * n_hat), 0)
            size_grads.append((dl_dw1 * du).sum())
        ga = alpha_grad_from_size_grad(torch.stack(size_grads), alpha, (h, w))
    return gx, ga


def alpha_grad_from_size_grad(grad_size: torch.Tensor, alpha: torch.Tensor, in_size: Sequence[int]) -> torch.Tensor:
    """dL/dα from dL/d(Ĥ, Ŵ): times dĤ/dα_h = −H/α_h² (the straight-through surrogate; SEMANTICS.md, "DynOPool").

    Every backend's kernels return the size gradient; this chain rule is shared.
    Computed in alpha's compute dtype, returned in alpha's dtype.
    """
    a = alpha.to(compute_dtype(alpha.dtype))
    scale = torch.stack([-int(in_size[0]) / (a[0] * a[0]), -int(in_size[1]) / (a[1] * a[1])])
    return (grad_size.to(a.dtype) * scale).to(alpha.dtype)


def _resize_backward(g: torch.Tensor, in_shape: Sequence[int], size: Sequence[int], align_corners: bool, scale: Scale):
    """Gradient of :func:`resize` to its input, given ``g`` = dL/dR(x) (compute dtype)."""
    ho, wo = int(size[0]), int(size[1])
    h, w = int(in_shape[2]), int(in_shape[3])
    if scale is None:
        if h == ho and w == wo:
            return g
        return _aten.upsample_bilinear2d_backward(g, [ho, wo], list(in_shape), align_corners, None, None)
    if not align_corners:
        return _CropPlan(in_shape, size, scale).backward(g, in_shape)
    sh, sw = float(scale[0]), float(scale[1])
    full_h, full_w = math.floor(h * sh), math.floor(w * sw)
    # The crop's backward: zeros outside the kept top-left window.
    g_full = F.pad(g, (0, full_w - wo, 0, full_h - ho))
    return _aten.upsample_bilinear2d_backward(g_full, [full_h, full_w], list(in_shape), align_corners, sh, sw)


def resize_blend_backward(
    grad_out: torch.Tensor,
    x1: torch.Tensor,
    x2: torch.Tensor,
    w1: torch.Tensor,
    w2: torch.Tensor,
    size: Sequence[int],
    align_corners: bool = True,
    scales: Optional[Tuple[Scale, Scale]] = None,
    mask: Sequence[bool] = (True, True, True, True),
):
    """Gradients of :func:`resize_blend` to (x1, x2, w1, w2); None where ``mask`` is False.

    dL/dx_k = R_kᵀ(w_k·g) and dL/dw_k = Σ g·R_k(x_k) (SEMANTICS.md, "resize_blend").
    """
    s1, s2 = (None, None) if scales is None else scales
    cdt = compute_dtype(x1.dtype)
    g = grad_out.to(cdt)
    grads = [None, None, None, None]
    for k, (xk, wk, sk) in enumerate(((x1, w1, s1), (x2, w2, s2))):
        if mask[k]:
            gk = _resize_backward(g * wk.to(cdt), xk.shape, size, align_corners, sk)
            grads[k] = _in_format(gk.to(xk.dtype), output_memory_format(xk))
        if mask[2 + k]:
            rk = resize(xk.to(cdt), size, align_corners, sk)
            grads[2 + k] = (g * rk).sum().to(wk.dtype)
    return tuple(grads)


def shape_adaptor_maxpool_backward(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    w1: torch.Tensor,
    w2: torch.Tensor,
    size: Sequence[int],
    align_corners: bool = True,
    mask: Sequence[bool] = (True, True, True),
):
    """Gradients of :func:`shape_adaptor_maxpool` to (x, w1, w2); None where ``mask`` is False.

    dL/dx = w2·R₂ᵀ(g) + maxpoolᵀ(w1·R₁ᵀ(g)) (the pooled branch's gradient goes to
    the first maximum of each 2×2 window, as max_pool2d's backward sends it),
    summed in the compute dtype and rounded once.
    """
    cdt = compute_dtype(x.dtype)
    xc = x.to(cdt)
    pooled, idx = F.max_pool2d(xc, 2, return_indices=True)
    need_x = bool(mask[0])
    g1, g2, gw1, gw2 = resize_blend_backward(
        grad_out, pooled, xc, w1, w2, size, align_corners, None, (need_x, need_x, bool(mask[1]), bool(mask[2]))
    )
    gx = None
    if need_x:
        gx = g2 + _aten.max_pool2d_with_indices_backward(g1, xc, [2, 2], [2, 2], [0, 0], [1, 1], False, idx)
        gx = _in_format(gx.to(x.dtype), output_memory_format(x))
    return gx, gw1, gw2
