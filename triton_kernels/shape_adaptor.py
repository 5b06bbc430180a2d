"""Triton kernels of shape_adaptor_maxpool (docs/SEMANTICS.md): ``out = w1·R(maxpool2x2(x)) + w2·R(x)`` in one op.

The resize_blend kernels (blend.py) with x as both inputs, the first one
max-pooled where it is read; the pooled map (⌊H/2⌋ × ⌊W/2⌋) is never written.

- Tables: blend's axis-tables kernel, with the pooled map as input 1 and x as
  input 2 (so R₁ passes through when the pooled map is already of ``size``, R₂
  when x is).
- Forward: blend's forward kernel with ``POOL1``: each of R₁'s 4 taps is the max
  of its 2×2 window of x, with max_pool2d's rules (NaN propagates). 16 + 4 reads
  of x per output; neighbouring outputs share windows, so most hit the cache.
- Backward: one gather over x's pixels, deterministic (no atomics), in grad_x's
  memory order:
  grad_x[h, w] = w2·R₂ᵀ(g)[h, w] + w1·R₁ᵀ(g)[h/2, w/2] where (h, w) is the
  argmax of its window (inside the pooled area), as max_pool2d's backward sends
  it. The argmax is recomputed from x (4 reads; the forward saves nothing).
  R₁ᵀ(g) of a pooled pixel is gathered only by the lane of its argmax (the other
  3 lanes are masked), so each pooled pixel is gathered once.
  grad_w1 = <R₁ᵀ(g), pooled> (at the argmax lanes: each pooled pixel once) and
  grad_w2 = <R₂ᵀ(g), x> ride on the same gathers, as the C++ CPU kernels compute
  them: per-program partials in the accumulation dtype, summed in float64 in a
  fixed order. Entries whose Rᵀ(g) is exactly 0 (pixels no output reads with a
  non-zero weight, e.g. the row an odd H leaves out of the pool) are skipped, so
  an inf / NaN there does not reach the sums. (The reference, Σ g·R(x), does see
  a NaN read with weight exactly 0: the one case where the two differ.)

These functions take already validated arguments; the dispatcher adapter is
``resizeops/core/_triton_backend.py``.
"""

from __future__ import annotations

from typing import Sequence

import torch
import triton
import triton.language as tl

from .blend import (
    GATHER_BLOCK,
    NUM_WARPS,
    _forward,
    _gather,
    _index64,
    _Plan,
    _program_offsets,
    _ranges,
    _tables,
    _window_max,
)
from .dynopool import _acc_dtype, _format, _on_device, _output_index, _tl_acc

__all__ = ["shape_adaptor_maxpool_forward", "shape_adaptor_maxpool_backward"]


@triton.jit
def _shape_adaptor_backward_kernel(
    g_ptr,  # grad_out, (N, C, Ho, Wo) by strides
    x_ptr,  # input, (N, C, H, W) by strides
    w1_ptr, w2_ptr,  # 0-d weights of the pooled and of the full-resolution branch
    gx_ptr,  # grad_x, dense in x's memory format (flat index = offs); unused unless NEED_X
    partial_ptr,  # ACC (programs, 2): per-program Σ R₁ᵀ(g)·pooled, Σ R₂ᵀ(g)·x
    taps_ptr, lam_ptr, T,
    rows1_ptr, cols1_ptr,  # int32 (2, Hp), (2, Wp): R₁'s gather ranges (unused with PASS1)
    rows2_ptr, cols2_ptr,  # int32 (2, H), (2, W): R₂'s
    total, C, H, W, Hp, Wp, Ho, Wo,
    KH1, KW1, KH2, KW2,  # fan-in bounds of the 4 axes (gather trip counts)
    sgn, sgc, sgh, sgw,
    sxn, sxc, sxh, sxw,
    NEED_X: tl.constexpr, NEED_W1: tl.constexpr, NEED_W2: tl.constexpr,
    GATHER1: tl.constexpr, GATHER2: tl.constexpr,  # R₁ᵀ(g) / R₂ᵀ(g) needed: NEED_X or NEED_W1 / NEED_W2
    PASS1: tl.constexpr, PASS2: tl.constexpr,
    CHANNELS_LAST: tl.constexpr, ACC: tl.constexpr, INDEX64: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    """grad_x and the grad_w partials of one block of x's pixels (see the module docstring)."""
    pid, offs = _program_offsets(BLOCK, INDEX64)
    mask = offs < total
    n, c, h, w = _output_index(offs, C, H, W, CHANNELS_LAST)
    gbase = g_ptr + n * sgn + c * sgc
    xbase = x_ptr + n * sxn + c * sxc
    if GATHER2:
        a2 = _gather(
            gbase, h, w, mask, taps_ptr, lam_ptr, T, Ho + Wo, 2 * Ho + Wo, rows2_ptr, cols2_ptr, H, W, KH2, KW2,
            sgh, sgw, PASS2, ACC, INDEX64, BLOCK,
        )  # fmt: skip
    if GATHER1:
        ph = h // 2
        pw = w // 2
        # An odd H or W leaves its last row / column out of the pool.
        inside = mask & (ph < Hp) & (pw < Wp)
        pooled, k = _window_max(xbase + (2 * ph) * sxh + (2 * pw) * sxw, sxh, sxw, inside, ACC)
        is_arg = inside & (k == 2 * (h % 2) + (w % 2))
        a1 = _gather(
            gbase, ph, pw, is_arg, taps_ptr, lam_ptr, T, 0, Ho, rows1_ptr, cols1_ptr, Hp, Wp, KH1, KW1,
            sgh, sgw, PASS1, ACC, INDEX64, BLOCK,
        )  # fmt: skip
    if NEED_X:
        w1 = tl.load(w1_ptr).to(ACC)
        w2 = tl.load(w2_ptr).to(ACC)
        v = w2 * a2 + tl.where(is_arg, w1 * a1, 0.0)
        tl.store(gx_ptr + offs, v.to(gx_ptr.dtype.element_ty), mask=mask)
    if NEED_W1:
        t1 = tl.where(is_arg & (a1 != 0.0), a1 * pooled, 0.0)
        tl.store(partial_ptr + 2 * pid, tl.sum(t1, axis=0))
    if NEED_W2:
        xv = tl.load(xbase + h * sxh + w * sxw, mask=mask, other=0.0).to(ACC)
        t2 = tl.where(mask & (a2 != 0.0), a2 * xv, 0.0)
        tl.store(partial_ptr + 2 * pid + 1, tl.sum(t2, axis=0))


def _plan(x: torch.Tensor, size: Sequence[int], align_corners: bool) -> _Plan:
    h, w = int(x.shape[2]), int(x.shape[3])
    return _Plan(((h // 2, w // 2), (h, w)), size, align_corners, None)


def shape_adaptor_maxpool_forward(
    x: torch.Tensor,
    w1: torch.Tensor,
    w2: torch.Tensor,
    size: Sequence[int],
    align_corners: bool,
    channels_last: bool,
    *,
    force_int64: bool = False,
) -> torch.Tensor:
    """w1·R(max_pool2d(x, 2)) + w2·R(x): (N, C, Ho, Wo) of x's dtype, channels_last iff ``channels_last``.

    ``x``: (N, C, H, W) with H, W ≥ 2, any strides. ``w1``, ``w2``: 0-d tensors on
    x's device (any floating dtype).
    """
    return _forward(_plan(x, size, align_corners), x, x, w1, w2, channels_last, pool1=True, force_int64=force_int64)


def shape_adaptor_maxpool_backward(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    w1: torch.Tensor,
    w2: torch.Tensor,
    size: Sequence[int],
    align_corners: bool,
    mask: Sequence[bool],
    channels_last: bool,
    *,
    force_int64: bool = False,
):
    """(grad_x, grad_w1, grad_w2), None where ``mask`` is False. Deterministic.

    grad_x: x's dtype and shape, contiguous in the format ``channels_last`` names
    (which is also the order the grad_w partials walk x in). grad_wk: 0-d, wk's
    dtype. ``grad_out``: (N, C, Ho, Wo), any strides.
    """
    need_x, need_w1, need_w2 = (bool(m) for m in mask)
    grads: list = [None, None, None]
    if not (need_x or need_w1 or need_w2):
        return tuple(grads)
    plan = _plan(x, size, align_corners)
    c = x.shape[1]
    acc = _acc_dtype(x.dtype)
    gather = (need_x or need_w1, need_x or need_w2)
    total = x.numel()
    programs = triton.cdiv(total, GATHER_BLOCK)
    partials = torch.zeros((max(programs, 1), 2), dtype=acc, device=x.device)
    # grad_x's buffer only when asked for (the kernel does not touch a stand-in).
    gx = torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=_format(channels_last)) if need_x else None
    with _on_device(x):
        if programs > 0:
            taps, lam = _tables(plan, acc, x.device)
            # Per branch k: R_kᵀ's [lo, hi) ranges and fan-in bounds (unused where
            # the branch passes through or is not gathered: stand-ins of the right kind).
            ranges, fans = [], []
            for k in (0, 1):
                ah, aw = plan.axes[2 * k], plan.axes[2 * k + 1]
                if gather[k] and not plan.passes[k]:
                    ranges += [_ranges(taps, plan.bases[2 * k], plan.ho, ah.in_size),
                               _ranges(taps, plan.bases[2 * k + 1], plan.wo, aw.in_size)]  # fmt: skip
                    fans += [ah.fan_in(), aw.fan_in()]
                else:
                    ranges += [taps, taps]
                    fans += [1, 1]
            _shape_adaptor_backward_kernel[(programs,)](
                grad_out, x, w1, w2, partials if gx is None else gx, partials, taps, lam, plan.T, *ranges,
                total, c, plan.axes[2].in_size, plan.axes[3].in_size, plan.axes[0].in_size, plan.axes[1].in_size,
                plan.ho, plan.wo, *fans, *grad_out.stride(), *x.stride(),
                NEED_X=need_x, NEED_W1=need_w1, NEED_W2=need_w2, GATHER1=gather[0], GATHER2=gather[1],
                PASS1=plan.passes[0], PASS2=plan.passes[1], CHANNELS_LAST=bool(channels_last),
                ACC=_tl_acc(x.dtype), INDEX64=_index64(force_int64, grad_out, x), BLOCK=GATHER_BLOCK, num_warps=NUM_WARPS,
            )  # fmt: skip
    if need_x:
        grads[0] = gx
    if need_w1 or need_w2:
        # A fixed-order float64 sum of the per-program partials: deterministic.
        sums = partials.to(torch.float64).sum(dim=0)
        # copy=True: two views of one buffer may not be returned by a custom op.
        if need_w1:
            grads[1] = sums[0].to(w1.dtype, copy=True)
        if need_w2:
            grads[2] = sums[1].to(w2.dtype, copy=True)
    return tuple(grads)
