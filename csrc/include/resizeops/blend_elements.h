// Per-element code of the resize_blend and shape_adaptor_maxpool CUDA kernels
// (csrc/cuda/resize_blend.cu, shape_adaptor_maxpool.cu).
//
// As with DynOPool (resizeops/dynopool_elements.h), every function here is the
// work of one GPU thread for one element: an entry of the axis tables, one
// output element of the forward, one input pixel of the backward. The CUDA
// kernels are grid-stride loops around them; csrc/cpu/blend_emulation.cpp
// runs the very same functions in serial loops (ops resizeops_ext::_*_emulated),
// so that the tests check the GPU code on machines without a GPU.
//
// Arithmetic: the taps are those of the C++ CPU kernel
// (csrc/cpu/resize_blend.cpp): resizeops/math.h's interp_ratio,
// interp_source_coord_from_ratio and interp_taps (ATen's rules), an axis whose
// interpolate size equals its input size copied (taps (o, o), weights (1, 0)),
// an input already at `size` without a scale read as is. A sample is a
// vertical interpolation of two input rows followed by a horizontal one, in
// the accumulation type (float for half types).
//
// Backward formulation (deterministic, no atomics): each input pixel gathers
// R_kᵀ(g) from the outputs that read it. The taps i0 <= i1 <= i0 + 1 are
// monotone in the output index, so the outputs reading input index h along an
// axis are a contiguous range [lo, hi): lo = the first o with i1(o) >= h,
// hi = the first o with i0(o) > h. The table kernel finds each range by a
// binary search over the (pure) tap function, once per call. The weight
// gradients dL/dw_k = Σ g·R_k(x_k) are taken as <R_kᵀ(g), x_k> from the same
// gather: one read of x_k instead of resampling it again. The two agree
// wherever everything is finite; with inf or NaN they do not (R(x) holds
// 0·inf = NaN where an infinite pixel is read with weight 0, and +inf·g and
// -inf·g' of one output cancel into NaN, where the transposed sum gives inf or
// nothing). So resize_blend sums over every pixel, skipping none (a non-finite
// pixel no output reads makes the transposed sum non-finite too), and wherever
// that sum is not finite, dL/dw_k is taken again in the reference's form,
// Σ_o g_o·R_k(x_k)_o (blend_weight_term, summed by one block on the GPU):
// bit for bit the reference's inf or NaN, at the cost of a forward pass only
// when the answer is not finite. shape_adaptor_maxpool (sa_pixel_grad) still skips
// pixels with R_kᵀ(g) == 0 and has no such second pass.
//
// The max-pool branch of shape_adaptor_maxpool (max_pool2d(x, 2),
// floor mode) is never materialised: a pooled pixel is the max of its 2x2
// window of x, math::max4_first (max_pool2d's tie and NaN rules), wherever a
// tap reads it; in the backward, the pixel of x that wins its window gathers
// the pooled branch's gradient at its pooled position.
#pragma once

#include <cstdint>

#include "resizeops/element_index.h"
#include "resizeops/math.h"

namespace resizeops {
namespace elements {

// One axis of one branch: in_size -> out (the kept outputs), with `full` the
// size interpolate itself produces (floor(in * scale) with a scale, else out;
// the outputs past `out` are cropped). scale <= 0: none given. An axis of a
// pass-through branch has in = out = 0: no table entries.
struct BlendAxisSpec {
  int32_t in, out, full;
  double scale;
};

// Where the tables of one call live, for the four axes (branch 1 rows,
// branch 1 cols, branch 2 rows, branch 2 cols): per axis a, acc buffer
// [w0 (out) | w1 (out)] and int32 buffer [i0 (out) | i1 (out) | range (2 * in)].
struct BlendTableLayout {
  BlendAxisSpec ax[4];
  bool align_corners;
  RESIZEOPS_HD int64_t acc_offset(int a) const {
    int64_t o = 0;
    for (int k = 0; k < a; ++k) o += 2 * int64_t{ax[k].out};
    return o;
  }
  RESIZEOPS_HD int64_t int_offset(int a) const {
    int64_t o = 0;
    for (int k = 0; k < a; ++k) o += 2 * int64_t{ax[k].out} + 2 * int64_t{ax[k].in};
    return o;
  }
  RESIZEOPS_HD int64_t acc_size() const { return acc_offset(4) > 0 ? acc_offset(4) : 1; }
  RESIZEOPS_HD int64_t int_size() const { return int_offset(4) > 0 ? int_offset(4) : 1; }
  // Entries of the fill: one per output index, plus one per input index with ranges.
  RESIZEOPS_HD int64_t entries(bool ranges) const {
    int64_t e = 0;
    for (int k = 0; k < 4; ++k) e += int64_t{ax[k].out} + (ranges ? int64_t{ax[k].in} : 0);
    return e;
  }
};

// Taps of output index o along one axis, as the CPU kernel's make_taps.
template <typename acc_t>
RESIZEOPS_HD void blend_axis_tap(const BlendAxisSpec& s, bool align_corners, int64_t o, int64_t* i0, int64_t* i1,
                                 acc_t* w0, acc_t* w1) {
  if (s.full == s.in) {
    // ATen copies an axis whose interpolate size equals its input size (even
    // with a scale like 1.1 on 7 pixels).
    *i0 = *i1 = o;
    *w0 = acc_t(1);
    *w1 = acc_t(0);
    return;
  }
  const acc_t ratio = math::interp_ratio<acc_t>(s.in, s.full, align_corners, s.scale > 0. ? s.scale : -1.0);
  const acc_t u = math::interp_source_coord_from_ratio<acc_t>(ratio, o, align_corners);
  math::interp_taps<acc_t>(u, s.in, i0, i1, w0, w1);
}

// Entry t of the tables (t in [0, layout.entries(ranges))): the taps of one output
// index, or (with ranges) the range of outputs reading one input index.
template <typename acc_t>
RESIZEOPS_HD void blend_table_entry(int64_t t, const BlendTableLayout& layout, acc_t* accb, int32_t* intb, bool ranges) {
  for (int a = 0; a < 4; ++a) {
    const BlendAxisSpec& s = layout.ax[a];
    acc_t* ab = accb + layout.acc_offset(a);
    int32_t* ib = intb + layout.int_offset(a);
    if (t < s.out) {
      int64_t i0, i1;
      acc_t w0, w1;
      blend_axis_tap<acc_t>(s, layout.align_corners, t, &i0, &i1, &w0, &w1);
      ib[t] = static_cast<int32_t>(i0);
      ib[s.out + t] = static_cast<int32_t>(i1);
      ab[t] = w0;
      ab[s.out + t] = w1;
      return;
    }
    t -= s.out;
    if (ranges) {
      if (t < s.in) {
        const int64_t h = t;
        // lo: the first o with i1(o) >= h; hi: the first o with i0(o) > h.
        int64_t lo = 0, hi = s.out;
        while (lo < hi) {
          const int64_t mid = lo + (hi - lo) / 2;
          int64_t i0, i1;
          acc_t w0, w1;
          blend_axis_tap<acc_t>(s, layout.align_corners, mid, &i0, &i1, &w0, &w1);
          if (i1 >= h) hi = mid; else lo = mid + 1;
        }
        int64_t first = lo;
        lo = first, hi = s.out;
        while (lo < hi) {
          const int64_t mid = lo + (hi - lo) / 2;
          int64_t i0, i1;
          acc_t w0, w1;
          blend_axis_tap<acc_t>(s, layout.align_corners, mid, &i0, &i1, &w0, &w1);
          if (i0 > h) hi = mid; else lo = mid + 1;
        }
        ib[2 * s.out + 2 * h] = static_cast<int32_t>(first);
        ib[2 * s.out + 2 * h + 1] = static_cast<int32_t>(lo);
        return;
      }
      t -= s.in;
    }
  }
}

// The tables of one axis, as the kernels read them.
template <typename acc_t>
struct BlendAxis {
  const int32_t* i0;
  const int32_t* i1;
  const int32_t* range;  // 2 per input index; only filled for the backward
  const acc_t* w0;
  const acc_t* w1;
};

// One input of the blend: its two axes, or pass-through (read as is).
template <typename acc_t>
struct BlendBranch {
  BlendAxis<acc_t> rows, cols;
  bool pass;
};

template <typename acc_t>
inline BlendAxis<acc_t> blend_axis_of(const BlendTableLayout& layout, int a, const acc_t* accb, const int32_t* intb) {
  const int32_t out = layout.ax[a].out;
  const int32_t* ib = intb + layout.int_offset(a);
  const acc_t* ab = accb + layout.acc_offset(a);
  return {ib, ib + out, ib + 2 * out, ab, ab + out};
}

template <typename acc_t>
inline BlendBranch<acc_t> blend_branch_of(const BlendTableLayout& layout, int k, bool pass, const acc_t* accb,
                                          const int32_t* intb) {
  return {blend_axis_of<acc_t>(layout, 2 * k, accb, intb), blend_axis_of<acc_t>(layout, 2 * k + 1, accb, intb), pass};
}

// ---------------------------------------------------------------------------
// Reading a branch's input: x itself, or its 2x2 max-pool
// ---------------------------------------------------------------------------

// Pixel (h, w) of a branch's input. Pool: the max of x's window
// (2h..2h+1, 2w..2w+1), max_pool2d's rules; *arg gets the winner 0..3.
template <bool Pool, typename scalar_t, typename acc_t, typename index_t>
RESIZEOPS_HD acc_t branch_pixel(const scalar_t* xnc, index_t sh, index_t sw, index_t h, index_t w, uint8_t* arg) {
  if (!Pool) {
    *arg = 0;
    return static_cast<acc_t>(xnc[h * sh + w * sw]);
  }
  const scalar_t* p = xnc + (2 * h) * sh + (2 * w) * sw;
  return math::max4_first<acc_t>(static_cast<acc_t>(p[0]), static_cast<acc_t>(p[sw]), static_cast<acc_t>(p[sh]),
                                 static_cast<acc_t>(p[sh + sw]), arg);
}

// R(input)(i, j) of one branch: vertical then horizontal interpolation.
template <bool Pool, typename scalar_t, typename acc_t, typename index_t>
RESIZEOPS_HD acc_t blend_sample(const scalar_t* xnc, index_t sh, index_t sw, const BlendBranch<acc_t>& b, index_t i,
                                index_t j) {
  uint8_t arg;
  if (b.pass) return branch_pixel<Pool, scalar_t, acc_t, index_t>(xnc, sh, sw, i, j, &arg);
  const index_t r0 = b.rows.i0[i], r1 = b.rows.i1[i];
  const index_t c0 = b.cols.i0[j], c1 = b.cols.i1[j];
  const acc_t h0 = b.rows.w0[i], h1 = b.rows.w1[i];
  const acc_t v0 = b.cols.w0[j], v1 = b.cols.w1[j];
  const acc_t a = h0 * branch_pixel<Pool, scalar_t, acc_t, index_t>(xnc, sh, sw, r0, c0, &arg) +
                  h1 * branch_pixel<Pool, scalar_t, acc_t, index_t>(xnc, sh, sw, r1, c0, &arg);
  const acc_t z = h0 * branch_pixel<Pool, scalar_t, acc_t, index_t>(xnc, sh, sw, r0, c1, &arg) +
                  h1 * branch_pixel<Pool, scalar_t, acc_t, index_t>(xnc, sh, sw, r1, c1, &arg);
  return v0 * a + v1 * z;
}

// One output element of the forward: w1 * R(x1) + w2 * R(x2) (with Pool1, x1
// is max_pool2d(x, 2) of the x1 pointer's tensor).
template <bool Pool1, typename scalar_t, typename acc_t, typename index_t>
RESIZEOPS_HD acc_t blend_out_cell(const scalar_t* x1nc, index_t s1h, index_t s1w, const BlendBranch<acc_t>& b1,
                                  const scalar_t* x2nc, index_t s2h, index_t s2w, const BlendBranch<acc_t>& b2,
                                  acc_t w1, acc_t w2, index_t i, index_t j) {
  const acc_t r1 = blend_sample<Pool1, scalar_t, acc_t, index_t>(x1nc, s1h, s1w, b1, i, j);
  const acc_t r2 = blend_sample<false, scalar_t, acc_t, index_t>(x2nc, s2h, s2w, b2, i, j);
  return w1 * r1 + w2 * r2;
}

// ---------------------------------------------------------------------------
// Backward: the gather of R_kᵀ(g) at one input pixel
// ---------------------------------------------------------------------------

// The weight output o gives input index h along an axis (both taps may be h
// at the last pixel or on a copied axis... where i0 == i1, w1 = 0 or both add).
template <typename acc_t>
RESIZEOPS_HD acc_t blend_axis_weight(const BlendAxis<acc_t>& a, int32_t o, int32_t h) {
  acc_t v = acc_t(0);
  if (a.i0[o] == h) v += a.w0[o];
  if (a.i1[o] == h) v += a.w1[o];
  return v;
}

// R_kᵀ(g) at pixel (h, w) of branch k's input over the output ranges
// [ilo, ihi) x [jlo, jhi): the loop form, whose run-time trip counts make each
// (row, column) step wait for its own loads on the GPU.
template <typename scalar_t, typename acc_t, typename index_t>
RESIZEOPS_HD acc_t blend_gather_loop(const scalar_t* gnc, index_t gh, index_t gw, const BlendBranch<acc_t>& b,
                                     index_t h, index_t w, int32_t ilo, int32_t ihi, int32_t jlo, int32_t jhi) {
  acc_t sum = acc_t(0);
  for (int32_t i = ilo; i < ihi; ++i) {
    const acc_t wr = blend_axis_weight<acc_t>(b.rows, i, static_cast<int32_t>(h));
    const scalar_t* grow = gnc + static_cast<index_t>(i) * gh;
    acc_t row = acc_t(0);
    for (int32_t j = jlo; j < jhi; ++j) {
      row += blend_axis_weight<acc_t>(b.cols, j, static_cast<int32_t>(w)) *
             static_cast<acc_t>(grow[static_cast<index_t>(j) * gw]);
    }
    sum += wr * row;
  }
  return sum;
}

// The tile form of the same sum, where both ranges have at most kBlendTile
// outputs (an input index is read by at most 4 outputs per axis for any
// resize of scale <= 2 -- ELASTIC's x2, Shape Adaptor's 1.5x up and its
// down-sampling): every table and grad_out load of the tile is issued before
// any is used, slots past a range are selected away (their loads predicated
// off or repeating the range's first output, in bounds), and the sum is taken
// in the loop form's order. Bit-identical to it in the serial emulation.
constexpr int kBlendTile = 4;

template <typename scalar_t, typename acc_t, typename index_t>
RESIZEOPS_HD acc_t blend_gather_tile(const scalar_t* gnc, index_t gh, index_t gw, const BlendBranch<acc_t>& b,
                                     index_t h, index_t w, int32_t ilo, int32_t ihi, int32_t jlo, int32_t jhi) {
  bool j_ok[kBlendTile], i_ok[kBlendTile];
  index_t j_off[kBlendTile];
  acc_t wc[kBlendTile], wr[kBlendTile], g[kBlendTile][kBlendTile];
RESIZEOPS_UNROLL
  for (int u = 0; u < kBlendTile; ++u) {
    j_ok[u] = jlo + u < jhi;
    const int32_t j = j_ok[u] ? jlo + u : jlo;
    wc[u] = blend_axis_weight<acc_t>(b.cols, j, static_cast<int32_t>(w));
    j_off[u] = static_cast<index_t>(j) * gw;
  }
RESIZEOPS_UNROLL
  for (int t = 0; t < kBlendTile; ++t) {
    i_ok[t] = ilo + t < ihi;
    const int32_t i = i_ok[t] ? ilo + t : ilo;
    wr[t] = blend_axis_weight<acc_t>(b.rows, i, static_cast<int32_t>(h));
    const scalar_t* grow = gnc + static_cast<index_t>(i) * gh;
RESIZEOPS_UNROLL
    for (int u = 0; u < kBlendTile; ++u) {
      g[t][u] = (i_ok[t] && j_ok[u]) ? static_cast<acc_t>(grow[j_off[u]]) : acc_t(0);
    }
  }
  acc_t sum = acc_t(0);
RESIZEOPS_UNROLL
  for (int t = 0; t < kBlendTile; ++t) {
    acc_t row = acc_t(0);
RESIZEOPS_UNROLL
    for (int u = 0; u < kBlendTile; ++u) row += j_ok[u] ? wc[u] * g[t][u] : acc_t(0);
    sum += i_ok[t] ? wr[t] * row : acc_t(0);
  }
  return sum;
}

// R_kᵀ(g) at pixel (h, w) of branch k's input; gnc: grad_out of image n, channel c.
// Tiles = false: the loop form for every pixel (KernelForms::gather, kernel_forms.h).
template <typename scalar_t, typename acc_t, typename index_t, bool Tiles>
RESIZEOPS_HD acc_t blend_gather(const scalar_t* gnc, index_t gh, index_t gw, const BlendBranch<acc_t>& b, index_t h,
                                index_t w) {
  if (b.pass) return static_cast<acc_t>(gnc[h * gh + w * gw]);
  const int32_t ilo = b.rows.range[2 * h], ihi = b.rows.range[2 * h + 1];
  const int32_t jlo = b.cols.range[2 * w], jhi = b.cols.range[2 * w + 1];
  if (ihi <= ilo || jhi <= jlo) return acc_t(0);  // no output reads this pixel
  if (Tiles && ihi - ilo <= kBlendTile && jhi - jlo <= kBlendTile) {
    return blend_gather_tile<scalar_t, acc_t, index_t>(gnc, gh, gw, b, h, w, ilo, ihi, jlo, jhi);
  }
  return blend_gather_loop<scalar_t, acc_t, index_t>(gnc, gh, gw, b, h, w, ilo, ihi, jlo, jhi);
}

// The backward at one input pixel: its gradient and the pixel's terms of the
// weight gradients (0 where none). Returned by value, not added through
// pointers: address-taken accumulators put the CUDA kernels' running sums in
// local memory (a stack frame, per cuobjdump --dump-resource-usage).
template <typename acc_t>
struct PixelGrad {
  acc_t grad;
  double dw1, dw2;
};

// resize_blend backward at pixel (h, w) of branch k's input x_k: dL/dx_k =
// w_k * R_kᵀ(g), and in dw1 the weight-gradient term R_kᵀ(g) * x_k. SkipZero
// (shape_adaptor_maxpool): 0 where R_kᵀ(g) == 0; otherwise every pixel counts, so that
// a non-finite pixel makes the sum non-finite (see the top of this file). dw2
// unused.
template <bool NeedW, bool Tiles, typename scalar_t, typename acc_t, typename index_t, bool SkipZero = false>
RESIZEOPS_HD PixelGrad<acc_t> blend_pixel_grad(const scalar_t* gnc, index_t gh, index_t gw, const scalar_t* xnc,
                                               index_t sh, index_t sw, const BlendBranch<acc_t>& b, acc_t weight,
                                               index_t h, index_t w) {
  const acc_t acc = blend_gather<scalar_t, acc_t, index_t, Tiles>(gnc, gh, gw, b, h, w);
  double dw = 0.0;
  if (NeedW && (!SkipZero || acc != acc_t(0))) {
    dw = static_cast<double>(acc * static_cast<acc_t>(xnc[h * sh + w * sw]));
  }
  return {weight * acc, dw, 0.0};
}

// The reference's form of the weight gradient, one output element (i, j) of
// branch k: g_o * R_k(x_k)_o, in the accumulation type (the reference multiplies
// in its compute dtype), as a double term of the sum. Taken only where the
// transposed sum above is not finite.
template <typename scalar_t, typename acc_t, typename index_t>
RESIZEOPS_HD double blend_weight_term(const scalar_t* gnc, index_t gh, index_t gw, const scalar_t* xnc, index_t sh,
                                      index_t sw, const BlendBranch<acc_t>& b, index_t i, index_t j) {
  const acc_t g = static_cast<acc_t>(gnc[i * gh + j * gw]);
  return static_cast<double>(g * blend_sample<false, scalar_t, acc_t, index_t>(xnc, sh, sw, b, i, j));
}

// shape_adaptor_maxpool backward at pixel (h, w) of x: the full-resolution
// branch's w2 * R2ᵀ(g), plus, when this pixel wins its 2x2 window (first
// maximum, max_pool2d's rule), the pooled branch's w1 * R1ᵀ(g) at (h/2, w/2).
// The weight-gradient terms: dw1 (once per pooled pixel: by its winner) and dw2.
template <bool NeedW, bool Tiles, typename scalar_t, typename acc_t, typename index_t>
RESIZEOPS_HD PixelGrad<acc_t> sa_pixel_grad(const scalar_t* gnc, index_t gh, index_t gw, const scalar_t* xnc,
                                            index_t sh, index_t sw, const BlendBranch<acc_t>& b1,
                                            const BlendBranch<acc_t>& b2, index_t pooled_h, index_t pooled_w,
                                            acc_t w1, acc_t w2, index_t h, index_t w) {
  const PixelGrad<acc_t> full =
      blend_pixel_grad<NeedW, Tiles, scalar_t, acc_t, index_t, true>(gnc, gh, gw, xnc, sh, sw, b2, w2, h, w);
  PixelGrad<acc_t> r{full.grad, 0.0, full.dw1};
  const index_t ph = h >> 1, pw = w >> 1;
  if (ph < pooled_h && pw < pooled_w) {
    uint8_t arg;
    const acc_t m = branch_pixel<true, scalar_t, acc_t, index_t>(xnc, sh, sw, ph, pw, &arg);
    if (arg == static_cast<uint8_t>(((h & 1) << 1) | (w & 1))) {
      const acc_t acc = blend_gather<scalar_t, acc_t, index_t, Tiles>(gnc, gh, gw, b1, ph, pw);
      if (NeedW && acc != acc_t(0)) r.dw1 = static_cast<double>(acc * m);
      r.grad += w1 * acc;
    }
  }
  return r;
}

}  // namespace elements
}  // namespace resizeops
