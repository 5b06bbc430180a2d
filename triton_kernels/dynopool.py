"""Triton kernels of DynOPool (docs/SEMANTICS.md, DynOPool).

Jang et al., "Pooling Revisited: Your Receptive Field is Suboptimal", CVPR 2022:
each output cell (i, j) is the max of 4 bilinear samples (border padding) at the
query points y_{i,k} = -1 + (4i + 2k + 1)/(2Ĥ), x_{j,l} likewise (Eq. 2), with
the surrogate output size Ĥ (value Ho) that carries the gradient to the
learnable scale (Eq. 3-4).

- Forward: one program per block of output elements, flattened over N·C·Ho·Wo in
  the output's memory order (NCHW, or channels_last with C innermost), so stores
  are contiguous. x is read through its 4 strides (any layout, no copy). The 4×
  query tensor is never materialised: each program computes its 4 queries in
  registers from 16 taps. Two experimental forms (never timed on a GPU;
  resizeops/core/kernel_forms.py): for NCHW outputs, a 2-D tile kernel
  (``rows=True``), and either forward with 8 warps instead of 4 (``warps=8``).
- Backward: recomputes each cell's winning query from x (the forward saves
  nothing), scatters the gradient of the winner to its 4 taps with atomics into a
  float32 (float64 for float64 x) buffer, and reduces dL/dĤ, dL/dŴ per program
  into a (num_programs, 2) buffer that is summed on the host side in float64:
  the size gradients are deterministic, grad_x is not (atomic order).

The per-element math mirrors csrc/include/resizeops/math.h function for function
(``dynopool_query_coord``, ``clip_border``, ``bilinear_taps``,
``dynopool_query_coord_grad``, ``lerp_tie``, ``max4_first``) in the same order of
operations: a query is interpolated along H, then along W, each step
w0·a + w1·b and exactly a where a == b (the tie rule every backend shares, so that
repeated rows or columns give tied queries and the same winner everywhere:
docs/DESIGN.md, "Rounding and ties"). Half types are computed in float32 and
rounded once on store.

These functions take already validated arguments; the dispatcher adapter is
``resizeops/core/_triton_backend.py``.
"""

from __future__ import annotations

import contextlib
from typing import Optional, Sequence, Tuple

import torch
import triton
import triton.language as tl

__all__ = ["dynopool2d_forward", "dynopool2d_backward"]

#: Output elements per program. Forward: 16 taps per element in registers;
#: backward: the same plus the winner's selection and 4 atomics.
FORWARD_BLOCK = 512
BACKWARD_BLOCK = 256
NUM_WARPS = 4


# =============================================================================
# Per-element math (mirrors csrc/include/resizeops/math.h)
# =============================================================================


@triton.jit
def _query_coord(q, size_hat, in_size_f, ACC: tl.constexpr):
    """Source coordinate u of query q along one axis (math.h dynopool_query_coord).

    u = ((2q+1)·in − 2Ĥ)/(4Ĥ), the pixel coordinate of y_q = −1 + (2q+1)/(2Ĥ): exact
    integers (below 2^24 in float32) and one correctly rounded division, as in every
    backend, so a query on a pixel (α = 2 on an even size) is exactly there.
    """
    num = (2 * q + 1).to(ACC) * in_size_f - 2.0 * size_hat
    if ACC == tl.float32:
        # Triton's float32 `/` is an approximate division on the GPU; the query
        # positions must round like torch's (IEEE) division.
        return tl.math.div_rn(num, 4.0 * size_hat)
    return num / (4.0 * size_hat)  # float64 `/` is IEEE round-to-nearest


@triton.jit
def _axis_taps(q, size_hat, in_size_f, in_size, ACC: tl.constexpr):
    """Bilinear taps of query q along one axis, border padding.

    Returns (i0, i1, w0, w1, dsize): the two source indices (int64), their weights,
    and dclip · du/dĤ, the query's coordinate derivative with respect to the
    surrogate size (math.h dynopool_query_coord_grad), 0 where the border clip is
    active: 1 on 0 ≤ u < in−1 (math.h clip_border: the derivative towards larger u,
    also at u = 0 exactly, where grid_sample's is 0).
    """
    u = _query_coord(q, size_hat, in_size_f, ACC)
    hi = in_size_f - 1.0
    inside = (u >= 0.0) & (u < hi)
    u = tl.minimum(tl.maximum(u, 0.0), hi)
    # u ≥ 0 here, so the truncating cast is a floor; the clamp guards rounding.
    i0 = tl.minimum(tl.floor(u).to(tl.int64), in_size - 1)
    # At the last pixel both taps are the same pixel (w1 = 0): no out-of-bounds read.
    i1 = tl.minimum(i0 + 1, in_size - 1)
    w1 = u - i0.to(ACC)
    w0 = 1.0 - w1
    du = -((2 * q + 1).to(ACC)) * in_size_f / (4.0 * size_hat * size_hat)
    dsize = tl.where(inside, du, 0.0)
    return i0, i1, w0, w1, dsize


@triton.jit
def _lerp_tie(w0, a, w1, b):
    """w0·a + w1·b, exactly a where a == b (math.h lerp_tie: DynOPool's tie rule)."""
    return tl.where(a == b, a, w0 * a + w1 * b)


@triton.jit
def _bilinear(v00, v01, v10, v11, wr0, wr1, wc0, wc1):
    """x[r, c] = v_rc bilinearly: along H at both tap columns, then along W (math.h
    lerp_tie each step, as every backend)."""
    return _lerp_tie(wc0, _lerp_tie(wr0, v00, wr1, v10), wc1, _lerp_tie(wr0, v01, wr1, v11))


@triton.jit
def _max4_first(q00, q01, q10, q11):
    """Max of the 4 queries in the order (0,0),(0,1),(1,0),(1,1), with max_pool2d's rule.

    A later query wins only if strictly greater or NaN (``v > best or isnan(v)``):
    ties keep the first maximum and any NaN wins (the last NaN, as max_pool2d's
    index). Returns (best, argmax in 0..3).
    """
    best = q00
    arg = tl.zeros(q00.shape, tl.int32)
    take = (q01 > best) | (q01 != q01)
    best = tl.where(take, q01, best)
    arg = tl.where(take, 1, arg)
    take = (q10 > best) | (q10 != q10)
    best = tl.where(take, q10, best)
    arg = tl.where(take, 2, arg)
    take = (q11 > best) | (q11 != q11)
    best = tl.where(take, q11, best)
    arg = tl.where(take, 3, arg)
    return best, arg


@triton.jit
def _program_offsets(BLOCK: tl.constexpr, INDEX64: tl.constexpr):
    """(program id, its BLOCK flat indices), int64 when INDEX64."""
    pid = tl.program_id(0)
    if INDEX64:
        pid = pid.to(tl.int64)
    return pid, pid * BLOCK + tl.arange(0, BLOCK)


@triton.jit
def _output_index(offs, C, Ho, Wo, CHANNELS_LAST: tl.constexpr):
    """(n, c, i, j) of flat output offsets in the output's memory order (int64)."""
    if CHANNELS_LAST:  # (n, i, j, c), c fastest
        c = offs % C
        t = offs // C
        j = t % Wo
        t = t // Wo
        i = t % Ho
        n = t // Ho
    else:  # (n, c, i, j), j fastest
        j = offs % Wo
        t = offs // Wo
        i = t % Ho
        t = t // Ho
        c = t % C
        n = t // C
    return n, c, i, j


@triton.jit
def _load(ptr, mask, ACC: tl.constexpr):
    return tl.load(ptr, mask=mask, other=0.0).to(ACC)


@triton.jit
def _pick(kr, lc, v00, v01, v10, v11):
    """The value belonging to the winning query (k, l) = (kr, lc)."""
    return tl.where(kr, tl.where(lc, v11, v10), tl.where(lc, v01, v00))


# =============================================================================
# Kernels
# =============================================================================


@triton.jit
def _dynopool2d_tables_kernel(
    tab_i_ptr,  # int32 [i0 rows (2Ho) | i1 rows (2Ho) | i0 cols (2Wo) | i1 cols (2Wo)]
    tab_w_ptr,  # ACC [w1 rows (2Ho) | d rows (2Ho) | w1 cols (2Wo) | d cols (2Wo)]
    H,
    W,
    Ho,
    Wo,
    ACC: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Taps, weight w1 and coordinate derivative of every query row and column, once per call.

    The per-element kernels then load them instead of computing a division, a floor and
    int64 arithmetic per query (the version without tables was bound by instruction issue,
    like the CUDA kernels' first version: docs/PERF_NOTES.md).
    """
    t = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    is_row = t < 2 * Ho
    q = tl.where(is_row, t, t - 2 * Ho)
    mask = t < 2 * Ho + 2 * Wo
    zero = tl.zeros([BLOCK], ACC)
    out_f = tl.where(is_row, zero + Ho, zero + Wo)
    in_f = tl.where(is_row, zero + H, zero + W)
    in_i = tl.where(is_row, H, W)
    i0, i1, _, w1, d = _axis_taps(q, out_f, in_f, in_i, ACC)
    base = tl.where(is_row, q, 4 * Ho + q)  # i0 (and w1) slot; i1 (and d) is one axis length further
    step = tl.where(is_row, 2 * Ho, 2 * Wo)
    tl.store(tab_i_ptr + base, i0.to(tl.int32), mask=mask)
    tl.store(tab_i_ptr + base + step, i1.to(tl.int32), mask=mask)
    tl.store(tab_w_ptr + base, w1, mask=mask)
    tl.store(tab_w_ptr + base + step, d, mask=mask)


@triton.jit
def _taps_from_table(tab_i_ptr, tab_w_ptr, q, n_axis, mask):
    """(i0, i1, w0, w1, d) of query q of an axis whose table starts at the given pointers.

    n_axis: 2·out_size of that axis (the distance from the i0 / w1 entries to i1 / d).
    """
    i0 = tl.load(tab_i_ptr + q, mask=mask, other=0)
    i1 = tl.load(tab_i_ptr + n_axis + q, mask=mask, other=0)
    w1 = tl.load(tab_w_ptr + q, mask=mask, other=0.0)
    d = tl.load(tab_w_ptr + n_axis + q, mask=mask, other=0.0)
    return i0, i1, 1.0 - w1, w1, d


@triton.jit
def _cell_taps(tab_i_ptr, tab_w_ptr, i, j, Ho, Wo, mask):
    """Taps (i0, i1, w0, w1, d) of output cell (i, j)'s query rows 2i (a), 2i+1 (b) and
    query columns 2j (a), 2j+1 (b), from the axis tables: 20 values, rows a, b then
    columns a, b."""
    ra0, ra1, wra0, wra1, dra = _taps_from_table(tab_i_ptr, tab_w_ptr, 2 * i, 2 * Ho, mask)
    rb0, rb1, wrb0, wrb1, drb = _taps_from_table(tab_i_ptr, tab_w_ptr, 2 * i + 1, 2 * Ho, mask)
    ci_ptr = tab_i_ptr + 4 * Ho
    cw_ptr = tab_w_ptr + 4 * Ho
    ca0, ca1, wca0, wca1, dca = _taps_from_table(ci_ptr, cw_ptr, 2 * j, 2 * Wo, mask)
    cb0, cb1, wcb0, wcb1, dcb = _taps_from_table(ci_ptr, cw_ptr, 2 * j + 1, 2 * Wo, mask)
    return (ra0, ra1, wra0, wra1, dra, rb0, rb1, wrb0, wrb1, drb,
            ca0, ca1, wca0, wca1, dca, cb0, cb1, wcb0, wcb1, dcb)  # fmt: skip


@triton.jit
def _cell_values(base, sh, sw, ra0, ra1, rb0, rb1, ca0, ca1, cb0, cb1, mask, ACC: tl.constexpr):
    """x at the 16 taps of a cell: rows {a0, a1, b0, b1} × columns {a0, a1, b0, b1},
    returned as x[a0,a0], x[a0,a1], x[a1,a0], x[a1,a1] (query (0,0)), then the same for
    columns b (query (0,1)), rows b with columns a (1,0), rows b with columns b (1,1).

    A second tap equal to the first (the last pixel, weight 0) is out of bounds for
    grid_sample, which skips it: it loads as 0, so that an infinite pixel is never
    multiplied by 0. (The coordinate derivatives then see 0 there instead of the
    pixel; they are multiplied by the clip's derivative, 0 at the last pixel.)
    """
    pa0, pa1 = base + ra0 * sh, base + ra1 * sh
    pb0, pb1 = base + rb0 * sh, base + rb1 * sh
    oa0, oa1 = ca0 * sw, ca1 * sw
    ob0, ob1 = cb0 * sw, cb1 * sw
    ma, mb = mask & (ra1 != ra0), mask & (rb1 != rb0)
    na, nb = ca1 != ca0, cb1 != cb0
    return (
        _load(pa0 + oa0, mask, ACC), _load(pa0 + oa1, mask & na, ACC),
        _load(pa1 + oa0, ma, ACC), _load(pa1 + oa1, ma & na, ACC),
        _load(pa0 + ob0, mask, ACC), _load(pa0 + ob1, mask & nb, ACC),
        _load(pa1 + ob0, ma, ACC), _load(pa1 + ob1, ma & nb, ACC),
        _load(pb0 + oa0, mask, ACC), _load(pb0 + oa1, mask & na, ACC),
        _load(pb1 + oa0, mb, ACC), _load(pb1 + oa1, mb & na, ACC),
        _load(pb0 + ob0, mask, ACC), _load(pb0 + ob1, mask & nb, ACC),
        _load(pb1 + ob0, mb, ACC), _load(pb1 + ob1, mb & nb, ACC),
    )  # fmt: skip


@triton.jit
def _cell_queries(base, sh, sw, ra0, ra1, wra0, wra1, rb0, rb1, wrb0, wrb1,
                  ca0, ca1, wca0, wca1, cb0, cb1, wcb0, wcb1, mask, ACC: tl.constexpr):  # fmt: skip
    """A cell's 16 tap values (_cell_values' order) and its 4 bilinear queries q00, q01,
    q10, q11 (taps and weights of query rows a, b and columns a, b; x's plane at base)."""
    (xa0a0, xa0a1, xa1a0, xa1a1, xa0b0, xa0b1, xa1b0, xa1b1,
     xb0a0, xb0a1, xb1a0, xb1a1, xb0b0, xb0b1, xb1b0, xb1b1) = _cell_values(
        base, sh, sw, ra0, ra1, rb0, rb1, ca0, ca1, cb0, cb1, mask, ACC)
    q00 = _bilinear(xa0a0, xa0a1, xa1a0, xa1a1, wra0, wra1, wca0, wca1)
    q01 = _bilinear(xa0b0, xa0b1, xa1b0, xa1b1, wra0, wra1, wcb0, wcb1)
    q10 = _bilinear(xb0a0, xb0a1, xb1a0, xb1a1, wrb0, wrb1, wca0, wca1)
    q11 = _bilinear(xb0b0, xb0b1, xb1b0, xb1b1, wrb0, wrb1, wcb0, wcb1)
    return (xa0a0, xa0a1, xa1a0, xa1a1, xa0b0, xa0b1, xa1b0, xa1b1,
            xb0a0, xb0a1, xb1a0, xb1a1, xb0b0, xb0b1, xb1b0, xb1b1, q00, q01, q10, q11)  # fmt: skip


@triton.jit
def _cell_max(base, sh, sw, ra0, ra1, wra0, wra1, rb0, rb1, wrb0, wrb1,
              ca0, ca1, wca0, wca1, cb0, cb1, wcb0, wcb1, mask, ACC: tl.constexpr):  # fmt: skip
    """The forward's value of a cell: the max of its 4 queries (_cell_queries)."""
    (_, _, _, _, _, _, _, _, _, _, _, _, _, _, _, _, q00, q01, q10, q11) = _cell_queries(
        base, sh, sw, ra0, ra1, wra0, wra1, rb0, rb1, wrb0, wrb1,
        ca0, ca1, wca0, wca1, cb0, cb1, wcb0, wcb1, mask, ACC)  # fmt: skip
    best, _ = _max4_first(q00, q01, q10, q11)
    return best


@triton.jit
def _dynopool2d_forward_kernel(
    x_ptr,  # input, (N, C, H, W) by strides (any layout), float16/bfloat16/float32/float64
    out_ptr,  # output, (N, C, Ho, Wo), contiguous in x's memory format (flat index = offs)
    total,  # N·C·Ho·Wo
    C,
    H,
    W,
    Ho,
    Wo,
    stride_xn,
    stride_xc,
    stride_xh,
    stride_xw,
    tab_i_ptr,  # axis tables (_dynopool2d_tables_kernel)
    tab_w_ptr,
    CHANNELS_LAST: tl.constexpr,  # output flattened (n, i, j, c) instead of (n, c, i, j)
    INDEX64: tl.constexpr,  # int64 index math (some extent reaches 2^31), else int32
    ACC: tl.constexpr,  # accumulation dtype: float32, or float64 for float64 x
    BLOCK: tl.constexpr,
):
    _, offs = _program_offsets(BLOCK, INDEX64)
    mask = offs < total
    n, c, i, j = _output_index(offs, C, Ho, Wo, CHANNELS_LAST)

    # Query rows 2i (k=0), 2i+1 (k=1); query columns 2j (l=0), 2j+1 (l=1).
    (ra0, ra1, wra0, wra1, _, rb0, rb1, wrb0, wrb1, _,
     ca0, ca1, wca0, wca1, _, cb0, cb1, wcb0, wcb1, _) = _cell_taps(tab_i_ptr, tab_w_ptr, i, j, Ho, Wo, mask)
    best = _cell_max(x_ptr + n * stride_xn + c * stride_xc, stride_xh, stride_xw,
                     ra0, ra1, wra0, wra1, rb0, rb1, wrb0, wrb1,
                     ca0, ca1, wca0, wca1, cb0, cb1, wcb0, wcb1, mask, ACC)  # fmt: skip
    tl.store(out_ptr + offs, best.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _dynopool2d_forward_rows_kernel(
    x_ptr,  # input, (N, C, H, W) by strides (any layout)
    out_ptr,  # output, (N, C, Ho, Wo), contiguous NCHW
    C,
    Ho,
    Wo,
    tiles_j,  # cdiv(Wo, BJ)
    tiles,  # cdiv(Ho, BI) * tiles_j: the tiles of one output plane
    stride_xn,
    stride_xc,
    stride_xh,
    stride_xw,
    tab_i_ptr,  # axis tables (_dynopool2d_tables_kernel)
    tab_w_ptr,
    INDEX64: tl.constexpr,
    ACC: tl.constexpr,
    BI: tl.constexpr,
    BJ: tl.constexpr,
):
    """The NCHW forward in 2-D tiles (experimental: dynopool2d_forward(..., rows=True)): program p computes
    a BI x BJ tile of output rows i and columns j of one plane (n, c). The flat kernel
    decodes (n, c, i, j) from each element's flat index with three integer divisions
    by run-time sizes (no magic-number division in Triton) and reads all 16 table
    entries per element; here (n, c) and the tile come from the program id (scalar
    divisions, once per program), the row entries are per row of the tile and the
    column entries per column, broadcast across the other axis. Same arithmetic per
    element as the flat kernel: bit-identical outputs."""
    pid = tl.program_id(0)
    if INDEX64:
        pid = pid.to(tl.int64)
    nc = pid // tiles
    t = pid % tiles
    n = nc // C
    c = nc % C
    i = (t // tiles_j) * BI + tl.arange(0, BI)[:, None]  # [BI, 1]
    j = (t % tiles_j) * BJ + tl.arange(0, BJ)[None, :]  # [1, BJ]
    mi = i < Ho
    mj = j < Wo
    mask = mi & mj
    ra0, ra1, wra0, wra1, _ = _taps_from_table(tab_i_ptr, tab_w_ptr, 2 * i, 2 * Ho, mi)
    rb0, rb1, wrb0, wrb1, _ = _taps_from_table(tab_i_ptr, tab_w_ptr, 2 * i + 1, 2 * Ho, mi)
    ca0, ca1, wca0, wca1, _ = _taps_from_table(tab_i_ptr + 4 * Ho, tab_w_ptr + 4 * Ho, 2 * j, 2 * Wo, mj)
    cb0, cb1, wcb0, wcb1, _ = _taps_from_table(tab_i_ptr + 4 * Ho, tab_w_ptr + 4 * Ho, 2 * j + 1, 2 * Wo, mj)
    best = _cell_max(x_ptr + n * stride_xn + c * stride_xc, stride_xh, stride_xw,
                     ra0, ra1, wra0, wra1, rb0, rb1, wrb0, wrb1,
                     ca0, ca1, wca0, wca1, cb0, cb1, wcb0, wcb1, mask, ACC)  # fmt: skip
    tl.store(out_ptr + nc * Ho * Wo + i * Wo + j, best.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _dynopool2d_backward_kernel(
    grad_out_ptr,  # dL/d output, (N, C, Ho, Wo) by strides (any layout)
    x_ptr,  # input, (N, C, H, W) by strides (any layout)
    grad_x_ptr,  # dL/dx accumulator, (N, C, H, W) by strides, ACC dtype, zero-filled (unused unless NEED_X)
    partial_ptr,  # (num_programs, 2) ACC: this program's (dL/dĤ, dL/dŴ) (unused unless NEED_SIZE)
    total,  # N·C·Ho·Wo
    C,
    H,
    W,
    Ho,
    Wo,
    stride_gn,
    stride_gc,
    stride_gh,
    stride_gw,
    stride_xn,
    stride_xc,
    stride_xh,
    stride_xw,
    stride_dn,
    stride_dc,
    stride_dh,
    stride_dw,
    tab_i_ptr,  # axis tables (_dynopool2d_tables_kernel)
    tab_w_ptr,
    NEED_X: tl.constexpr,
    NEED_SIZE: tl.constexpr,
    CHANNELS_LAST: tl.constexpr,  # iterate outputs in channels_last order (matches x's taps)
    INDEX64: tl.constexpr,  # int64 index math (some extent reaches 2^31), else int32
    ACC: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid, offs = _program_offsets(BLOCK, INDEX64)
    mask = offs < total
    n, c, i, j = _output_index(offs, C, Ho, Wo, CHANNELS_LAST)

    (ra0, ra1, wra0, wra1, dra, rb0, rb1, wrb0, wrb1, drb,
     ca0, ca1, wca0, wca1, dca, cb0, cb1, wcb0, wcb1, dcb) = _cell_taps(tab_i_ptr, tab_w_ptr, i, j, Ho, Wo, mask)
    # x[row, col] for rows a0, a1 (query row k=0), b0, b1 (k=1) and columns likewise.
    (xa0a0, xa0a1, xa1a0, xa1a1, xa0b0, xa0b1, xa1b0, xa1b1,
     xb0a0, xb0a1, xb1a0, xb1a1, xb0b0, xb0b1, xb1b0, xb1b1, q00, q01, q10, q11) = _cell_queries(
        x_ptr + n * stride_xn + c * stride_xc, stride_xh, stride_xw, ra0, ra1, wra0, wra1, rb0, rb1, wrb0, wrb1,
        ca0, ca1, wca0, wca1, cb0, cb1, wcb0, wcb1, mask, ACC)  # fmt: skip
    # Recomputed exactly as in the forward, so the winner is the forward's argmax.
    _, arg = _max4_first(q00, q01, q10, q11)
    kr = arg >= 2  # the winner's query row: k = 1
    lc = (arg == 1) | (arg == 3)  # the winner's query column: l = 1

    g = _load(grad_out_ptr + n * stride_gn + c * stride_gc + i * stride_gh + j * stride_gw, mask, ACC)
    # The winner's rows, columns and weights (only the winner gets a gradient).
    wr0 = tl.where(kr, wrb0, wra0)
    wr1 = tl.where(kr, wrb1, wra1)
    wc0 = tl.where(lc, wcb0, wca0)
    wc1 = tl.where(lc, wcb1, wca1)

    if NEED_X:
        r0 = tl.where(kr, rb0, ra0)
        r1 = tl.where(kr, rb1, ra1)
        c0 = tl.where(lc, cb0, ca0)
        c1 = tl.where(lc, cb1, ca1)
        gbase = grad_x_ptr + n * stride_dn + c * stride_dc
        g0 = gbase + r0 * stride_dh
        g1 = gbase + r1 * stride_dh
        # Overlapping cells share pixels: atomics. The result value is unused, so
        # this lowers to fire-and-forget reductions. A second tap equal to the first
        # (the last pixel) is skipped, as in the forward (no 0 * inf).
        mr, mc = r1 != r0, c1 != c0
        tl.atomic_add(g0 + c0 * stride_dw, g * (wr0 * wc0), mask=mask, sem="relaxed")
        tl.atomic_add(g0 + c1 * stride_dw, g * (wr0 * wc1), mask=mask & mc, sem="relaxed")
        tl.atomic_add(g1 + c0 * stride_dw, g * (wr1 * wc0), mask=mask & mr, sem="relaxed")
        tl.atomic_add(g1 + c1 * stride_dw, g * (wr1 * wc1), mask=mask & mr & mc, sem="relaxed")

    if NEED_SIZE:
        # The winner's 4 taps: t{row}{col}.
        t00 = _pick(kr, lc, xa0a0, xa0b0, xb0a0, xb0b0)
        t01 = _pick(kr, lc, xa0a1, xa0b1, xb0a1, xb0b1)
        t10 = _pick(kr, lc, xa1a0, xa1b0, xb1a0, xb1b0)
        t11 = _pick(kr, lc, xa1a1, xa1b1, xb1a1, xb1b1)
        # d value/du_row = wc0·(x[r1,c0] − x[r0,c0]) + wc1·(x[r1,c1] − x[r0,c1]); columns likewise.
        dq_drow = wc0 * (t10 - t00) + wc1 * (t11 - t01)
        dq_dcol = wr0 * (t01 - t00) + wr1 * (t11 - t10)
        dr = tl.where(kr, drb, dra)  # dclip · du/dĤ of the winner's row
        dc = tl.where(lc, dcb, dca)
        d_h = tl.where(mask, g * dq_drow * dr, 0.0)
        d_w = tl.where(mask, g * dq_dcol * dc, 0.0)
        # One slot per program, summed on the host side in a fixed order: deterministic.
        tl.store(partial_ptr + 2 * pid, tl.sum(d_h, axis=0))
        tl.store(partial_ptr + 2 * pid + 1, tl.sum(d_w, axis=0))


# =============================================================================
# Launchers
# =============================================================================


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _tl_acc(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def _on_device(t: torch.Tensor):
    # Triton launches on the current device (and its current stream): make it t's.
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def _format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


TABLE_BLOCK = 256
_INT32_MAX = 2**31 - 1


def _extent(t: torch.Tensor) -> int:
    """One past the largest element offset t's strides reach."""
    return 1 + sum((size - 1) * stride for size, stride in zip(t.shape, t.stride()) if size > 0)


def _index64(force: bool, *extents: int) -> bool:
    """int64 index math when any extent (element count, strided reach) passes int32,
    or when ``force`` (the test hook ``force_int64``) asks for it."""
    return force or max(extents) > _INT32_MAX


def _tables(x: torch.Tensor, ho: int, wo: int):
    """The axis tables of one call: (int32 taps, ACC weights and derivatives)."""
    h, w = x.shape[-2:]
    acc = _acc_dtype(x.dtype)
    tab_i = torch.empty(4 * ho + 4 * wo, dtype=torch.int32, device=x.device)
    tab_w = torch.empty(4 * ho + 4 * wo, dtype=acc, device=x.device)
    grid = (triton.cdiv(2 * ho + 2 * wo, TABLE_BLOCK),)
    # No FMA contraction in the coordinates ((2q+1)·in − 2Ĥ): every backend rounds
    # the product first (math.h mul_rn), as blend.py's tables kernel does.
    _dynopool2d_tables_kernel[grid](
        tab_i, tab_w, h, w, ho, wo, ACC=_tl_acc(x.dtype), BLOCK=TABLE_BLOCK, enable_fp_fusion=False
    )
    return tab_i, tab_w


def _rows_tile(wo: int) -> Tuple[int, int]:
    """(BI, BJ) of the rows kernel: FORWARD_BLOCK elements, BJ columns (16 for narrow outputs)."""
    bj = 32 if wo > 16 else 16
    return FORWARD_BLOCK // bj, bj


def dynopool2d_forward(
    x: torch.Tensor,
    out_size: Sequence[int],
    channels_last: bool,
    *,
    rows: bool = False,
    warps: int = 4,
    force_int64: bool = False,
) -> torch.Tensor:
    """DynOPool forward: (N, C, Ho, Wo) of x's dtype, channels_last iff ``channels_last``.

    ``x``: (N, C, H, W), any strides, float16/bfloat16/float32/float64.

    Kernel forms (resizeops/core/kernel_forms.py; the defaults are the timed ones):
    ``rows`` takes the 2-D tile kernel for an NCHW output (experimental; channels_last
    outputs always take the flat one). ``warps``: 4, or 8 (experimental): the same
    FORWARD_BLOCK outputs per program, so 8 warps give each thread half the elements,
    about half the registers (sm_90, float32: the rows kernel 63 instead of 112, the
    flat one 63 instead of 128), twice the resident warps and more instructions per
    output (docs/PERF_NOTES.md, "Triton"); the outputs do not depend on it.
    ``force_int64``: the 64-bit index path on small tensors (test hook).
    """
    n, c, h, w = x.shape
    ho, wo = int(out_size[0]), int(out_size[1])
    out = torch.empty((n, c, ho, wo), dtype=x.dtype, device=x.device, memory_format=_format(channels_last))
    total = out.numel()
    if total == 0:
        return out
    if not channels_last and rows:
        bi, bj = _rows_tile(wo)
        tiles_j = triton.cdiv(wo, bj)
        tiles = triton.cdiv(ho, bi) * tiles_j
        programs = n * c * tiles
        index64 = _index64(force_int64, programs, total + FORWARD_BLOCK, _extent(x))
        with _on_device(x):
            tab_i, tab_w = _tables(x, ho, wo)
            _dynopool2d_forward_rows_kernel[(programs,)](
                x, out, c, ho, wo, tiles_j, tiles, *x.stride(), tab_i, tab_w,
                INDEX64=index64, ACC=_tl_acc(x.dtype), BI=bi, BJ=bj, num_warps=warps,
            )  # fmt: skip
        return out
    grid = (triton.cdiv(total, FORWARD_BLOCK),)
    index64 = _index64(force_int64, total + FORWARD_BLOCK, _extent(x))
    with _on_device(x):
        tab_i, tab_w = _tables(x, ho, wo)
        _dynopool2d_forward_kernel[grid](
            x, out, total, c, h, w, ho, wo, *x.stride(), tab_i, tab_w,
            CHANNELS_LAST=bool(channels_last), INDEX64=index64, ACC=_tl_acc(x.dtype), BLOCK=FORWARD_BLOCK,
            num_warps=warps,
        )  # fmt: skip
    return out


def dynopool2d_backward(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    out_size: Sequence[int],
    channels_last: bool,
    need_x: bool,
    need_size: bool,
    *,
    force_int64: bool = False,
) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Gradients of the DynOPool forward: (grad_x or None, grad_size or None).

    grad_x: x's dtype and shape, contiguous in the format ``channels_last`` names
    (not deterministic: atomics). grad_size: float64 (2,) = (dL/dĤ, dL/dŴ), summed
    deterministically from per-program partials (no host sync).
    ``grad_out``: (N, C, Ho, Wo), any strides. ``force_int64``: the 64-bit index
    path on small tensors (test hook).
    """
    n, c, h, w = x.shape
    ho, wo = int(out_size[0]), int(out_size[1])
    acc = _acc_dtype(x.dtype)
    fmt = _format(channels_last)
    total = n * c * ho * wo
    grad_x_acc = None
    if need_x:
        grad_x_acc = torch.empty(x.shape, dtype=acc, device=x.device, memory_format=fmt).zero_()
    programs = triton.cdiv(total, BACKWARD_BLOCK)
    partials = torch.empty((programs, 2), dtype=acc, device=x.device) if need_size else None
    if total > 0 and (need_x or need_size):
        dummy = x  # stands in for a pointer the kernel does not touch (constexpr-disabled)
        gx = grad_x_acc if need_x else dummy
        index64 = _index64(force_int64, total + BACKWARD_BLOCK, _extent(x), _extent(grad_out), _extent(gx))
        with _on_device(x):
            tab_i, tab_w = _tables(x, ho, wo)
            _dynopool2d_backward_kernel[(programs,)](
                grad_out, x, gx, partials if need_size else dummy,
                total, c, h, w, ho, wo,
                *grad_out.stride(), *x.stride(), *gx.stride(), tab_i, tab_w,
                NEED_X=bool(need_x), NEED_SIZE=bool(need_size), CHANNELS_LAST=bool(channels_last),
                INDEX64=index64, ACC=_tl_acc(x.dtype), BLOCK=BACKWARD_BLOCK, num_warps=NUM_WARPS,
            )  # fmt: skip
    grad_x = None
    if need_x:
        grad_x = grad_x_acc if grad_x_acc.dtype == x.dtype else grad_x_acc.to(x.dtype)
        grad_x = grad_x.contiguous(memory_format=fmt)  # no-op: .to keeps the (dense) format
    grad_size = None
    if need_size:
        grad_size = (
            partials.to(torch.float64).sum(dim=0)
            if programs > 0
            else torch.zeros(2, dtype=torch.float64, device=x.device)
        )
    return grad_x, grad_size
