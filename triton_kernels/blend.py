"""Triton kernels of resize_blend (docs/SEMANTICS.md, resize_blend).

``out = w1·R1(x1) + w2·R2(x2)``, R_k the bilinear resize of input k to ``size``
with ``F.interpolate`` semantics (antialias=False), optionally with a fixed scale
and a crop of the top-left window (ELASTIC), or a pass-through when input k is
already of ``size`` with no scale (Shape Adaptor's full-resolution branch).

- Axis tables: one tiny launch per call computes, for each input k and each axis,
  per output index, the two taps i0, i1 (int32) and the weight λ1 of i1 (the
  accumulation dtype), with exactly ATen's arithmetic (see ``_axis_table``).
  Everything else reads them, so the 4 per-axis source maps are computed once.
- Forward: one program per block of output elements, flattened in the output's
  memory order (NCHW, or channels_last when either input is), so stores are
  contiguous. x1 and x2 are read through their strides (any layout, no copy);
  w1, w2 are read from their 0-d tensors on the device (no host sync). Half
  types are computed in float32 and rounded once on store.
- Backward, deterministic throughout (no atomics):
  grad_xk = R_kᵀ(w_k·g) is a gather: one program per block of grad_xk elements,
  each summing, in a fixed order, over the output rows and columns whose taps
  include its pixel. Those form contiguous ranges (the taps are monotone in the
  output index), found with ``torch.searchsorted`` on the tables (on the device);
  their length is bounded on the host from the ratio. grad_wk = Σ g·R_k(x_k) is
  reduced per program into a (programs, 2) buffer summed in float64 in a fixed
  order. Only the gradients the mask asks for are computed.
- shape_adaptor_maxpool (shape_adaptor.py) reuses these kernels with x as both
  inputs: ``POOL1`` makes each of R1's taps the max of a 2×2 window of x1
  (``_window_max``), and its backward calls ``_gather`` for both branches.

The per-axis arithmetic mirrors csrc/include/resizeops/math.h (``interp_ratio``,
``interp_source_coord_from_ratio``, ``bilinear_taps``), plus the two details of
ATen's ``compute_source_index_and_lambda`` that math.h leaves out and that the
reference (F.interpolate on the CPU) shows:

- an axis whose full interpolate size equals its input size is copied (taps
  (j, j), λ1 = 0), whatever the ratio: ``interpolate(x, scale_factor=1.1)`` on an
  axis of 7 gives 7 outputs equal to the input, and a NaN does not leak into the
  neighbouring output through a zero weight;
- ``i0 = floorf(src)``: the source coordinate is rounded to float32 before the
  floor even for float64 (ATen calls ``floorf``), and λ1 = src − i0 is clamped
  to [0, 1].

These functions take already validated arguments; the dispatcher adapter is
``resizeops/core/_triton_backend.py``.
"""

from __future__ import annotations

import math
import struct
from typing import List, Optional, Sequence, Tuple

import torch
import triton
import triton.language as tl

from .dynopool import (
    _acc_dtype,
    _format,
    _max4_first,
    _on_device,
    _output_index,
    _program_offsets,
    _tl_acc,
)

__all__ = ["resize_blend_forward", "resize_blend_backward"]

#: Output elements per program of the forward and of the grad_w reduction (8 taps each).
FORWARD_BLOCK = 512
#: grad_x elements per program of the gather (a loop over their fan-in each).
GATHER_BLOCK = 256
#: Output indices per program of the axis-tables kernel.
TABLE_BLOCK = 128
NUM_WARPS = 4

# Axis modes of the tables kernel.
MODE_COPY = 0  # full interpolate size == input size: taps (j, j), λ1 = 0 (ATen's copy)
MODE_ALIGN = 1  # align_corners=True: ratio (in − 1)/(full − 1), 0 when full ≤ 1
MODE_SCALE = 2  # align_corners=False with a scale: ratio = ACC(1.0/scale) (double reciprocal)
MODE_SIZE = 3  # align_corners=False without a scale: ratio = ACC(in)/ACC(out)

#: 32-bit index arithmetic when every offset stays below this (a block's worth of margin).
_INT32_LIMIT = 2**31 - 2**16


# =============================================================================
# Per-axis math (mirrors csrc/include/resizeops/math.h and ATen's UpSample.h)
# =============================================================================


@triton.jit
def _div(a, b, ACC: tl.constexpr):
    """IEEE round-to-nearest a / b (Triton's float32 `/` is approximate on the GPU)."""
    if ACC == tl.float32:
        q = tl.math.div_rn(a, b)
    else:
        q = a / b  # float64 `/` is IEEE
    return q


@triton.jit
def _pick4(a, v0, v1, v2, v3):
    """v_a for a in 0..3 (per-axis scalars of the tables kernel)."""
    return tl.where(a == 0, v0, tl.where(a == 1, v1, tl.where(a == 2, v2, v3)))


@triton.jit
def _axis_tables_kernel(
    taps_ptr,  # int32 (2, T): row 0 = i0, row 1 = i1, T = 2·(Ho + Wo)
    lam_ptr,  # ACC (T,): λ1, the weight of i1 (λ0 = 1 − λ1)
    T,
    Ho,
    Wo,
    # per axis a = 0..3: (x1, H), (x1, W), (x2, H), (x2, W)
    in0, in1, in2, in3,  # input size along the axis
    full0, full1, full2, full3,  # full interpolate output size (before the crop)
    mode0, mode1, mode2, mode3,  # MODE_*
    bits0, bits1, bits2, bits3,  # the float64 bits of 1.0/scale (MODE_SCALE), else 0
    ACC: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Taps and weights of the 4 axes; grid (cdiv(max(Ho, Wo), BLOCK), 4).

    Per output index j < out (Ho or Wo, the cropped size), as ATen's
    compute_source_index_and_lambda with math.h's interp_ratio and
    interp_source_coord_from_ratio:
      ratio: (in−1)/(full−1) | ACC(1.0/scale) | ACC(in)/ACC(out), in ACC
      src  = ratio·j (align_corners) or max(ratio·(j + 0.5) − 0.5, 0)
      i0   = min(floorf(src), in − 1), i1 = i0 + (i0 < in − 1), λ1 = clamp(src − i0, 0, 1)
    and the copy (j, j, λ1 = 0) when full == in.
    """
    a = tl.program_id(1)
    j = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    is_w = (a % 2) == 1
    out = tl.where(is_w, Wo, Ho)
    base = (a // 2) * (Ho + Wo) + tl.where(is_w, Ho, 0)
    in_size = _pick4(a, in0, in1, in2, in3)
    full = _pick4(a, full0, full1, full2, full3)
    mode = _pick4(a, mode0, mode1, mode2, mode3)
    zi = tl.zeros([BLOCK], tl.int64)
    # Scalars are promoted through tensors: Triton may specialise an argument to a constexpr.
    bits = _pick4(a, zi + bits0, zi + bits1, zi + bits2, zi + bits3)
    m = j < out

    zero = tl.zeros([BLOCK], ACC)
    in_f = zero + in_size
    full_f = zero + full
    # Every candidate ratio, then a select (no scalar branches): full − 1 may be 0.
    r_align = tl.where(full > 1, _div(in_f - 1.0, tl.maximum(full_f - 1.0, 1.0), ACC), 0.0)
    # The reciprocal was taken in float64 on the host (as ATen does), rounded to ACC here.
    r_scale = bits.to(tl.float64, bitcast=True).to(ACC)
    r_size = _div(in_f, full_f, ACC)
    ratio = tl.where(mode == 1, r_align, tl.where(mode == 2, r_scale, r_size))
    jf = j.to(ACC)
    src_ac = ratio * jf
    src_hp = ratio * (jf + 0.5) - 0.5
    src_hp = tl.where(src_hp < 0.0, 0.0, src_hp)
    src = tl.where(mode == 1, src_ac, src_hp)
    # ATen's guard_index_and_lambda: floorf (float32) even for double, then clamps.
    i0 = tl.minimum(tl.floor(src.to(tl.float32)).to(tl.int32), in_size - 1)
    i0 = tl.maximum(i0, 0)
    lam = tl.minimum(tl.maximum(src - i0.to(ACC), 0.0), 1.0)
    i1 = tl.where(i0 < in_size - 1, i0 + 1, i0)
    copy = mode == 0
    i0 = tl.where(copy, j, i0)
    i1 = tl.where(copy, j, i1)
    lam = tl.where(copy, 0.0, lam)
    tl.store(taps_ptr + base + j, i0, mask=m)
    tl.store(taps_ptr + T + base + j, i1, mask=m)
    tl.store(lam_ptr + base + j, lam, mask=m)


@triton.jit
def _window_max(ptr, sh, sw, mask, ACC: tl.constexpr):
    """max_pool2d(x, 2) at one pooled pixel: (max, k) of the 2×2 window whose top-left is ``ptr``.

    k = 2·dy + dx is the position of the maximum that max_pool2d's backward sends
    the gradient to: a later element replaces the maximum only if strictly
    greater or NaN (dynopool's ``_max4_first``), so ties go to the first maximum in
    (0,0),(0,1),(1,0),(1,1) order and a NaN wins. The max is exact in ACC.
    """
    v00 = tl.load(ptr, mask=mask, other=0.0).to(ACC)
    v01 = tl.load(ptr + sw, mask=mask, other=0.0).to(ACC)
    v10 = tl.load(ptr + sh, mask=mask, other=0.0).to(ACC)
    v11 = tl.load(ptr + sh + sw, mask=mask, other=0.0).to(ACC)
    return _max4_first(v00, v01, v10, v11)


@triton.jit
def _tap(base, r, c, sh, sw, mask, POOL: tl.constexpr, ACC: tl.constexpr):
    """Pixel (r, c) of the resampled map in ACC: x's, or with POOL max_pool2d(x, 2)'s, read in place."""
    if POOL:
        v, _ = _window_max(base + (2 * r) * sh + (2 * c) * sw, sh, sw, mask, ACC)
    else:
        v = tl.load(base + r * sh + c * sw, mask=mask, other=0.0).to(ACC)
    return v


@triton.jit
def _resample(
    x_ptr, n, c, i, j, sn, sc, sh, sw,
    taps_ptr, lam_ptr, T, row_base, col_base, mask,
    PASS: tl.constexpr, POOL: tl.constexpr, ACC: tl.constexpr, INDEX64: tl.constexpr,
):  # fmt: skip
    """R(x)[n, c, i, j] in ACC: a direct read (pass-through) or 4 taps.

    With POOL the map resampled is max_pool2d(x, 2) (its size is the tables'
    input size): each tap is the max of its 2×2 window of x, so the pooled map is
    never materialised (shape_adaptor_maxpool).

    The bilinear value is ATen's separable form and order,
    λr0·(λc0·x00 + λc1·x01) + λr1·(λc0·x10 + λc1·x11): every tap is multiplied,
    weight 0 included, so NaN / inf propagate like F.interpolate.
    """
    base = x_ptr + n * sn + c * sc
    if PASS:
        v = _tap(base, i, j, sh, sw, mask, POOL, ACC)
    else:
        r0 = tl.load(taps_ptr + row_base + i, mask=mask, other=0)
        r1 = tl.load(taps_ptr + T + row_base + i, mask=mask, other=0)
        lr1 = tl.load(lam_ptr + row_base + i, mask=mask, other=0.0)
        c0 = tl.load(taps_ptr + col_base + j, mask=mask, other=0)
        c1 = tl.load(taps_ptr + T + col_base + j, mask=mask, other=0)
        lc1 = tl.load(lam_ptr + col_base + j, mask=mask, other=0.0)
        if INDEX64:
            r0 = r0.to(tl.int64)
            r1 = r1.to(tl.int64)
            c0 = c0.to(tl.int64)
            c1 = c1.to(tl.int64)
        x00 = _tap(base, r0, c0, sh, sw, mask, POOL, ACC)
        x01 = _tap(base, r0, c1, sh, sw, mask, POOL, ACC)
        x10 = _tap(base, r1, c0, sh, sw, mask, POOL, ACC)
        x11 = _tap(base, r1, c1, sh, sw, mask, POOL, ACC)
        lr0 = 1.0 - lr1
        lc0 = 1.0 - lc1
        v = lr0 * (lc0 * x00 + lc1 * x01) + lr1 * (lc0 * x10 + lc1 * x11)
    return v


# =============================================================================
# Kernels
# =============================================================================


@triton.jit
def _blend_forward_kernel(
    x1_ptr, x2_ptr, w1_ptr, w2_ptr, out_ptr,
    taps_ptr, lam_ptr, T,
    total, C, Ho, Wo,
    s1n, s1c, s1h, s1w,
    s2n, s2c, s2h, s2w,
    PASS1: tl.constexpr, PASS2: tl.constexpr, POOL1: tl.constexpr,
    CHANNELS_LAST: tl.constexpr, ACC: tl.constexpr, INDEX64: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    """out = w1·R1(x1) + w2·R2(x2); ``out`` is dense, flat index = offs in its memory order.

    POOL1: R1 resamples max_pool2d(x1, 2) (shape_adaptor_maxpool, where x1 = x2 = x).
    """
    _, offs = _program_offsets(BLOCK, INDEX64)
    mask = offs < total
    n, c, i, j = _output_index(offs, C, Ho, Wo, CHANNELS_LAST)
    w1 = tl.load(w1_ptr).to(ACC)  # the reference's w.to(compute dtype)
    w2 = tl.load(w2_ptr).to(ACC)
    r1 = _resample(
        x1_ptr, n, c, i, j, s1n, s1c, s1h, s1w, taps_ptr, lam_ptr, T, 0, Ho, mask, PASS1, POOL1, ACC, INDEX64
    )
    r2 = _resample(
        x2_ptr, n, c, i, j, s2n, s2c, s2h, s2w, taps_ptr, lam_ptr, T, Ho + Wo, 2 * Ho + Wo, mask, PASS2, False, ACC,
        INDEX64,
    )  # fmt: skip
    v = w1 * r1 + w2 * r2
    tl.store(out_ptr + offs, v.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _blend_grad_w_kernel(
    g_ptr, x1_ptr, x2_ptr, partial_ptr,
    taps_ptr, lam_ptr, T,
    total, C, Ho, Wo,
    sgn, sgc, sgh, sgw,
    s1n, s1c, s1h, s1w,
    s2n, s2c, s2h, s2w,
    NEED1: tl.constexpr, NEED2: tl.constexpr, PASS1: tl.constexpr, PASS2: tl.constexpr,
    CHANNELS_LAST: tl.constexpr, ACC: tl.constexpr, INDEX64: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    """Per-program partial sums of g·R1(x1) and g·R2(x2) into partial[pid, 0:2]."""
    pid, offs = _program_offsets(BLOCK, INDEX64)
    mask = offs < total
    n, c, i, j = _output_index(offs, C, Ho, Wo, CHANNELS_LAST)
    g = tl.load(g_ptr + n * sgn + c * sgc + i * sgh + j * sgw, mask=mask, other=0.0).to(ACC)
    if NEED1:
        r1 = _resample(
            x1_ptr, n, c, i, j, s1n, s1c, s1h, s1w, taps_ptr, lam_ptr, T, 0, Ho, mask, PASS1, False, ACC, INDEX64
        )
        tl.store(partial_ptr + 2 * pid, tl.sum(tl.where(mask, g * r1, 0.0), axis=0))
    if NEED2:
        r2 = _resample(
            x2_ptr, n, c, i, j, s2n, s2c, s2h, s2w, taps_ptr, lam_ptr, T, Ho + Wo, 2 * Ho + Wo, mask, PASS2, False,
            ACC, INDEX64,
        )  # fmt: skip
        tl.store(partial_ptr + 2 * pid + 1, tl.sum(tl.where(mask, g * r2, 0.0), axis=0))


@triton.jit
def _axis_weight(taps_ptr, lam_ptr, T, base, o, p, valid):
    """Weight of input index p in output o's taps: λ0·[i0 == p] + λ1·[i1 == p] (both at the last pixel)."""
    t0 = tl.load(taps_ptr + base + o, mask=valid, other=-1)
    t1 = tl.load(taps_ptr + T + base + o, mask=valid, other=-1)
    l1 = tl.load(lam_ptr + base + o, mask=valid, other=0.0)
    return tl.where(t0 == p, 1.0 - l1, 0.0) + tl.where(t1 == p, l1, 0.0)


@triton.jit
def _gather(
    gbase, h, w, mask,
    taps_ptr, lam_ptr, T, row_base, col_base,
    rows_ptr, cols_ptr,  # int32 (2, H), (2, W): [lo, hi) of the outputs whose taps include each index
    H, W, KH, KW, sgh, sgw,
    PASS: tl.constexpr, ACC: tl.constexpr, INDEX64: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    """Rᵀ(g)[n, c, h, w] = Σ_i λr_i(h) Σ_j λc_j(w) g[n, c, i, j] in ACC, a gather in a fixed order.

    ``gbase`` points at g[n, c]; (h, w) index R's input (H × W). KH, KW bound the
    fan-in of one input row / column (the loop trip counts; masked beyond hi).
    Masked lanes give 0 without reading g.
    """
    if PASS:
        acc = tl.load(gbase + h * sgh + w * sgw, mask=mask, other=0.0).to(ACC)
    else:
        r_lo = tl.load(rows_ptr + h, mask=mask, other=0)
        r_hi = tl.load(rows_ptr + H + h, mask=mask, other=0)
        c_lo = tl.load(cols_ptr + w, mask=mask, other=0)
        c_hi = tl.load(cols_ptr + W + w, mask=mask, other=0)
        acc = tl.zeros([BLOCK], ACC)
        for a in range(0, KH):
            i = r_lo + a
            vi = mask & (i < r_hi)
            wr = _axis_weight(taps_ptr, lam_ptr, T, row_base, i, h, vi)
            if INDEX64:
                i = i.to(tl.int64)
            prow = gbase + i * sgh
            row = tl.zeros([BLOCK], ACC)
            for b in range(0, KW):
                j = c_lo + b
                vj = vi & (j < c_hi)
                wc = _axis_weight(taps_ptr, lam_ptr, T, col_base, j, w, vj)
                if INDEX64:
                    j = j.to(tl.int64)
                gv = tl.load(prow + j * sgw, mask=vj, other=0.0).to(ACC)
                row += wc * gv
            acc += wr * row
    return acc


@triton.jit
def _blend_grad_x_kernel(
    g_ptr, w_ptr, out_ptr,
    taps_ptr, lam_ptr, T, row_base, col_base,
    rows_ptr, cols_ptr,  # int32 (2, H), (2, W): see _gather
    total, C, H, W, KH, KW,
    sgn, sgc, sgh, sgw,
    PASS: tl.constexpr, CHANNELS_LAST: tl.constexpr, ACC: tl.constexpr, INDEX64: tl.constexpr,
    BLOCK: tl.constexpr,
):  # fmt: skip
    """grad_x[n, c, h, w] = w_k · Rᵀ(g)[n, c, h, w]; ``out`` is dense in x's memory format (flat index = offs)."""
    _, offs = _program_offsets(BLOCK, INDEX64)
    mask = offs < total
    n, c, h, w = _output_index(offs, C, H, W, CHANNELS_LAST)
    wk = tl.load(w_ptr).to(ACC)
    gbase = g_ptr + n * sgn + c * sgc
    acc = _gather(
        gbase, h, w, mask, taps_ptr, lam_ptr, T, row_base, col_base, rows_ptr, cols_ptr, H, W, KH, KW, sgh, sgw,
        PASS, ACC, INDEX64, BLOCK,
    )  # fmt: skip
    acc = acc * wk
    tl.store(out_ptr + offs, acc.to(out_ptr.dtype.element_ty), mask=mask)


# =============================================================================
# Host side
# =============================================================================


class _Axis:
    """One input's resize along one axis: in → out (cropped), with the kernel's mode and ratio bits."""

    __slots__ = ("in_size", "out", "full", "mode", "bits", "ratio")

    def __init__(self, in_size: int, out: int, align_corners: bool, scale: Optional[float]):
        self.in_size, self.out = int(in_size), int(out)
        # The full interpolate size: floor(in·s) with a scale (the crop keeps `out` of it).
        self.full = self.out if scale is None else math.floor(self.in_size * float(scale))
        self.bits = 0
        if self.full == self.in_size:
            self.mode, self.ratio = MODE_COPY, 1.0
        elif align_corners:  # PyTorch ignores scale_factor under align_corners=True
            self.mode = MODE_ALIGN
            self.ratio = (self.in_size - 1) / (self.full - 1) if self.full > 1 else 0.0
        elif scale is not None and float(scale) > 0.0:
            self.mode = MODE_SCALE
            self.ratio = 1.0 / float(scale)  # in float64, as ATen; the kernel rounds it to ACC
            self.bits = struct.unpack("<q", struct.pack("<d", self.ratio))[0]
        else:
            self.mode, self.ratio = MODE_SIZE, self.in_size / self.full

    def fan_in(self) -> int:
        """An upper bound on the number of outputs whose taps include one input index.

        Outputs hitting index p have src in [p − 1, p + 1), at most 2/ratio + 1 of
        them, plus (p ≤ 1) those clamped to src = 0, at most 0.5/ratio + 0.5;
        rounding of the ratio is covered by the margin. Never more than ``out``.
        """
        if self.mode == MODE_COPY:
            return 1
        if self.ratio <= 0.0:
            return self.out
        return max(1, min(self.out, int(3.0 / self.ratio) + 4))


class _Plan:
    """The host-side description of one call: 4 axes, pass-through flags, output layout.

    ``in_sizes``: the (H, W) of the two maps resampled (for shape_adaptor_maxpool,
    the pooled map's and x's).
    """

    def __init__(self, in_sizes, size, align_corners, scales):
        self.ho, self.wo = int(size[0]), int(size[1])
        self.scales = scales if scales is not None else (None, None)
        self.passes = []
        self.axes: List[_Axis] = []
        for (h, w), sk in zip(in_sizes, self.scales):
            h, w = int(h), int(w)
            self.passes.append(sk is None and (h, w) == (self.ho, self.wo))
            sh, sw = (None, None) if sk is None else (float(sk[0]), float(sk[1]))
            self.axes.append(_Axis(h, self.ho, align_corners, sh))
            self.axes.append(_Axis(w, self.wo, align_corners, sw))
        self.T = 2 * (self.ho + self.wo)
        # Offsets of the 4 axes in the tables: (x1, H), (x1, W), (x2, H), (x2, W).
        self.bases = (0, self.ho, self.ho + self.wo, 2 * self.ho + self.wo)


def _tables(plan: _Plan, acc: torch.dtype, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    """Launch the axis-tables kernel: (taps int32 (2, T), λ1 ACC (T,))."""
    taps = torch.empty((2, plan.T), dtype=torch.int32, device=device)
    lam = torch.empty((plan.T,), dtype=acc, device=device)
    if all(plan.passes):
        return taps, lam  # nothing reads them
    ax = plan.axes
    grid = (triton.cdiv(max(plan.ho, plan.wo), TABLE_BLOCK), 4)
    _axis_tables_kernel[grid](
        taps, lam, plan.T, plan.ho, plan.wo,
        *(a.in_size for a in ax), *(a.full for a in ax), *(a.mode for a in ax), *(a.bits for a in ax),
        ACC=_tl_acc(acc), BLOCK=TABLE_BLOCK, num_warps=1,
        # No FMA contraction: ratio·j − i0 fused would skip the product's rounding and
        # move λ1 off an exact 0 (F.interpolate's CPU arithmetic; math.h mul_rn).
        enable_fp_fusion=False,
    )  # fmt: skip
    return taps, lam


def _index64(force: bool, *tensors: torch.Tensor) -> bool:
    """Whether some element offset (or flat index) of these tensors may exceed int32,
    or ``force`` (the test hook ``force_int64``) asks for the 64-bit path."""
    if force:
        return True
    for t in tensors:
        if t.numel() >= _INT32_LIMIT:
            return True
        if t.numel() > 0 and sum((s - 1) * abs(st) for s, st in zip(t.shape, t.stride())) >= _INT32_LIMIT:
            return True
    return False


def resize_blend_forward(
    x1: torch.Tensor,
    x2: torch.Tensor,
    w1: torch.Tensor,
    w2: torch.Tensor,
    size: Sequence[int],
    align_corners: bool,
    scales,
    channels_last: bool,
    *,
    force_int64: bool = False,
) -> torch.Tensor:
    """w1·R1(x1) + w2·R2(x2): (N, C, Ho, Wo) of x1's dtype, channels_last iff ``channels_last``.

    ``x1``, ``x2``: (N, C, H_k, W_k), any strides, one dtype. ``w1``, ``w2``: 0-d
    tensors on the inputs' device (any floating dtype). ``scales``: None or a
    pair of None / (sh, sw). ``force_int64``: the 64-bit index path on small
    tensors (test hook).
    """
    plan = _Plan((x1.shape[2:], x2.shape[2:]), size, align_corners, scales)
    return _forward(plan, x1, x2, w1, w2, channels_last, pool1=False, force_int64=force_int64)


def _forward(plan: _Plan, x1, x2, w1, w2, channels_last: bool, pool1: bool, force_int64: bool) -> torch.Tensor:
    """Launch the tables and the forward kernel; ``pool1``: R1 resamples max_pool2d(x1, 2)."""
    n, c = x1.shape[0], x1.shape[1]
    acc = _acc_dtype(x1.dtype)
    fmt = _format(channels_last)
    out = torch.empty((n, c, plan.ho, plan.wo), dtype=x1.dtype, device=x1.device, memory_format=fmt)
    total = out.numel()
    if total == 0:
        return out
    with _on_device(x1):
        taps, lam = _tables(plan, acc, x1.device)
        grid = (triton.cdiv(total, FORWARD_BLOCK),)
        _blend_forward_kernel[grid](
            x1, x2, w1, w2, out, taps, lam, plan.T,
            total, c, plan.ho, plan.wo, *x1.stride(), *x2.stride(),
            PASS1=plan.passes[0], PASS2=plan.passes[1], POOL1=bool(pool1), CHANNELS_LAST=bool(channels_last),
            ACC=_tl_acc(x1.dtype), INDEX64=_index64(force_int64, x1, x2, out), BLOCK=FORWARD_BLOCK, num_warps=NUM_WARPS,
        )  # fmt: skip
    return out


def _ranges(taps: torch.Tensor, base: int, out: int, in_size: int) -> torch.Tensor:
    """int32 (2, in): [lo, hi) of the outputs o whose taps include each input index p.

    i0 and i1 are non-decreasing in o and i1 ≤ i0 + 1, so {o : i0(o) ≤ p ≤ i1(o)}
    is the range lo = #{o : i1(o) < p}, hi = #{o : i0(o) ≤ p}. On the device.
    """
    p = torch.arange(in_size, dtype=torch.int32, device=taps.device)
    i0 = taps[0, base : base + out].contiguous()
    i1 = taps[1, base : base + out].contiguous()
    lo = torch.searchsorted(i1, p, out_int32=True)
    hi = torch.searchsorted(i0, p, right=True, out_int32=True)
    return torch.stack([lo, hi])


def resize_blend_backward(
    grad_out: torch.Tensor,
    x1: torch.Tensor,
    x2: torch.Tensor,
    w1: torch.Tensor,
    w2: torch.Tensor,
    size: Sequence[int],
    align_corners: bool,
    scales,
    mask: Sequence[bool],
    channels_last: Sequence[bool],
    *,
    force_int64: bool = False,
):
    """(grad_x1, grad_x2, grad_w1, grad_w2), None where ``mask`` is False. Deterministic.

    grad_xk: xk's dtype and shape, contiguous in the format ``channels_last[k]``
    names. grad_wk: 0-d, wk's dtype. ``grad_out``: (N, C, Ho, Wo), any strides.
    ``channels_last[2]`` names the order the grad_w reduction walks the outputs in.
    """
    plan = _Plan((x1.shape[2:], x2.shape[2:]), size, align_corners, scales)
    n, c = x1.shape[0], x1.shape[1]
    acc = _acc_dtype(x1.dtype)
    tl_acc = _tl_acc(x1.dtype)
    grads: list = [None, None, None, None]
    total_out = n * c * plan.ho * plan.wo
    need_tables = any(mask[k] or mask[2 + k] for k in (0, 1) if not plan.passes[k])
    with _on_device(x1):
        taps, lam = _tables(plan, acc, x1.device) if need_tables else (x1, x1)
        for k, xk in enumerate((x1, x2)):
            if not mask[k]:
                continue
            fmt = _format(channels_last[k])
            gx = torch.empty(xk.shape, dtype=xk.dtype, device=xk.device, memory_format=fmt)
            total = gx.numel()
            if total > 0:
                ah, aw = plan.axes[2 * k], plan.axes[2 * k + 1]
                bh, bw = plan.bases[2 * k], plan.bases[2 * k + 1]
                if plan.passes[k]:
                    rows = cols = gx  # unused (PASS)
                    kh = kw = 1
                else:
                    rows = _ranges(taps, bh, plan.ho, ah.in_size)
                    cols = _ranges(taps, bw, plan.wo, aw.in_size)
                    kh, kw = ah.fan_in(), aw.fan_in()
                _blend_grad_x_kernel[(triton.cdiv(total, GATHER_BLOCK),)](
                    grad_out, (w1, w2)[k], gx, taps, lam, plan.T, bh, bw, rows, cols,
                    total, c, ah.in_size, aw.in_size, kh, kw, *grad_out.stride(),
                    PASS=plan.passes[k], CHANNELS_LAST=bool(channels_last[k]), ACC=tl_acc,
                    INDEX64=_index64(force_int64, grad_out, xk, gx), BLOCK=GATHER_BLOCK, num_warps=NUM_WARPS,
                )  # fmt: skip
            grads[k] = gx
        need1, need2 = bool(mask[2]), bool(mask[3])
        if need1 or need2:
            programs = triton.cdiv(total_out, FORWARD_BLOCK)
            partials = torch.zeros((max(programs, 1), 2), dtype=acc, device=x1.device)
            if programs > 0:
                _blend_grad_w_kernel[(programs,)](
                    grad_out, x1, x2, partials, taps, lam, plan.T,
                    total_out, c, plan.ho, plan.wo, *grad_out.stride(), *x1.stride(), *x2.stride(),
                    NEED1=need1, NEED2=need2, PASS1=plan.passes[0], PASS2=plan.passes[1],
                    CHANNELS_LAST=bool(channels_last[2]), ACC=tl_acc,
                    INDEX64=_index64(force_int64, grad_out, x1, x2), BLOCK=FORWARD_BLOCK, num_warps=NUM_WARPS,
                )  # fmt: skip
            # A fixed-order float64 sum of the per-program partials: deterministic.
            sums = partials.to(torch.float64).sum(dim=0)
            # copy=True: two views of one buffer may not be returned by a custom op.
            if need1:
                grads[2] = sums[0].to(w1.dtype, copy=True)
            if need2:
                grads[3] = sums[1].to(w2.dtype, copy=True)
    return tuple(grads)
