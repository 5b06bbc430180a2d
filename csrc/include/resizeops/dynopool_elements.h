// Per-element code of the DynOPool CUDA kernels (csrc/cuda/dynopool2d.cu).
//
// Every function here is the work of one GPU thread for one element: a query
// row of the axis tables, an input index's range of query rows, one output
// cell (forward, and the backward's winner and size-gradient terms), one input
// pixel (the backward's gather of grad_x). The CUDA kernels are grid-stride
// loops around them; csrc/cpu/dynopool2d_emulation.cpp runs the very same
// functions in serial loops on the CPU (ops resizeops_ext::_dynopool2d_*_emulated),
// so that the tests check the GPU kernels' indexing and arithmetic on machines
// without a GPU. Only the launch, the grid-stride loops and the block
// reduction of the size gradient are CUDA-only.
//
// The arithmetic is csrc/include/resizeops/math.h's (docs/SEMANTICS.md,
// DynOPool), in the CPU kernel's order: bilinear sampling is a vertical
// interpolation of two input rows followed by a horizontal one.
//
// Backward formulation. Scatter (float and double, the default outside
// deterministic mode; kernel_forms.h): each output cell adds its gradient into its
// winning query's taps with atomics (dynopool_cell_scatter). Gather
// (deterministic, no atomics; 16-bit types and deterministic mode): the backward first
// recomputes each output cell's winning query (argmax, 1 byte per cell) and its
// size-gradient terms, then each input pixel gathers the gradient of the
// winning queries that read it. Query rows r touching input row h are those
// with floor(u_r) in {h-1, h} (taps i0 = floor(u), i1 = min(i0+1, H-1)); u_r
// is monotone in r, so they form a contiguous range, found once per call
// (dynopool_axis_range) and read from a table by every pixel.
#pragma once

#include <cstdint>
#include <stdexcept>

#include "resizeops/element_index.h"
#include "resizeops/math.h"

namespace resizeops {
namespace elements {

// ---------------------------------------------------------------------------
// Axis tables (one launch per call, both axes)
// ---------------------------------------------------------------------------

// One axis (in_size -> out_size) of a call, precomputed so that the per-element
// code does no floor or float-to-int conversion (the GPU kernels are bound by
// instruction count, not bytes, without this): for each query q in
// [0, 2*out_size) its taps i0, i1 and weight w1 (w0 = 1 - w1, bilinear_taps'
// rule), and its coordinate derivative d = dclip * du/d(size_hat); for each
// input index h, the range [range[2h], range[2h+1]) of the queries reading it.
// 32-bit: the kernels refuse axes of 2^30 or more.
template <typename acc_t>
struct AxisTaps {
  const int32_t* i0;
  const int32_t* i1;
  const acc_t* w1;
  const acc_t* d;
  const int32_t* range;  // 2 per input index; only filled for the backward
};

// Where the tables of one call live: one buffer in the accumulation type
// [w1 rows (2Ho) | d rows (2Ho) | w1 cols (2Wo) | d cols (2Wo)] and one int32
// buffer [i0 rows (2Ho) | i1 rows (2Ho) | i0 cols (2Wo) | i1 cols (2Wo) |
// range rows (2H) | range cols (2W)].
struct TableLayout {
  int64_t Ho, Wo, H, W;
  RESIZEOPS_HD int64_t acc_size() const { return 4 * Ho + 4 * Wo; }
  RESIZEOPS_HD int64_t int_size() const { return 4 * Ho + 4 * Wo + 2 * H + 2 * W; }
  // Entries of the fill: one per query, plus one per input index with ranges.
  RESIZEOPS_HD int64_t entries(bool ranges) const { return 2 * Ho + 2 * Wo + (ranges ? H + W : 0); }
};

template <typename acc_t>
inline AxisTaps<acc_t> rows_of(const TableLayout& layout, const acc_t* accb, const int32_t* intb) {
  return {intb, intb + 2 * layout.Ho, accb, accb + 2 * layout.Ho, intb + 4 * layout.Ho + 4 * layout.Wo};
}

template <typename acc_t>
inline AxisTaps<acc_t> cols_of(const TableLayout& layout, const acc_t* accb, const int32_t* intb) {
  return {intb + 4 * layout.Ho, intb + 4 * layout.Ho + 2 * layout.Wo, accb + 4 * layout.Ho, accb + 4 * layout.Ho + 2 * layout.Wo,
          intb + 4 * layout.Ho + 4 * layout.Wo + 2 * layout.H};
}

// Query row (or column) q of an axis in_size -> out_size: its clipped source
// coordinate u and the coordinate gradient dclip * du/d(size_hat).
template <typename acc_t>
RESIZEOPS_HD void dynopool_axis_entry(int64_t q, int64_t out_size, int64_t in_size, acc_t* u, acc_t* dsize) {
  const acc_t size_hat = static_cast<acc_t>(out_size);  // the surrogate's value is Ho
  acc_t dclip;
  *u = math::clip_border<acc_t>(math::dynopool_query_coord<acc_t>(q, size_hat, in_size), in_size, &dclip);
  *dsize = dclip * math::dynopool_query_coord_grad<acc_t>(q, size_hat, in_size);
}

// Table entry q: taps, w1 and the coordinate derivative (see AxisTaps).
template <typename acc_t>
RESIZEOPS_HD void dynopool_axis_fill(int64_t q, int64_t out_size, int64_t in_size, int32_t* i0, int32_t* i1,
                                     acc_t* w1, acc_t* d) {
  acc_t u, dsize, a, b;
  int64_t t0, t1;
  dynopool_axis_entry<acc_t>(q, out_size, in_size, &u, &dsize);
  math::bilinear_taps<acc_t>(u, in_size, &t0, &t1, &a, &b);
  i0[q] = static_cast<int32_t>(t0);
  i1[q] = static_cast<int32_t>(t1);
  w1[q] = b;
  d[q] = dsize;
}

// floor(u_q) as bilinear_taps computes it: the first tap of query q.
template <typename acc_t>
RESIZEOPS_HD int64_t dynopool_first_tap(int64_t q, int64_t out_size, int64_t in_size) {
  acc_t u, dsize, w0, w1;
  int64_t i0, i1;
  dynopool_axis_entry<acc_t>(q, out_size, in_size, &u, &dsize);
  math::bilinear_taps<acc_t>(u, in_size, &i0, &i1, &w0, &w1);
  return i0;
}

// First query q in [0, 2*out_size) with first tap >= target (2*out_size if none).
template <typename acc_t>
RESIZEOPS_HD int64_t dynopool_lower_bound(int64_t target, int64_t out_size, int64_t in_size) {
  int64_t lo = 0, hi = 2 * out_size;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (dynopool_first_tap<acc_t>(mid, out_size, in_size) < target) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

// The queries that read input index h: [*begin, *end), those whose first tap
// is h - 1 (second tap h) or h (first tap h; both taps at the last index).
template <typename acc_t>
RESIZEOPS_HD void dynopool_axis_range(int64_t h, int64_t out_size, int64_t in_size, int32_t* begin,
                                      int32_t* end) {
  *begin = static_cast<int32_t>(dynopool_lower_bound<acc_t>(h - 1, out_size, in_size));
  *end = static_cast<int32_t>(dynopool_lower_bound<acc_t>(h + 1, out_size, in_size));
}

// Entry t of the table fill (one GPU thread each): queries of the rows, of
// the columns, then (with ranges) the ranges of the input rows and columns.
template <typename acc_t>
RESIZEOPS_HD void dynopool_table_entry(int64_t t, const TableLayout& layout, acc_t* accb, int32_t* intb, bool ranges) {
  const int64_t nq = 2 * layout.Ho + 2 * layout.Wo;
  if (t < 2 * layout.Ho) {
    dynopool_axis_fill<acc_t>(t, layout.Ho, layout.H, intb, intb + 2 * layout.Ho, accb, accb + 2 * layout.Ho);
  } else if (t < nq) {
    const int64_t q = t - 2 * layout.Ho;
    int32_t* ib = intb + 4 * layout.Ho;
    acc_t* ab = accb + 4 * layout.Ho;
    dynopool_axis_fill<acc_t>(q, layout.Wo, layout.W, ib, ib + 2 * layout.Wo, ab, ab + 2 * layout.Wo);
  } else if (ranges && t < nq + layout.H) {
    const int64_t h = t - nq;
    int32_t* rr = intb + 4 * layout.Ho + 4 * layout.Wo;
    dynopool_axis_range<acc_t>(h, layout.Ho, layout.H, &rr[2 * h], &rr[2 * h + 1]);
  } else if (ranges) {
    const int64_t w = t - nq - layout.H;
    int32_t* rc = intb + 4 * layout.Ho + 4 * layout.Wo + 2 * layout.H;
    dynopool_axis_range<acc_t>(w, layout.Wo, layout.W, &rc[2 * w], &rc[2 * w + 1]);
  }
}

// Weight of input index h in the interpolation of query q: w0 where h is its
// first tap, w1 where it is the second, both at the border (where w1 = 0 and
// w0 = 1: the sum is exactly 1, so an infinite gradient passes as it is, as in
// grid_sample, which skips the out-of-bounds second tap; never 0 * inf).
template <typename acc_t>
RESIZEOPS_HD acc_t tap_weight(const AxisTaps<acc_t>& t, int32_t q, int32_t h) {
  const acc_t w1 = t.w1[q];
  return (t.i0[q] == h ? acc_t(1) - w1 : acc_t(0)) + (t.i1[q] == h ? w1 : acc_t(0));
}

// ---------------------------------------------------------------------------
// One output cell
// ---------------------------------------------------------------------------

template <typename acc_t>
struct Cell {
  acc_t value;    // max of the 4 queries
  uint8_t arg;    // winner, 0..3 in the order (k,l) = (0,0),(0,1),(1,0),(1,1)
  acc_t dq_drow;  // d winner / d u_row: horizontal interpolation of x[i1] - x[i0]
  acc_t dq_dcol;  // d winner / d u_col: v[c1] - v[c0] of its query row
};

// ---------------------------------------------------------------------------
// The lanes form: Lanes channels of one spatial position per thread
// ---------------------------------------------------------------------------

// The lanes form (experimental; KernelForms::lanes, kernel_forms.h): one
// thread computes the same cell (or pixel) of Lanes channels c0 .. c0 + Lanes - 1, so
// that the table reads, the index arithmetic and the tap offsets are shared by Lanes
// channels and every thread has Lanes times as many loads in flight. The lanes are
// loaded through load_lanes: with VectorIO, the Lanes values are contiguous and aligned to
// Lanes * sizeof(scalar_t) bytes (channels_last, C % Lanes == 0 and aligned strides:
// tensor_index.h lanes_vectorizable) and come in one vector load; otherwise Lanes
// loads at the channel stride ls, and lanes at or past nl (the valid ones, where
// C % Lanes != 0) repeat lane nl - 1's load and are never stored.
template <typename scalar_t, int Lanes>
struct alignas(sizeof(scalar_t) * Lanes) Pack {
  scalar_t v[Lanes];
};

template <int Lanes, bool VectorIO, typename scalar_t, typename out_t, typename index_t>
RESIZEOPS_HD void load_lanes(const scalar_t* p, index_t ls, int nl, out_t (&out)[Lanes]) {
  if constexpr (VectorIO) {
#ifndef __CUDA_ARCH__
    // The emulation checks what the GPU's vector load assumes.
    if (reinterpret_cast<uintptr_t>(p) % alignof(Pack<scalar_t, Lanes>) != 0 || ls != 1 || nl != Lanes) {
      throw std::logic_error("resizeops: vector load of lanes at a misaligned or strided address");
    }
#endif
    const Pack<scalar_t, Lanes> pk = *reinterpret_cast<const Pack<scalar_t, Lanes>*>(p);
RESIZEOPS_UNROLL
    for (int l = 0; l < Lanes; ++l) out[l] = static_cast<out_t>(pk.v[l]);
  } else {
RESIZEOPS_UNROLL
    for (int l = 0; l < Lanes; ++l) out[l] = static_cast<out_t>(p[static_cast<index_t>(l < nl ? l : nl - 1) * ls]);
  }
}

// Stores lanes [0, nl) of v at p, p + ls, ... (one vector store with VectorIO; see load_lanes).
template <int Lanes, bool VectorIO, typename scalar_t, typename acc_t, typename index_t>
RESIZEOPS_HD void store_lanes(scalar_t* p, index_t ls, int nl, const acc_t (&v)[Lanes]) {
  if constexpr (VectorIO) {
#ifndef __CUDA_ARCH__
    if (reinterpret_cast<uintptr_t>(p) % alignof(Pack<scalar_t, Lanes>) != 0 || ls != 1 || nl != Lanes) {
      throw std::logic_error("resizeops: vector store of lanes at a misaligned or strided address");
    }
#endif
    Pack<scalar_t, Lanes> pk;
RESIZEOPS_UNROLL
    for (int l = 0; l < Lanes; ++l) pk.v[l] = static_cast<scalar_t>(v[l]);
    *reinterpret_cast<Pack<scalar_t, Lanes>*>(p) = pk;
  } else {
RESIZEOPS_UNROLL
    for (int l = 0; l < Lanes; ++l) {
      if (l < nl) p[static_cast<index_t>(l) * ls] = static_cast<scalar_t>(v[l]);
    }
  }
}

// The axis-table entries of output cell (i, j): the taps and second-tap weights
// of its query rows 2i + k and columns 2j + l (k, l in {0, 1}) and, WithD, their
// coordinate derivatives (for the size gradient). Read once per work item,
// shared by its lanes, and kept in registers for the backward: the scatter and
// the size gradient select the winner's from them instead of reading the tables
// again after the max (a dependent round trip per cell).
template <typename acc_t>
struct CellTaps {
  int32_t r0[2], r1[2], c0[2], c1[2];
  acc_t rw1[2], cw1[2];
  acc_t rd[2], cd[2];  // only WithD
};

template <bool WithD, typename acc_t, typename index_t>
RESIZEOPS_HD CellTaps<acc_t> dynopool_cell_taps(const AxisTaps<acc_t>& rows, const AxisTaps<acc_t>& cols, index_t i,
                                               index_t j) {
  CellTaps<acc_t> tp;
RESIZEOPS_UNROLL
  for (int k = 0; k < 2; ++k) {
    const index_t r = 2 * i + k, s = 2 * j + k;
    tp.r0[k] = rows.i0[r];
    tp.r1[k] = rows.i1[r];
    tp.rw1[k] = rows.w1[r];
    tp.c0[k] = cols.i0[s];
    tp.c1[k] = cols.i1[s];
    tp.cw1[k] = cols.w1[s];
    tp.rd[k] = WithD ? rows.d[r] : acc_t(0);
    tp.cd[k] = WithD ? cols.d[s] : acc_t(0);
  }
  return tp;
}

// One interpolation along an axis: math::lerp_tie (w0 * a + w1 * b, exactly a
// where a == b: the tie rule every backend shares), and a alone where both taps
// are the last pixel (edge; see dynopool_cell_lanes: a == b there unless NaN,
// and a NaN stays NaN). One expression for every form that computes queries (the
// cell form, its rows, the separable forward, the fused backward's separable
// winners; with edge false, the winner's row derivative), so that the compiler
// contracts them alike: the forms agree bit for bit.
template <typename acc_t>
RESIZEOPS_HD acc_t dynopool_lerp(acc_t w0, acc_t a, acc_t w1, acc_t b, bool edge) {
  return edge ? a : math::lerp_tie<acc_t>(w0, a, w1, b);
}

// Output cell (i, j) of Lanes channel planes starting at xnc (= &x[n, c0, 0, 0],
// strides sH, sW, channel stride ls, nl valid lanes), with its table entries tp:
// the 4 queries at query rows 2i, 2i+1 and columns 2j, 2j+1, their max
// (max_pool2d's tie and NaN rule) and, with Deriv, the winner's coordinate
// derivatives, per lane. index_t: the offset type (32-bit where x's extent
// allows).
template <int Lanes, bool VectorIO, bool Deriv, typename scalar_t, typename acc_t, typename index_t>
RESIZEOPS_HD void dynopool_cell_lanes(const scalar_t* xnc, index_t sH, index_t sW, index_t ls, int nl,
                                      const CellTaps<acc_t>& tp, Cell<acc_t> (&cell)[Lanes]) {
  // At the last pixel both taps are that pixel (w1 = 0); grid_sample skips the
  // second one (out of bounds), so it must not add 0 * x (NaN for an infinite
  // x): row_edge / col_edge drop it. The derivatives keep the true pixel.
  index_t top[2], bot[2], col[4];
  acc_t rw0[2], rw1[2], cw0[2], cw1[2];
  bool row_edge[2], col_edge[2];
RESIZEOPS_UNROLL
  for (int k = 0; k < 2; ++k) {
    top[k] = static_cast<index_t>(tp.r0[k]) * sH;
    bot[k] = static_cast<index_t>(tp.r1[k]) * sH;
    row_edge[k] = tp.r1[k] == tp.r0[k];
    rw1[k] = tp.rw1[k];
    rw0[k] = acc_t(1) - rw1[k];
    col[2 * k] = static_cast<index_t>(tp.c0[k]) * sW;
    col[2 * k + 1] = static_cast<index_t>(tp.c1[k]) * sW;
    col_edge[k] = tp.c1[k] == tp.c0[k];
    cw1[k] = tp.cw1[k];
    cw0[k] = acc_t(1) - cw1[k];
  }
  // The cell's loads (16 per lane: 2 query rows x 2 tap rows x 4 columns), then
  // the arithmetic (ptxas schedules them as it sees fit: docs/PERF_NOTES.md).
  acc_t a[2][4][Lanes], b[2][4][Lanes];
RESIZEOPS_UNROLL
  for (int k = 0; k < 2; ++k) {
RESIZEOPS_UNROLL
    for (int m = 0; m < 4; ++m) {
      load_lanes<Lanes, VectorIO, scalar_t, acc_t, index_t>(xnc + top[k] + col[m], ls, nl, a[k][m]);
      load_lanes<Lanes, VectorIO, scalar_t, acc_t, index_t>(xnc + bot[k] + col[m], ls, nl, b[k][m]);
    }
  }
  // Vertical interpolation of query row k at the 4 columns read:
  // m = 2l + t is tap t of query column l. d: x[i1] - x[i0] there.
  acc_t v[Lanes][2][4], d[Lanes][2][4];
RESIZEOPS_UNROLL
  for (int k = 0; k < 2; ++k) {
RESIZEOPS_UNROLL
    for (int m = 0; m < 4; ++m) {
RESIZEOPS_UNROLL
      for (int e = 0; e < Lanes; ++e) {
        v[e][k][m] = dynopool_lerp<acc_t>(rw0[k], a[k][m][e], rw1[k], b[k][m][e], row_edge[k]);
        d[e][k][m] = b[k][m][e] - a[k][m][e];
      }
    }
  }
RESIZEOPS_UNROLL
  for (int e = 0; e < Lanes; ++e) {
    acc_t q[4];
RESIZEOPS_UNROLL
    for (int k = 0; k < 2; ++k) {
RESIZEOPS_UNROLL
      for (int l = 0; l < 2; ++l)
        q[2 * k + l] = dynopool_lerp<acc_t>(cw0[l], v[e][k][2 * l], cw1[l], v[e][k][2 * l + 1], col_edge[l]);
    }
    Cell<acc_t>& c = cell[e];
    c.value = math::max4_first<acc_t>(q[0], q[1], q[2], q[3], &c.arg);
    c.dq_drow = acc_t(0);
    c.dq_dcol = acc_t(0);
    if (Deriv) {
      // Selects with compile-time indices: a run-time index into v / d would put
      // them in local memory on the GPU.
RESIZEOPS_UNROLL
      for (int k = 0; k < 2; ++k) {
RESIZEOPS_UNROLL
        for (int l = 0; l < 2; ++l) {
          const bool won = c.arg == 2 * k + l;
          const acc_t drow = dynopool_lerp<acc_t>(cw0[l], d[e][k][2 * l], cw1[l], d[e][k][2 * l + 1], false);
          const acc_t dcol = v[e][k][2 * l + 1] - v[e][k][2 * l];
          c.dq_drow = won ? drow : c.dq_drow;
          c.dq_dcol = won ? dcol : c.dq_dcol;
        }
      }
    }
  }
}

// The scatter form of grad_x (KernelForms::dynopool_grad_x): output cell
// (i, j) with gradient g and winner `arg` adds g times each tap's weight into
// the plane of grad_x at offset tap_row * sH + tap_col * sW, through
// add(offset, value): an atomicAdd on the GPU, a plain += in the emulation. At
// the last pixel (i1 == i0, w1 = 0) the second tap is skipped, as grid_sample
// skips it and as tap_weight sums it (an infinite g adds g, never 0 * g).
template <typename acc_t, typename index_t, typename Add>
RESIZEOPS_HD void dynopool_cell_scatter(uint8_t arg, acc_t g, const CellTaps<acc_t>& tp, index_t sH, index_t sW,
                                        Add add) {
  // The winner's query row k and column l, selected with compile-time indices.
  const bool k = (arg >> 1) != 0, l = (arg & 1) != 0;
  const int32_t r0 = k ? tp.r0[1] : tp.r0[0], r1 = k ? tp.r1[1] : tp.r1[0];
  const int32_t c0 = l ? tp.c0[1] : tp.c0[0], c1 = l ? tp.c1[1] : tp.c1[0];
  const acc_t rw1 = k ? tp.rw1[1] : tp.rw1[0], cw1 = l ? tp.cw1[1] : tp.cw1[0];
  const acc_t g0 = g * (acc_t(1) - rw1), g1 = g * rw1;
  const acc_t cw0 = acc_t(1) - cw1;
  const index_t top = static_cast<index_t>(r0) * sH, bot = static_cast<index_t>(r1) * sH;
  const index_t left = static_cast<index_t>(c0) * sW, right = static_cast<index_t>(c1) * sW;
  add(top + left, g0 * cw0);
  if (c1 != c0) add(top + right, g0 * cw1);
  if (r1 != r0) {
    add(bot + left, g1 * cw0);
    if (c1 != c0) add(bot + right, g1 * cw1);
  }
}

// Size-gradient terms of one output cell with gradient g: its contributions to
// dL/dH_hat and dL/dW_hat (the winner's coordinate derivatives times the
// coordinates' derivatives in the surrogate sizes; tp read WithD).
template <typename acc_t>
RESIZEOPS_HD void dynopool_cell_size_grad(const Cell<acc_t>& cell, acc_t g, const CellTaps<acc_t>& tp, acc_t* dh,
                                          acc_t* dw) {
  const bool k = (cell.arg >> 1) != 0, l = (cell.arg & 1) != 0;
  *dh = g * cell.dq_drow * (k ? tp.rd[1] : tp.rd[0]);
  *dw = g * cell.dq_dcol * (l ? tp.cd[1] : tp.cd[0]);
}

// ---------------------------------------------------------------------------
// One work item of the forward and of backward pass 1
// ---------------------------------------------------------------------------

// Work item t of the forward (position p: channel group p.c of Lanes channels, or
// channel p.c for Lanes = 1, whose linear index t is then the output element's):
// the Lanes output values, stored into out (strides os).
template <int Lanes, bool VectorIO, typename scalar_t, typename acc_t, typename index_t>
RESIZEOPS_HD void dynopool_forward_item(index_t t, const Pos<index_t>& p, index_t C, const scalar_t* x,
                                        const Strides4<index_t>& xs, scalar_t* out, const Strides4<index_t>& os,
                                        const AxisTaps<acc_t>& rows, const AxisTaps<acc_t>& cols) {
  const index_t c0 = p.c * Lanes;
  const int nl = Lanes == 1 ? 1 : static_cast<int>(C - c0 < Lanes ? C - c0 : Lanes);
  Cell<acc_t> cell[Lanes];
  dynopool_cell_lanes<Lanes, VectorIO, false, scalar_t, acc_t, index_t>(
      x + p.n * xs.n + c0 * xs.c, xs.h, xs.w, xs.c, nl, dynopool_cell_taps<false, acc_t, index_t>(rows, cols, p.h, p.w),
      cell);
  if constexpr (Lanes == 1) {
    out[t] = static_cast<scalar_t>(cell[0].value);
  } else {
    acc_t v[Lanes];
RESIZEOPS_UNROLL
    for (int e = 0; e < Lanes; ++e) v[e] = cell[e].value;
    store_lanes<Lanes, VectorIO, scalar_t, acc_t, index_t>(out + p.n * os.n + c0 * os.c + p.h * os.h + p.w * os.w, os.c, nl,
                                                  v);
  }
}

// The row form of the forward (experimental, KernelForms::forward = rows;
// NCHW output, one channel per thread): work item p
// (p.w: a group of kRowCells output columns) computes the cells (p.h, j0 + q),
// q < kRowCells, of one output row. They share their query rows: the row table
// entries and the tap rows' offsets are read and computed once instead of once
// per cell (the one-cell kernel spends ~207 sm_90 instructions per cell, at the
// H100's issue rate about the bytes' time). Cells past the row's end (Wo not a
// multiple of kRowCells) compute the last cell again and are not stored. With
// VectorIO (Wo % kRowCells == 0, a dense NCHW output aligned to kRowCells elements,
// types of at most 4 bytes), one vector store of the kRowCells values.
constexpr int kRowCells = 4;

template <bool VectorIO, typename scalar_t, typename acc_t, typename index_t>
RESIZEOPS_HD void dynopool_forward_row_item(const Pos<index_t>& p, index_t Wo, const scalar_t* x, const Strides4<index_t>& xs,
                                            scalar_t* out, const Strides4<index_t>& os, const AxisTaps<acc_t>& rows,
                                            const AxisTaps<acc_t>& cols) {
  const index_t j0 = p.w * kRowCells;
  CellTaps<acc_t> tp;
RESIZEOPS_UNROLL
  for (int k = 0; k < 2; ++k) {
    const index_t r = 2 * p.h + k;
    tp.r0[k] = rows.i0[r];
    tp.r1[k] = rows.i1[r];
    tp.rw1[k] = rows.w1[r];
    tp.rd[k] = acc_t(0);
    tp.cd[k] = acc_t(0);
  }
  const scalar_t* xnc = x + p.n * xs.n + p.c * xs.c;
  acc_t v[kRowCells];
RESIZEOPS_UNROLL
  for (int q = 0; q < kRowCells; ++q) {
    const index_t j = j0 + q < Wo ? j0 + q : Wo - 1;
RESIZEOPS_UNROLL
    for (int l = 0; l < 2; ++l) {
      const index_t s = 2 * j + l;
      tp.c0[l] = cols.i0[s];
      tp.c1[l] = cols.i1[s];
      tp.cw1[l] = cols.w1[s];
    }
    Cell<acc_t> cell[1];
    dynopool_cell_lanes<1, false, false, scalar_t, acc_t, index_t>(xnc, xs.h, xs.w, xs.c, 1, tp, cell);
    v[q] = cell[0].value;
  }
  scalar_t* o = out + p.n * os.n + p.c * os.c + p.h * os.h + j0 * os.w;
  if constexpr (VectorIO) {
    store_lanes<kRowCells, true, scalar_t, acc_t, index_t>(o, 1, kRowCells, v);
  } else {
RESIZEOPS_UNROLL
    for (int q = 0; q < kRowCells; ++q) {
      if (j0 + q < Wo) o[q * os.w] = static_cast<scalar_t>(v[q]);
    }
  }
}

// The separable forward (experimental, KernelForms::forward = separable;
// NCHW output, never timed on a GPU: docs/PERF_NOTES.md, version 7).
// Bilinear interpolation is separable, and the cell form does its vertical part
// 8 times per cell (2 query rows x 4 tap columns), from 16 gathered loads. Here
// one GPU block takes a strip of tw output columns of one (n, c) plane (a 2-D
// grid: plane, strip) and goes down it in tiles of th x tw cells:
//   step 1: the vertical interpolations of the tile's 2 th query rows at every
//     input column of the strip's column window (the columns its query columns
//     tap, a contiguous range), into shared memory, V[qr][col]; groups of
//     kTileGroup lanes take a query row each, their lanes consecutive columns, so
//     the loads of x are coalesced row segments;
//   step 2 (after a barrier): each thread takes one column of the strip (its query
//     columns' table entries read once per block) and th * tw / nthreads cells of
//     the tile: the 4 queries as horizontal interpolations of V, their max, one
//     store each; a second barrier before the next tile overwrites V.
// The same operations on the same values as the cell form (dynopool_lerp, then
// max4_first), so the same bits. The column window grows with W / Wo: the host
// takes this form only while it holds at most kTileMaxColsPerCell columns per
// strip column (r >= 0.25; beyond, the cell form reads less), and while the strips
// per plane stay within the grid's y extent; else the cell form.
constexpr int kTileTH = 16, kTileTW = 32;  // the default tile (cells): 2 per thread of 256
constexpr int kTileGroup = 8;              // step 1: lanes per query row
constexpr int64_t kTileMaxColsPerCell = 4, kTileMaxGridY = 65535;

// The tiling of one call: tiles of th x (1 << tw_log2) cells, tiles_h x tiles_w per
// plane (tiles_w strips of tiles_h tiles); the column window of any strip spans at
// most vcols input columns. Dynamic shared memory of a block: V, 2 th rows of
// vcols acc_t.
struct ForwardTilePlan {
  int32_t th, tw_log2, vcols;
  int64_t tiles_h, tiles_w;
  RESIZEOPS_HD int32_t tw() const { return int32_t{1} << tw_log2; }
  RESIZEOPS_HD int64_t smem_bytes(int64_t acc_bytes) const { return 2 * static_cast<int64_t>(th) * vcols * acc_bytes; }
};

// An upper bound on the input columns tapped by t consecutive output columns
// (2 t queries, s = in / (2 out) apart): the first query's first tap to the last
// one's second tap, at most (2 t - 1) s + 3 columns; one more, plus 1e-5 in, for
// the rounding of the coordinates (float32: a few ulps of in each); never more
// than in.
inline int64_t dynopool_tile_cols_bound(int64_t t, int64_t in_size, int64_t out_size) {
  const double span =
      static_cast<double>(2 * t - 1) * static_cast<double>(in_size) / (2.0 * static_cast<double>(out_size));
  const double bound = span + 4.0 + 1e-5 * static_cast<double>(in_size);
  return bound >= static_cast<double>(in_size) ? in_size : static_cast<int64_t>(bound);
}

// The plan for an (H, W) -> (Ho, Wo) call with tiles of at most max_th x max_tw
// cells (powers of two; the test hook KernelForms::forward_tile_h/_w lowers them),
// narrowed to the output. False where the separable form does not pay or fit (above).
// (At most 4 columns per cell: 2 * 16 rows of 4 * 32 + 4 float64 are 33 KiB of
// shared memory, below the 48 KiB a launch gets without opting in.)
inline bool dynopool_forward_tile_plan(int64_t W, int64_t Ho, int64_t Wo, ForwardTilePlan* plan,
                                       int32_t max_th = kTileTH, int32_t max_tw = kTileTW) {
  int32_t tw = 1, lg = 0;
  while (tw < max_tw && tw < Wo) {
    tw *= 2;
    ++lg;
  }
  int32_t th = 1;
  while (th < max_th && th < Ho) th *= 2;
  const int64_t vcols = dynopool_tile_cols_bound(tw, W, Wo);
  const ForwardTilePlan cand{th, lg, static_cast<int32_t>(vcols), (Ho + th - 1) / th, (Wo + tw - 1) / tw};
  if (vcols > kTileMaxColsPerCell * tw + 4 || cand.tiles_w > kTileMaxGridY) return false;
  *plan = cand;
  return true;
}

// One strip (plane n * C + c, strip tx): its output columns [j0, j0 + nj) and its
// column window [cw0, cw0 + ncw).
template <typename index_t>
struct SeparableStrip {
  index_t n, c;
  int32_t j0, nj, cw0, ncw;
};

// The column window of output columns [S->j0, S->j0 + S->nj): taps grow with the
// query, so it runs from the first query column's first tap to the last one's
// second tap (empty for nj = 0). At most vcols columns (the plan's bound, the
// shared memory's size): a violation is a bug.
template <typename acc_t, typename index_t>
RESIZEOPS_HD void dynopool_column_window(const AxisTaps<acc_t>& cols, int32_t vcols, SeparableStrip<index_t>* S) {
  S->cw0 = S->nj > 0 ? cols.i0[2 * S->j0] : 0;
  S->ncw = S->nj > 0 ? cols.i1[2 * (S->j0 + S->nj) - 1] + 1 - S->cw0 : 0;
#ifdef __CUDA_ARCH__
  if (S->ncw > vcols) __trap();
#else
  if (S->ncw > vcols) throw std::logic_error("resizeops: a separable strip's column window exceeds the plan's bound");
#endif
}

template <typename acc_t, typename index_t>
RESIZEOPS_HD SeparableStrip<index_t> dynopool_forward_strip(index_t plane, int32_t tx, const ForwardTilePlan& plan,
                                                           index_t C, int32_t Wo, const AxisTaps<acc_t>& cols) {
  SeparableStrip<index_t> S;
  S.n = plane / C;
  S.c = plane - S.n * C;
  S.j0 = tx * plan.tw();
  S.nj = Wo - S.j0 < plan.tw() ? Wo - S.j0 : plan.tw();
  dynopool_column_window<acc_t, index_t>(cols, plan.vcols, &S);
  return S;
}

// Step 1 for the tile of cell rows [i0, i0 + ni), thread tid of nthreads (a
// multiple of kTileGroup): the entries of V, query row qr (of the tile's 2 ni) at
// window column col, V[qr * ncw + col] = the vertical interpolation of x at input
// column cw0 + col, and WithD (the fused backward's winners, for the size
// gradient) D[qr * ncw + col] = x[i1] - x[i0] there. Group tid / kTileGroup takes
// query rows tid / kTileGroup, + nthreads / kTileGroup, ... (the row's table
// entries once per query row), its lane tid % kTileGroup columns lane, +
// kTileGroup, ...
template <bool WithD, typename scalar_t, typename acc_t, typename index_t>
RESIZEOPS_HD void dynopool_separable_rows(int32_t tid, int32_t nthreads, const SeparableStrip<index_t>& S, int32_t i0,
                                          int32_t ni, const scalar_t* x, const Strides4<index_t>& xs,
                                          const AxisTaps<acc_t>& rows, acc_t* s_v, acc_t* s_d) {
  const int32_t lane = tid % kTileGroup, step = nthreads / kTileGroup;
  // Offsets from x in index_t (32-bit: one wide multiply-add per load address).
  const index_t base = S.n * xs.n + S.c * xs.c + static_cast<index_t>(S.cw0) * xs.w;
  for (int32_t qr = tid / kTileGroup; qr < 2 * ni; qr += step) {
    const int32_t r = 2 * i0 + qr;
    const int32_t r0 = rows.i0[r], r1 = rows.i1[r];
    const acc_t rw1 = rows.w1[r], rw0 = acc_t(1) - rw1;
    const bool edge = r1 == r0;
    const index_t top = base + static_cast<index_t>(r0) * xs.h, bot = base + static_cast<index_t>(r1) * xs.h;
    acc_t* v = s_v + qr * S.ncw;
    for (int32_t col = lane; col < S.ncw; col += kTileGroup) {
      const index_t o = static_cast<index_t>(col) * xs.w;
      const acc_t a = static_cast<acc_t>(x[top + o]), b = static_cast<acc_t>(x[bot + o]);
      v[col] = dynopool_lerp<acc_t>(rw0, a, rw1, b, edge);
      if constexpr (WithD) s_d[qr * S.ncw + col] = b - a;
    }
  }
}

// Step 2's column of thread tid (lj = tid % tw of the strip; valid: within a
// partial strip): its query columns' taps relative to the window, weights and
// edge flags, read once per block.
template <typename acc_t>
struct StripColumn {
  int32_t j, c0[2], c1[2];
  acc_t cw0[2], cw1[2];
  bool edge[2], valid;
};

template <typename acc_t, typename index_t>
RESIZEOPS_HD StripColumn<acc_t> dynopool_forward_strip_column(int32_t tid, const ForwardTilePlan& plan,
                                                             const SeparableStrip<index_t>& S,
                                                             const AxisTaps<acc_t>& cols) {
  StripColumn<acc_t> K;
  const int32_t lj = tid & (plan.tw() - 1);
  K.valid = lj < S.nj;
  K.j = S.j0 + (K.valid ? lj : 0);
RESIZEOPS_UNROLL
  for (int l = 0; l < 2; ++l) {
    const int32_t s = 2 * K.j + l;
    K.c0[l] = cols.i0[s];
    K.c1[l] = cols.i1[s];
    K.cw1[l] = cols.w1[s];
    K.cw0[l] = acc_t(1) - K.cw1[l];
    K.edge[l] = K.c1[l] == K.c0[l];
    K.c0[l] -= S.cw0;
    K.c1[l] -= S.cw0;
  }
  return K;
}

// Step 2 for the tile of cell rows [i0, i0 + ni), thread tid of nthreads (a
// multiple of tw): its column's cells in rows tid / tw, + nthreads / tw, ... of the
// tile, each from V (the 4 queries, their max), stored into out.
template <typename scalar_t, typename acc_t, typename index_t>
RESIZEOPS_HD void dynopool_forward_tile_cells(int32_t tid, int32_t nthreads, const ForwardTilePlan& plan,
                                              const SeparableStrip<index_t>& S, const StripColumn<acc_t>& K, int32_t i0,
                                              int32_t ni, const acc_t* s_v, scalar_t* out, const Strides4<index_t>& os) {
  if (!K.valid) return;
  scalar_t* o = out + S.n * os.n + S.c * os.c + static_cast<index_t>(i0) * os.h + static_cast<index_t>(K.j) * os.w;
  const int32_t li0 = tid >> plan.tw_log2, lstep = nthreads >> plan.tw_log2;
  // V's taps of the cell's two query rows: v[t] (row 2 li) and v[ncw + t] (2 li + 1),
  // with v advanced by whole cell rows (one add per cell, one per shared load).
  const int32_t c0b[2] = {K.c0[0] + S.ncw, K.c0[1] + S.ncw}, c1b[2] = {K.c1[0] + S.ncw, K.c1[1] + S.ncw};
  const acc_t* v = s_v + 2 * li0 * S.ncw;
  for (int32_t li = li0; li < ni; li += lstep, v += 2 * lstep * S.ncw) {
    acc_t q[4];
RESIZEOPS_UNROLL
    for (int l = 0; l < 2; ++l) {
      q[l] = dynopool_lerp<acc_t>(K.cw0[l], v[K.c0[l]], K.cw1[l], v[K.c1[l]], K.edge[l]);
      q[2 + l] = dynopool_lerp<acc_t>(K.cw0[l], v[c0b[l]], K.cw1[l], v[c1b[l]], K.edge[l]);
    }
    uint8_t arg;
    const acc_t value = math::max4_first<acc_t>(q[0], q[1], q[2], q[3], &arg);
    o[static_cast<index_t>(li) * os.h] = static_cast<scalar_t>(value);
  }
}

// Work item t of backward pass 1 (positions as in dynopool_forward_item): per
// valid lane, the winner and, with NeedX, either its argmax byte (at argmax,
// strides as; linear index t for Lanes = 1) or, with Scatter, the cell's gradient
// added into grad_x through add(offset, value) (offsets of the dense strides
// gxs); with NeedSize, the size-gradient terms added to *dh_sum, *dw_sum.
template <int Lanes, bool VectorIO, bool NeedX, bool NeedSize, bool Scatter, typename scalar_t, typename acc_t,
          typename index_t, typename Add>
RESIZEOPS_HD void dynopool_backward_item(index_t t, const Pos<index_t>& p, index_t C, const scalar_t* x,
                                         const Strides4<index_t>& xs, const scalar_t* grad_out, const Strides4<index_t>& gs,
                                         uint8_t* argmax, const Strides4<index_t>& as, const Strides4<index_t>& gxs,
                                         const AxisTaps<acc_t>& rows, const AxisTaps<acc_t>& cols, Add add,
                                         double* dh_sum, double* dw_sum) {
  const index_t n = p.n, i = p.h, j = p.w, c0 = p.c * Lanes;
  const int nl = Lanes == 1 ? 1 : static_cast<int>(C - c0 < Lanes ? C - c0 : Lanes);
  const CellTaps<acc_t> tp = dynopool_cell_taps<NeedSize, acc_t, index_t>(rows, cols, i, j);
  Cell<acc_t> cell[Lanes];
  dynopool_cell_lanes<Lanes, VectorIO, NeedSize, scalar_t, acc_t, index_t>(x + n * xs.n + c0 * xs.c, xs.h, xs.w, xs.c, nl, tp,
                                                                  cell);
  acc_t g[Lanes];
  if constexpr (NeedSize || (NeedX && Scatter)) {
    load_lanes<Lanes, VectorIO, scalar_t, acc_t, index_t>(grad_out + n * gs.n + c0 * gs.c + i * gs.h + j * gs.w, gs.c, nl, g);
  } else {
RESIZEOPS_UNROLL
    for (int e = 0; e < Lanes; ++e) g[e] = acc_t(0);
  }
RESIZEOPS_UNROLL
  for (int e = 0; e < Lanes; ++e) {
    if (Lanes > 1 && e >= nl) break;
    if constexpr (NeedX && Scatter) {
      const index_t base = n * gxs.n + (c0 + e) * gxs.c;
      dynopool_cell_scatter<acc_t, index_t>(cell[e].arg, g[e], tp, gxs.h, gxs.w,
                                            [&add, base](index_t off, acc_t v) { add(base + off, v); });
    } else if constexpr (NeedX) {
      argmax[Lanes == 1 ? t : n * as.n + (c0 + e) * as.c + i * as.h + j * as.w] = cell[e].arg;
    }
    if constexpr (NeedSize) {
      acc_t dh, dw;
      dynopool_cell_size_grad<acc_t>(cell[e], g[e], tp, &dh, &dw);
      *dh_sum += static_cast<double>(dh);
      *dw_sum += static_cast<double>(dw);
    }
  }
}

// ---------------------------------------------------------------------------
// One input pixel (the backward's gather)
// ---------------------------------------------------------------------------

// grad_x at (h, w) of one image/channel plane: the sum, over the queries that
// read the pixel and won their cell's max, of the cell's gradient times the
// pixel's bilinear weight in the query (planes: GatherPlanes below). Summed per
// query row, then across rows, like the CPU kernel.
//
// The general form loops over the pixel's query rows and columns with
// run-time trip counts and conditional loads: on the GPU each pixel then waits
// for several dependent L2 round trips (docs/PERF_NOTES.md, version 2). When
// the pixel's queries fit a kTile x kTile tile (queries are 1/(2 rho) pixels
// apart for an axis resized by rho = out/in and a pixel is read by those within
// 2 pixels: at most 3 per axis whenever rho <= 0.75, i.e. any pooling-like
// downsampling), the tile form instead
// loads every argmax and grad_out value of the tile at once (indices clamped
// into the range, unconditional), then selects: same sum, same order.
//
// Lanes (as in the forward): Lanes channels of the pixel at once; the table reads and
// the loop are shared, and each step's argmax and grad_out loads go out for the Lanes
// channels together.
constexpr int kTile = 3;

// The planes a gather reads: grad_out's (g, strides gH, gW, channel stride gC)
// and the argmax's (a, aH, aW, aC) at channel c0 of image n, with nl valid lanes.
template <typename scalar_t, typename index_t>
struct GatherPlanes {
  const scalar_t* g;
  index_t gH, gW, gC;
  const uint8_t* a;
  index_t aH, aW, aC;
  int nl;
};

template <int Lanes, bool VectorIO, typename scalar_t, typename acc_t, typename index_t>
RESIZEOPS_HD void dynopool_pixel_grad_loop(const GatherPlanes<scalar_t, index_t>& planes, const AxisTaps<acc_t>& rows,
                                           const AxisTaps<acc_t>& cols, index_t h, index_t w, int32_t rb, int32_t re,
                                           int32_t sb, int32_t se, acc_t (&acc)[Lanes]) {
RESIZEOPS_UNROLL
  for (int e = 0; e < Lanes; ++e) acc[e] = acc_t(0);
  for (int32_t r = rb; r < re; ++r) {
    const acc_t wr = tap_weight<acc_t>(rows, r, static_cast<int32_t>(h));
    const index_t i = r >> 1;
    const int k = r & 1;
    acc_t row_sum[Lanes];
RESIZEOPS_UNROLL
    for (int e = 0; e < Lanes; ++e) row_sum[e] = acc_t(0);
    for (int32_t s = sb; s < se; ++s) {
      const index_t j = s >> 1;
      const int code = 2 * k + (s & 1);
      uint8_t a[Lanes];
      load_lanes<Lanes, VectorIO, uint8_t, uint8_t, index_t>(planes.a + i * planes.aH + j * planes.aW, planes.aC, planes.nl, a);
      bool hit[Lanes], any = false;
RESIZEOPS_UNROLL
      for (int e = 0; e < Lanes; ++e) {
        hit[e] = a[e] == code;
        any = any || hit[e];
      }
      if (any) {  // grad_out only where a lane's query won
        const acc_t ws = tap_weight<acc_t>(cols, s, static_cast<int32_t>(w));
        acc_t g[Lanes];
        load_lanes<Lanes, VectorIO, scalar_t, acc_t, index_t>(planes.g + i * planes.gH + j * planes.gW, planes.gC, planes.nl, g);
RESIZEOPS_UNROLL
        for (int e = 0; e < Lanes; ++e) {
          if (hit[e]) row_sum[e] += g[e] * ws;
        }
      }
    }
RESIZEOPS_UNROLL
    for (int e = 0; e < Lanes; ++e) acc[e] += wr * row_sum[e];
  }
}

template <int Lanes, bool VectorIO, typename scalar_t, typename acc_t, typename index_t>
RESIZEOPS_HD void dynopool_pixel_grad_tile(const GatherPlanes<scalar_t, index_t>& planes, const AxisTaps<acc_t>& rows,
                                           const AxisTaps<acc_t>& cols, index_t h, index_t w, int32_t rb, int32_t re,
                                           int32_t sb, int32_t se, acc_t (&acc)[Lanes]) {
  // Columns of the tile: offsets, query code l, weight, valid. Slots past the
  // range repeat its last query (in-bounds loads) and never count.
  index_t a_off[kTile], g_off[kTile];
  int l_of[kTile];
  acc_t ws[kTile];
  bool s_ok[kTile];
RESIZEOPS_UNROLL
  for (int u = 0; u < kTile; ++u) {
    s_ok[u] = sb + u < se;
    const int32_t s = s_ok[u] ? sb + u : se - 1;
    const index_t j = s >> 1;
    l_of[u] = s & 1;
    a_off[u] = j * planes.aW;
    g_off[u] = j * planes.gW;
    ws[u] = tap_weight<acc_t>(cols, s, static_cast<int32_t>(w));
  }
  // Every load of the tile, issued before any is used.
  uint8_t a[kTile][kTile][Lanes];
  acc_t g[kTile][kTile][Lanes];
  acc_t wr[kTile];
  int k_of[kTile];
  bool r_ok[kTile];
RESIZEOPS_UNROLL
  for (int t = 0; t < kTile; ++t) {
    r_ok[t] = rb + t < re;
    const int32_t r = r_ok[t] ? rb + t : re - 1;
    const index_t i = r >> 1;
    k_of[t] = r & 1;
    wr[t] = tap_weight<acc_t>(rows, r, static_cast<int32_t>(h));
RESIZEOPS_UNROLL
    for (int u = 0; u < kTile; ++u) {
      load_lanes<Lanes, VectorIO, uint8_t, uint8_t, index_t>(planes.a + i * planes.aH + a_off[u], planes.aC, planes.nl, a[t][u]);
      load_lanes<Lanes, VectorIO, scalar_t, acc_t, index_t>(planes.g + i * planes.gH + g_off[u], planes.gC, planes.nl, g[t][u]);
    }
  }
RESIZEOPS_UNROLL
  for (int e = 0; e < Lanes; ++e) {
    acc[e] = acc_t(0);
RESIZEOPS_UNROLL
    for (int t = 0; t < kTile; ++t) {
      acc_t row_sum = acc_t(0);
RESIZEOPS_UNROLL
      for (int u = 0; u < kTile; ++u) {
        const bool hit = s_ok[u] && a[t][u][e] == 2 * k_of[t] + l_of[u];
        row_sum += hit ? g[t][u][e] * ws[u] : acc_t(0);
      }
      // A slot past the rows' range must not add anything, not even 0 * NaN.
      acc[e] += r_ok[t] ? wr[t] * row_sum : acc_t(0);
    }
  }
}

// Tiles = false keeps the loop form for every pixel (version 2 of the CUDA
// gather), so that one GPU run can time both forms (KernelForms::gather,
// kernel_forms.h); the two give bit-identical sums in the serial emulation.
template <int Lanes, bool VectorIO, bool Tiles, typename scalar_t, typename acc_t, typename index_t>
RESIZEOPS_HD void dynopool_pixel_grad(const GatherPlanes<scalar_t, index_t>& planes, const AxisTaps<acc_t>& rows,
                                      const AxisTaps<acc_t>& cols, index_t h, index_t w, acc_t (&acc)[Lanes]) {
  const int32_t rb = rows.range[2 * h], re = rows.range[2 * h + 1];
  const int32_t sb = cols.range[2 * w], se = cols.range[2 * w + 1];
  if (re <= rb || se <= sb) {  // no query reads this pixel (downsampling below 0.5)
RESIZEOPS_UNROLL
    for (int e = 0; e < Lanes; ++e) acc[e] = acc_t(0);
    return;
  }
  if (Tiles && re - rb <= kTile && se - sb <= kTile) {
    dynopool_pixel_grad_tile<Lanes, VectorIO, scalar_t, acc_t, index_t>(planes, rows, cols, h, w, rb, re, sb, se, acc);
    return;
  }
  dynopool_pixel_grad_loop<Lanes, VectorIO, scalar_t, acc_t, index_t>(planes, rows, cols, h, w, rb, re, sb, se, acc);
}

// Work item t of backward pass 2 (position p over grad_x's pixels, channel groups
// of Lanes as in the forward; t is the pixel's linear index for Lanes = 1): grad_x of Lanes
// channels, stored at grad_x (dense strides gxs).
template <int Lanes, bool VectorIO, bool Tiles, typename scalar_t, typename acc_t, typename index_t>
RESIZEOPS_HD void dynopool_pixel_item(index_t t, const Pos<index_t>& p, index_t C, const scalar_t* grad_out,
                                      const Strides4<index_t>& gs, const uint8_t* argmax, const Strides4<index_t>& as,
                                      scalar_t* grad_x, const Strides4<index_t>& gxs, const AxisTaps<acc_t>& rows,
                                      const AxisTaps<acc_t>& cols) {
  const index_t c0 = p.c * Lanes;
  const int nl = Lanes == 1 ? 1 : static_cast<int>(C - c0 < Lanes ? C - c0 : Lanes);
  const GatherPlanes<scalar_t, index_t> planes{grad_out + p.n * gs.n + c0 * gs.c, gs.h, gs.w, gs.c,
                                               argmax + p.n * as.n + c0 * as.c,  as.h, as.w, as.c, nl};
  acc_t g[Lanes];
  dynopool_pixel_grad<Lanes, VectorIO, Tiles, scalar_t, acc_t, index_t>(planes, rows, cols, p.h, p.w, g);
  if constexpr (Lanes == 1) {
    grad_x[t] = static_cast<scalar_t>(g[0]);
  } else {
    store_lanes<Lanes, VectorIO, scalar_t, acc_t, index_t>(grad_x + p.n * gxs.n + c0 * gxs.c + p.h * gxs.h + p.w * gxs.w,
                                                  gxs.c, nl, g);
  }
}

// ---------------------------------------------------------------------------
// The fused backward: winners, size gradient and gather in one kernel
// ---------------------------------------------------------------------------

// KernelForms::grad_x = fused (experimental: no GPU run has timed it;
// docs/PERF_NOTES.md, versions 6 and 9). One GPU block per tile of
// th x tw input pixels of cb channels of one image (FusedPlan::cb_log2: one channel,
// one (n, c) plane, for an NCHW grad_x; for channels_last, 8 channels (4 in float64)
// where C allows, so that the 8 threads of a cell or pixel read and write 32 bytes
// of contiguous channels: dynopool_fused_channels_log2). A thread keeps its
// channels within the block: phase A's one channel, or Lanes with the lanes form
// (dynopool_fused_channel), B1's one (tid mod cb), B2's quads; the shared arrays
// below hold cb entries per cell, row sum or pixel, channel fastest:
//   phase A: each thread takes cells of the tile's cell window, the output cells
//     whose queries read the tile (a few more than the tile's share: the window
//     overlaps its neighbours' by about one cell per side), recomputes the
//     cell's winner, and writes its code and its gradient into shared memory;
//     the size-gradient terms of the cells the tile owns (those whose first
//     query row's and column's first taps lie in the tile: each cell is owned
//     by exactly one tile) go into the thread's float64 sums;
//   meanwhile, the tile's axis entries (FusedAxes: per tile row and column, the
//     queries reading it, their window offsets and weights) go to shared memory;
//   phase B (after a barrier): the gather from shared memory, in two separable
//     steps (B1: row sums over query columns; B2, after another barrier: each
//     pixel's sum over its query rows), in the loop form's order (bit-identical to
//     the two-pass gather); grad_x is written once.
// Bytes: x (plus the window's overlap, mostly from L2), grad_out and grad_x
// once each: no argmax buffer, no second pass over grad_out, no zero-fill and
// no atomics, so deterministic and float32-accumulated for every dtype.
//
// Sizes. The tile's cell window is bounded per axis from the query spacing
// (dynopool_fused_window_bound); the host picks the largest tile whose window
// and row sums fit kFusedMaxBytes of shared memory and falls back to the default
// backward when none does (up-sampling far beyond the papers' range).
constexpr int64_t kFusedMaxBytes = 40 * 1024;
// The largest tile (rows, columns: powers of two) and the queries per row / column
// the per-tile axis entries hold (FusedAxes).
constexpr int kFusedMaxTH = 16, kFusedMaxTW = 64, kFusedTaps = 3;
// The threads of a block (the kernel's kThreads; the emulation runs as many): B1
// gives each thread one (tile column, channel), so tw * cb <= kFusedThreads.
constexpr int32_t kFusedThreads = 256;

// An upper bound on the cells along one axis (in -> out) whose queries read a
// tile of t input indices. Queries are s = in / (2 out) apart; those reading
// indices [h0, h0 + t) have their first tap in [h0 - 1, h0 + t - 1]: unclipped,
// at most (t + 1) / s + 1 of them; clipped to index 0 or in - 1, at most
// 0.5 / s + 0.5 at each border. Two more for rounding; n consecutive queries
// span at most n / 2 + 1 cells; and never more than out.
inline int64_t dynopool_fused_window_bound(int64_t t, int64_t in_size, int64_t out_size) {
  const double queries = static_cast<double>(t + 2) * 2.0 * static_cast<double>(out_size) /
                             static_cast<double>(in_size) + 5.0;
  const double bound = queries / 2.0 + 1.0;
  return bound >= static_cast<double>(out_size) ? out_size : static_cast<int64_t>(bound);
}

// The tiling of one call: tiles of th x (1 << tw_log2) pixels of cb = 1 << cb_log2
// channels, tiles_h x tiles_w of them per image and channel block; the cell window
// of any tile is at most cell_rows x cell_cols. With separable winners (vcols > 0;
// dynopool_fused_separable; one channel per block), the window's columns tap at
// most vcols input columns.
// Dynamic shared memory of a block: the window's gradients (acc_t, cb per cell,
// padded to a multiple of 4 so that the next region is 16-byte aligned); one region
// (acc_t) that holds the row sums (phase B: 2 query rows per cell row, tw columns, cb
// channels) and, before them, the separable winners' V and D (phase A: 2 query rows
// per cell row, vcols columns, each); then the window's winner codes (cb per cell).
// B2 takes a tile row's (column, channel) entries, flat = column * cb + channel, in
// quads of kFusedQuad consecutive ones (b2_items): 4 columns of one channel (cb = 1)
// or 4 channels of one column (cb >= 4), contiguous in shared memory and in grad_x.
constexpr int kFusedQuad = 4;

struct FusedPlan {
  int32_t th, tw_log2, cell_rows, cell_cols;
  int64_t tiles_h, tiles_w;
  int32_t vcols, cb_log2;
  // Phase A's channels per thread, as a shift (dynopool_fused_cell; 0: one).
  int32_t lanes_log2;
  RESIZEOPS_HD int32_t tw() const { return int32_t{1} << tw_log2; }
  RESIZEOPS_HD int32_t cb() const { return int32_t{1} << cb_log2; }
  RESIZEOPS_HD int64_t max_cells() const { return static_cast<int64_t>(cell_rows) * cell_cols; }
  RESIZEOPS_HD int64_t window_slots() const { return max_cells() << cb_log2; }
  RESIZEOPS_HD int64_t slots_padded() const { return (window_slots() + 3) & ~int64_t{3}; }
  RESIZEOPS_HD int64_t row_sums() const { return (2 * static_cast<int64_t>(cell_rows) * tw()) << cb_log2; }
  RESIZEOPS_HD int64_t v_entries() const { return 2 * static_cast<int64_t>(cell_rows) * vcols; }
  RESIZEOPS_HD int64_t region() const { return row_sums() > 2 * v_entries() ? row_sums() : 2 * v_entries(); }
  RESIZEOPS_HD int64_t smem_bytes(int64_t acc_bytes) const {
    return (slots_padded() + region()) * acc_bytes + window_slots();
  }
  // A tile row's (column, channel) entries, tw * cb, as a shift.
  RESIZEOPS_HD int32_t flat_log2() const { return tw_log2 + cb_log2; }
  // Quads per tile row (tw * cb / 4; 1 for rows narrower than a quad), as a shift.
  RESIZEOPS_HD int32_t quads_log2() const { return flat_log2() >= 2 ? flat_log2() - 2 : 0; }
  RESIZEOPS_HD int32_t b2_items() const { return th << quads_log2(); }
};

// The channels per block (as a shift) of a fused backward: 8 (float64: 4) for a
// channels_last grad_x where C is a multiple of it, 4 where C is a multiple of 4,
// else 1 (as for NCHW). (No block ever has channels past C; a quad of 4 channels
// never leaves its pixel.)
inline int32_t dynopool_fused_channels_log2(int64_t C, int64_t elem_bytes, bool channels_last) {
  if (!channels_last) return 0;
  if (elem_bytes <= 4 && C % 8 == 0) return 3;
  return C % 4 == 0 ? 2 : 0;
}

// The plan for an (H, W) -> (Ho, Wo) call with blocks of 1 << cb_log2 channels,
// starting from tiles of at most max_th x max_tw pixels (powers of two; the defaults
// give 1024 pixels, 4 per thread of a 256-thread block, 64 wide for coalesced rows
// of an NCHW grad_x; with cb channels at most kFusedThreads / cb wide: 16 x 32 for 8
// channels) and halving rows, then columns, until the window fits. False if none
// fits.
inline bool dynopool_fused_plan(int64_t H, int64_t W, int64_t Ho, int64_t Wo, int64_t acc_bytes, FusedPlan* plan,
                                int32_t max_th = kFusedMaxTH, int32_t max_tw = kFusedMaxTW, int32_t cb_log2 = 0) {
  if (max_th > kFusedMaxTH) max_th = kFusedMaxTH;
  if (max_tw > kFusedMaxTW) max_tw = kFusedMaxTW;
  if (max_tw > (kFusedThreads >> cb_log2)) max_tw = kFusedThreads >> cb_log2;
  int32_t tw = 1;
  while (tw < max_tw && tw < W) tw *= 2;
  int32_t th = 1;
  while (th < max_th && th < H) th *= 2;
  for (;;) {
    const int64_t rows = dynopool_fused_window_bound(th, H, Ho), cols = dynopool_fused_window_bound(tw, W, Wo);
    int32_t lg = 0;
    while ((int32_t{1} << lg) < tw) ++lg;
    const FusedPlan cand{th, lg, static_cast<int32_t>(rows), static_cast<int32_t>(cols), (H + th - 1) / th,
                         (W + tw - 1) / tw, 0, cb_log2, 0};
    if (cand.smem_bytes(acc_bytes) <= kFusedMaxBytes) {
      *plan = cand;
      return true;
    }
    if (th > 1) {
      th /= 2;
    } else if (tw > 1) {
      tw /= 2;
    } else {
      return false;
    }
  }
}

// Separable winners for a plan (KernelForms::fused_winners_separable;
// see dynopool_fused_cell_separable): the column window's bound for the plan's
// cell_cols (dynopool_tile_cols_bound), taken where it holds at most
// kTileMaxColsPerCell columns per cell column (as the separable forward) and V and
// D fit kFusedMaxBytes with the rest; false (plan unchanged: winners by cells)
// otherwise.
inline bool dynopool_fused_separable(int64_t W, int64_t Wo, int64_t acc_bytes, FusedPlan* plan) {
  if (plan->cb_log2 != 0) return false;  // (one channel per block: V and D are a plane's)
  const int64_t vcols = dynopool_tile_cols_bound(plan->cell_cols, W, Wo);
  if (vcols > kTileMaxColsPerCell * plan->cell_cols + 4) return false;
  FusedPlan cand = *plan;
  cand.vcols = static_cast<int32_t>(vcols);
  if (cand.smem_bytes(acc_bytes) > kFusedMaxBytes) return false;
  *plan = cand;
  return true;
}

// One tile (block work item b = (plane, tile row, tile column), planes n * C / cb +
// channel block): its image n and first channel c, its pixels [h0, h1) x [w0, w1)
// and its cell window [ci, ci + nci) x [cj, cj + ncj).
template <typename index_t>
struct FusedTile {
  index_t n, c;
  int32_t h0, h1, w0, w1;
  int32_t ci, nci, cj, ncj;
};

// The window of the queries that read [h0, h1) (contiguous: the ranges are
// monotone), as the cells [*c0, *c0 + *nc); empty where no query reads it.
template <typename acc_t>
RESIZEOPS_HD void dynopool_fused_window(const AxisTaps<acc_t>& t, int32_t h0, int32_t h1, int32_t* c0, int32_t* nc) {
  const int32_t qb = t.range[2 * h0], qe = t.range[2 * (h1 - 1) + 1];
  *c0 = qb >> 1;
  *nc = qe > qb ? ((qe - 1) >> 1) + 1 - *c0 : 0;
}

template <typename acc_t, typename index_t>
RESIZEOPS_HD FusedTile<index_t> dynopool_fused_tile(index_t b, const FusedPlan& P, index_t C, int32_t H, int32_t W,
                                                   const AxisTaps<acc_t>& rows, const AxisTaps<acc_t>& cols) {
  // In index_t: 32-bit divisions on the 32-bit path (the tiles number at most
  // x's elements), a few instructions each per tile instead of ~70 in 64 bits.
  const index_t tiles_w = static_cast<index_t>(P.tiles_w), per_plane = static_cast<index_t>(P.tiles_h) * tiles_w;
  const index_t plane = b / per_plane, r = b - plane * per_plane;
  const index_t ty = r / tiles_w, tx = r - ty * tiles_w;
  const index_t blocks_c = C >> P.cb_log2;  // (cb divides C: dynopool_fused_channels_log2)
  FusedTile<index_t> T;
  T.n = plane / blocks_c;
  T.c = (plane - T.n * blocks_c) << P.cb_log2;
  T.h0 = static_cast<int32_t>(ty * P.th);
  T.h1 = T.h0 + P.th < H ? T.h0 + P.th : H;
  T.w0 = static_cast<int32_t>(tx * P.tw());
  T.w1 = T.w0 + P.tw() < W ? T.w0 + P.tw() : W;
  dynopool_fused_window<acc_t>(rows, T.h0, T.h1, &T.ci, &T.nci);
  dynopool_fused_window<acc_t>(cols, T.w0, T.w1, &T.cj, &T.ncj);
  // The plan's bound (the shared memory's size); a violation is a bug.
#ifdef __CUDA_ARCH__
  if (T.nci > P.cell_rows || T.ncj > P.cell_cols) __trap();
#else
  if (T.nci > P.cell_rows || T.ncj > P.cell_cols) {
    throw std::logic_error("resizeops: a fused tile's cell window exceeds the plan's bound");
  }
#endif
  return T;
}

// A thread's cells of a tile's window of nc columns: k = start, start + step, ...
// (row-major), each with its row ki and column kj, found with one division per
// thread and tile instead of one per cell (a 32-bit division by a run-time value
// is ~30 sm_90 instructions, a sixth of a cell's phase A).
struct WindowCursor {
  int32_t k, ki, kj, step, di, dj, nc;
  RESIZEOPS_HD WindowCursor(int32_t start, int32_t step_, int32_t nc_) : k(start), step(step_), nc(nc_) {
    ki = nc > 0 ? start / nc : 0;  // (an empty window has no cells: ki, kj are never used)
    kj = start - ki * nc;
    di = nc > 0 ? step / nc : 0;
    dj = step - di * nc;
  }
  RESIZEOPS_HD void advance() {
    k += step;
    ki += di;
    kj += dj;
    if (kj >= nc) {
      kj -= nc;
      ++ki;
    }
  }
};

// Phase A's threads (winners by cells): each takes Lanes = 1 << lanes_log2 channels of
// a cell, so a cell's cb channels are cb / Lanes consecutive threads (their loads of x
// and grad_out contiguous in channels_last). Thread tid's first channel in the
// block, (tid mod cb / Lanes) * Lanes, and its cells, those of tid / (cb / Lanes) among
// nthreads / (cb / Lanes).
RESIZEOPS_HD int32_t dynopool_fused_channel(int32_t tid, const FusedPlan& plan) {
  return (tid & ((int32_t{1} << (plan.cb_log2 - plan.lanes_log2)) - 1)) << plan.lanes_log2;
}

RESIZEOPS_HD WindowCursor dynopool_fused_cursor(int32_t tid, int32_t nthreads, const FusedPlan& plan,
                                                int32_t ncj) {
  const int32_t shift = plan.cb_log2 - plan.lanes_log2;
  return WindowCursor(tid >> shift, nthreads >> shift, ncj);
}

// Phase A, cell w.k of the tile's window (w.k < nci * ncj, row-major) in the Lanes
// channels T.c + ch + [0, Lanes): the winners' codes and the cell's gradients into slots
// (k << cb_log2) + ch + [0, Lanes) of s_arg and s_g; with NeedSize and a cell the tile
// owns, its size-gradient terms added to *dh_sum, *dw_sum. Lanes > 1 (the lanes form,
// dynopool_cell_lanes: channels_last, KernelForms::lanes = 4, where x and grad_out
// allow vector loads of Lanes channels: the host checks) loads Lanes channels of each tap
// and of grad_out with one vector load, and shares the table entries and offsets.
template <int Lanes, bool NeedSize, typename scalar_t, typename acc_t, typename index_t>
RESIZEOPS_HD void dynopool_fused_cell(const WindowCursor& w, int32_t cb_log2, int32_t ch, const FusedTile<index_t>& T,
                                      const scalar_t* x, const Strides4<index_t>& xs, const scalar_t* grad_out,
                                      const Strides4<index_t>& gs, const AxisTaps<acc_t>& rows, const AxisTaps<acc_t>& cols,
                                      acc_t* s_g, uint8_t* s_arg, double* dh_sum, double* dw_sum) {
  constexpr bool Vec = Lanes > 1;
  const int32_t k = (w.k << cb_log2) + ch;
  const index_t i = T.ci + w.ki, j = T.cj + w.kj, c = T.c + ch;
  const CellTaps<acc_t> tp = dynopool_cell_taps<NeedSize, acc_t, index_t>(rows, cols, i, j);
  Cell<acc_t> cell[Lanes];
  dynopool_cell_lanes<Lanes, Vec, NeedSize, scalar_t, acc_t, index_t>(x + T.n * xs.n + c * xs.c, xs.h, xs.w, xs.c, Lanes, tp,
                                                                  cell);
  acc_t g[Lanes];
  load_lanes<Lanes, Vec, scalar_t, acc_t, index_t>(grad_out + T.n * gs.n + c * gs.c + i * gs.h + j * gs.w, gs.c, Lanes, g);
RESIZEOPS_UNROLL
  for (int e = 0; e < Lanes; ++e) {
    s_g[k + e] = g[e];
    s_arg[k + e] = cell[e].arg;
  }
  if constexpr (NeedSize) {
    // (Its first taps are never past the tile: a cell of the window has a query
    // reading the tile, and first taps grow with the query.)
    if (tp.r0[0] >= T.h0 && tp.c0[0] >= T.w0) {
RESIZEOPS_UNROLL
      for (int e = 0; e < Lanes; ++e) {
        acc_t dh, dw;
        dynopool_cell_size_grad<acc_t>(cell[e], g[e], tp, &dh, &dw);
        *dh_sum += static_cast<double>(dh);
        *dw_sum += static_cast<double>(dw);
      }
    }
  }
}

// Phase A with separable winners (FusedPlan::vcols > 0;
// KernelForms::fused_winners_separable). The cell form above gathers 16 values of x and does 12
// interpolations per cell (~207 sm_90 instructions, the forward's cell form); as in
// the separable forward, phase A here is two steps:
//   A1: the vertical interpolations V (and, for the size gradient, the vertical
//     differences D = x[i1] - x[i0]) of the window's 2 nci query rows at every input
//     column its query columns tap (dynopool_separable_rows over the strip
//     dynopool_fused_strip gives), into shared memory; with the axis entries;
//   A2 (after a barrier): cell k from there (dynopool_fused_cell_separable): the 4
//     horizontal interpolations, the max, and for a cell the tile owns the winner's
//     derivatives (dq_drow from D, dq_dcol from V), the cell form's expressions on
//     the same values: codes, gradients and size-gradient terms bit-identical to it.
// V and D share the row sums' region of shared memory (phase B writes the row sums
// after the barrier that ends phase A).
template <typename acc_t, typename index_t>
RESIZEOPS_HD SeparableStrip<index_t> dynopool_fused_strip(const FusedTile<index_t>& T, const FusedPlan& plan,
                                                         const AxisTaps<acc_t>& cols) {
  SeparableStrip<index_t> S;
  S.n = T.n;
  S.c = T.c;
  S.j0 = T.cj;
  S.nj = T.ncj;
  dynopool_column_window<acc_t, index_t>(cols, plan.vcols, &S);
  return S;
}

// A2, cell w.k of the tile's window (as dynopool_fused_cell), from V (s_v) and, with
// NeedSize, D (s_d): rows 2 ki and 2 ki + 1 of the window's query rows, S's columns.
template <bool NeedSize, typename scalar_t, typename acc_t, typename index_t>
RESIZEOPS_HD void dynopool_fused_cell_separable(const WindowCursor& w, const FusedTile<index_t>& T,
                                                const SeparableStrip<index_t>& S, const acc_t* s_v, const acc_t* s_d,
                                                const scalar_t* grad_out, const Strides4<index_t>& gs,
                                                const AxisTaps<acc_t>& rows, const AxisTaps<acc_t>& cols, acc_t* s_g,
                                                uint8_t* s_arg, double* dh_sum, double* dw_sum) {
  const int32_t k = w.k, ki = w.ki;
  const index_t i = T.ci + ki, j = T.cj + w.kj;
  const CellTaps<acc_t> tp = dynopool_cell_taps<NeedSize, acc_t, index_t>(rows, cols, i, j);
  // The cell's 4 tap columns in the window (m = 2 l + t: tap t of query column l).
  int32_t col[4];
  acc_t cw0[2], cw1[2];
  bool edge[2];
RESIZEOPS_UNROLL
  for (int l = 0; l < 2; ++l) {
    col[2 * l] = tp.c0[l] - S.cw0;
    col[2 * l + 1] = tp.c1[l] - S.cw0;
    cw1[l] = tp.cw1[l];
    cw0[l] = acc_t(1) - cw1[l];
    edge[l] = tp.c1[l] == tp.c0[l];
  }
  const int32_t row0 = 2 * ki * S.ncw;  // V's query row 2 ki; 2 ki + 1 is ncw further
  acc_t q[4];
RESIZEOPS_UNROLL
  for (int kk = 0; kk < 2; ++kk) {
    const acc_t* v = s_v + row0 + kk * S.ncw;
RESIZEOPS_UNROLL
    for (int l = 0; l < 2; ++l) {
      q[2 * kk + l] = dynopool_lerp<acc_t>(cw0[l], v[col[2 * l]], cw1[l], v[col[2 * l + 1]], edge[l]);
    }
  }
  Cell<acc_t> cell;
  cell.value = math::max4_first<acc_t>(q[0], q[1], q[2], q[3], &cell.arg);
  const acc_t g = static_cast<acc_t>(grad_out[T.n * gs.n + T.c * gs.c + i * gs.h + j * gs.w]);
  s_g[k] = g;
  s_arg[k] = cell.arg;
  if constexpr (NeedSize) {
    // A cell the tile owns (as dynopool_fused_cell): the winner's derivatives, from
    // its query row wk and column wl of V and D (shared memory: run-time indices).
    if (tp.r0[0] >= T.h0 && tp.c0[0] >= T.w0) {
      const bool wk = (cell.arg >> 1) != 0, wl = (cell.arg & 1) != 0;
      const int32_t at = row0 + (wk ? S.ncw : 0);
      const int32_t c0 = wl ? col[2] : col[0], c1 = wl ? col[3] : col[1];
      const acc_t w0 = wl ? cw0[1] : cw0[0], w1 = wl ? cw1[1] : cw1[0];
      cell.dq_drow = dynopool_lerp<acc_t>(w0, s_d[at + c0], w1, s_d[at + c1], false);
      cell.dq_dcol = s_v[at + c1] - s_v[at + c0];
      acc_t dh, dw;
      dynopool_cell_size_grad<acc_t>(cell, g, tp, &dh, &dw);
      *dh_sum += static_cast<double>(dh);
      *dw_sum += static_cast<double>(dw);
    }
  }
}

// The tile's axis entries, computed once per tile (before the first barrier)
// instead of once per pixel: for each of its rows (slots [0, th)) and columns
// (slots kFusedMaxTH + [0, tw)), the queries reading it (n: 0 to kFusedTaps, or
// kFusedTaps + 1 where more do: up-sampling beyond about 1.5, where the global
// tables serve instead), each as its index (rows: the query row within the
// window, r - 2 ci; columns: the cell column within the window, j - cj), its code
// bit (columns only: l; B1 takes a row's 2k from the query row) and its bilinear
// weight at that row / column
// (tap_weight). Unused slots hold index 0 and weight 0 and are never selected.
template <typename acc_t>
struct FusedAxes {
  int32_t off[kFusedMaxTH + kFusedMaxTW][kFusedTaps];
  acc_t w[kFusedMaxTH + kFusedMaxTW][kFusedTaps];
  uint8_t code[kFusedMaxTH + kFusedMaxTW][kFusedTaps];
  uint8_t n[kFusedMaxTH + kFusedMaxTW];
};

// Entry e of the tile's axes (e < th + tw: rows first, then columns).
template <typename acc_t, typename index_t>
RESIZEOPS_HD void dynopool_fused_axis_entry(int32_t e, const FusedPlan& plan, const FusedTile<index_t>& T,
                                            const AxisTaps<acc_t>& rows, const AxisTaps<acc_t>& cols,
                                            FusedAxes<acc_t>* ax) {
  const bool is_row = e < plan.th;
  // Field by field: a reference to either kernel parameter would copy both to the stack.
  const AxisTaps<acc_t> t{is_row ? rows.i0 : cols.i0, is_row ? rows.i1 : cols.i1, is_row ? rows.w1 : cols.w1,
                          is_row ? rows.d : cols.d, is_row ? rows.range : cols.range};
  const int32_t h = is_row ? T.h0 + e : T.w0 + (e - plan.th);
  const int32_t slot = is_row ? e : kFusedMaxTH + (e - plan.th);
  const bool inside = h < (is_row ? T.h1 : T.w1);  // else a slot past a partial tile's end
  const int32_t qb = inside ? t.range[2 * h] : 0, qe = inside ? t.range[2 * h + 1] : 0;
  const int32_t n = qe > qb ? qe - qb : 0;
  ax->n[slot] = static_cast<uint8_t>(n > kFusedTaps ? kFusedTaps + 1 : n);
RESIZEOPS_UNROLL
  for (int u = 0; u < kFusedTaps; ++u) {
    const bool ok = u < n && n <= kFusedTaps;
    const int32_t q = qb + u;
    ax->off[slot][u] = ok ? (is_row ? q - 2 * T.ci : (q >> 1) - T.cj) : 0;
    ax->code[slot][u] = static_cast<uint8_t>(ok && !is_row ? (q & 1) : 0);  // (B1 derives the rows' 2k)
    ax->w[slot][u] = ok ? tap_weight<acc_t>(t, q, h) : acc_t(0);
  }
}

// Phase B is separable, like the loop form's sum: grad_x(h, w) = sum over the
// query rows r reading h of wr(r, h) * row_sum(r, w), where row_sum(r, w) = the
// sum over the query columns s reading w of [the cell (r/2, s/2) won at (r, s)]
// * g * ws(s, w). B1 computes every row_sum of the window's query rows at the
// tile's columns into shared memory (2 nci x tw of them, in the loop's order
// over s), B2 (after a barrier) each pixel's sum over r (in the loop's order):
// the same operations as the gather's loop form, so the same bits, with 3 + 3
// terms per pixel instead of 3 x 3.
//
// B1, thread `tid` of `nthreads` (nthreads a multiple of tw * cb): channel
// ch = tid mod cb, column x = (tid / cb) mod tw of the tile (flat entry
// f = tid mod (tw * cb) = x * cb + ch of a row), cell rows tid / (tw * cb), + nthreads
// / (tw * cb), ... of the window, each for both of its query rows (2 cr: codes 0
// and 1; 2 cr + 1: codes 2 and 3), which read the same cells: one set of shared
// loads for the two row sums, s_rs[(2 cr + k) * tw * cb + f]. The column's entries
// are read once. Where a column is read by at most kFusedTaps queries, its 3 slots'
// loads are issued before the sums (an unused slot selects 0: the same bits as the
// loop, which adds nothing there); otherwise the loop over the global tables.
template <typename acc_t, typename index_t>
RESIZEOPS_HD void dynopool_fused_row_sums(int32_t tid, int32_t nthreads, const FusedPlan& plan,
                                          const FusedTile<index_t>& T, const AxisTaps<acc_t>& cols,
                                          const FusedAxes<acc_t>& ax, const acc_t* s_g, const uint8_t* s_arg,
                                          acc_t* s_rs) {
  const int32_t lc = plan.cb_log2, f = tid & ((int32_t{1} << plan.flat_log2()) - 1);
  const int32_t ch = f & (plan.cb() - 1), x = f >> lc, w = T.w0 + x;
  if (w >= T.w1) return;
  const int32_t step = nthreads >> plan.flat_log2(), fw = int32_t{1} << plan.flat_log2();
  const int ns = ax.n[kFusedMaxTH + x];
  if (ns <= kFusedTaps) {
    int32_t co[kFusedTaps];
    int cl[kFusedTaps];
    acc_t ws[kFusedTaps];
RESIZEOPS_UNROLL
    for (int u = 0; u < kFusedTaps; ++u) {
      co[u] = ax.off[kFusedMaxTH + x][u];
      cl[u] = ax.code[kFusedMaxTH + x][u];
      ws[u] = ax.w[kFusedMaxTH + x][u];
    }
    for (int32_t cr = tid >> plan.flat_log2(); cr < T.nci; cr += step) {
      const int32_t rowc = cr * T.ncj;
      uint8_t a[kFusedTaps];
      acc_t g[kFusedTaps];
RESIZEOPS_UNROLL
      for (int u = 0; u < kFusedTaps; ++u) {
        const int32_t slot = ((rowc + co[u]) << lc) + ch;
        a[u] = u < ns ? s_arg[slot] : uint8_t(255);
        g[u] = u < ns ? s_g[slot] : acc_t(0);
      }
RESIZEOPS_UNROLL
      for (int k = 0; k < 2; ++k) {
        acc_t row_sum = acc_t(0);
RESIZEOPS_UNROLL
        for (int u = 0; u < kFusedTaps; ++u) {
          const bool hit = u < ns && a[u] == 2 * k + cl[u];
          row_sum += hit ? g[u] * ws[u] : acc_t(0);
        }
        s_rs[(2 * cr + k) * fw + f] = row_sum;
      }
    }
  } else {
    const int32_t sb = cols.range[2 * w], se = cols.range[2 * w + 1];
    for (int32_t cr = tid >> plan.flat_log2(); cr < T.nci; cr += step) {
      const int32_t rowc = cr * T.ncj - T.cj;
      for (int k = 0; k < 2; ++k) {
        acc_t row_sum = acc_t(0);
        for (int32_t s = sb; s < se; ++s) {
          const int32_t kk = ((rowc + (s >> 1)) << lc) + ch;
          if (s_arg[kk] == 2 * k + (s & 1)) row_sum += s_g[kk] * tap_weight<acc_t>(cols, s, w);
        }
        s_rs[(2 * cr + k) * fw + f] = row_sum;
      }
    }
  }
}

// B2, item p of the tile: the quad of kFusedQuad entries of tile row y = p / quads,
// flat entries f0 = 4 (p mod quads) + [0, 4) (quads = tw * cb / 4, or one partial
// quad for rows narrower than 4; flat = column * cb + channel, as B1's): 4 pixels of
// one channel (cb = 1) or 4 channels of one pixel (cb >= 4); nothing for a row past
// the tile's last, or entries past its last column. grad_x there: each entry's sum
// over its query rows of wr * row_sum in the loop's order (from the row's entries
// where it has at most kFusedTaps, else the global tables), stored at grad_x (dense
// strides gxs: NCHW, or channels_last). The row's entries are read once per quad;
// with float accumulation and whole quads (tw * cb >= 4), a query row's 4 row sums
// come in one 16-byte shared load; where the quad's 4 values are contiguous and
// aligned in grad_x (NCHW with W % 4 == 0: then a quad never straddles the image's
// last column; channels_last with cb >= 4) they go out in one vector store (the
// emulation checks both accesses' alignment).
template <typename scalar_t, typename acc_t, typename index_t>
RESIZEOPS_HD void dynopool_fused_quad(int32_t p, const FusedPlan& plan, const FusedTile<index_t>& T, int32_t W,
                                      const AxisTaps<acc_t>& rows, const FusedAxes<acc_t>& ax, const acc_t* s_rs,
                                      scalar_t* grad_x, const Strides4<index_t>& gxs) {
  constexpr int Q = kFusedQuad;
  const int32_t lq = plan.quads_log2(), lc = plan.cb_log2;
  const int32_t y = p >> lq, f0 = (p & ((int32_t{1} << lq) - 1)) * Q;
  const int32_t x0 = f0 >> lc, ch0 = f0 & (plan.cb() - 1);  // entry 0's column and channel
  const int32_t h = T.h0 + y, w0 = T.w0 + x0;
  if (h >= T.h1 || w0 >= T.w1) return;
  const bool whole = plan.flat_log2() >= 2;  // the quad lies within the tile's row
  const int32_t fw = int32_t{1} << plan.flat_log2();
  // Entry e's pixel: column x0 + e (one channel per block) or x0 (its channels).
  const int32_t dx = lc == 0 ? 1 : 0;
  const acc_t* rs0 = s_rs + f0;
  acc_t acc[Q];
RESIZEOPS_UNROLL
  for (int e = 0; e < Q; ++e) acc[e] = acc_t(0);
  const int nr = ax.n[y];
  if (nr <= kFusedTaps) {
    // Slot by slot (each entry's terms still added in the slot order): one query
    // row's 4 row sums live at a time.
RESIZEOPS_UNROLL
    for (int t = 0; t < kFusedTaps; ++t) {
      const acc_t wr = ax.w[y][t];
      // (An unused slot's offset is 0, in the region: its loads are never used.)
      const acc_t* src = rs0 + ax.off[y][t] * fw;
      acc_t rs[Q];
      if (sizeof(acc_t) == 4 && whole) {
        load_lanes<Q, true, acc_t, acc_t, int32_t>(src, 1, Q, rs);
      } else {
RESIZEOPS_UNROLL
        for (int e = 0; e < Q; ++e) rs[e] = f0 + e < fw ? src[e] : acc_t(0);
      }
RESIZEOPS_UNROLL
      for (int e = 0; e < Q; ++e) acc[e] += t < nr ? wr * rs[e] : acc_t(0);
    }
  } else {
    const int32_t rb = rows.range[2 * h], re = rows.range[2 * h + 1];
RESIZEOPS_UNROLL
    for (int e = 0; e < Q; ++e) {
      if (f0 + e >= fw) break;
      for (int32_t r = rb; r < re; ++r) acc[e] += tap_weight<acc_t>(rows, r, h) * rs0[(r - 2 * T.ci) * fw + e];
    }
  }
  const index_t es = lc == 0 ? gxs.w : gxs.c;  // from one entry of the quad to the next in grad_x
  scalar_t* dst = grad_x + T.n * gxs.n + (T.c + ch0) * gxs.c + static_cast<index_t>(h) * gxs.h +
                  static_cast<index_t>(w0) * gxs.w;
  if (whole && es == 1 && (lc >= 2 || W % Q == 0)) {
    store_lanes<Q, true, scalar_t, acc_t, index_t>(dst, 1, Q, acc);
  } else {
RESIZEOPS_UNROLL
    for (int e = 0; e < Q; ++e) {
      if (f0 + e < fw && w0 + e * dx < T.w1) dst[e * es] = static_cast<scalar_t>(acc[e]);
    }
  }
}

}  // namespace elements
}  // namespace resizeops
