// C++ CPU kernels of DynOPool (docs/SEMANTICS.md, DynOPool):
// resizeops_ext::dynopool2d_forward and resizeops_ext::dynopool2d_backward
// (schemas in csrc/resizeops.cpp).
//
// Forward: each output cell is the max of 4 bilinear queries (border padding),
// computed in one pass over the output without the 2Ho x 2Wo query tensor.
// Backward: recomputes each cell's winning query from x (nothing is saved by
// the forward), scatters its gradient into the gradient of its query row and
// spreads the query rows over their two input rows; also the gradients of
// the surrogate sizes (dL/dH_hat, dL/dW_hat), which Python turns into alpha's.
//
// Work is split into tasks of (image n, a block of channels); the inner loops
// run over the channels of the block, held contiguously in small row buffers
// whatever the input's layout, so that they vectorise. A task owns
// its slice of grad_x, so the scatter needs no atomics, and its partial size
// gradient lands in its own slot, summed in task order afterwards: the backward
// is deterministic whatever the thread count.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <type_traits>
#include <vector>

#include "resize_rows.h"  // cpu::parallel_tasks: the AVX2+FMA copy of the tasks where the CPU has it
#include "resizeops/checks.h"
#include "resizeops/kernel_forms.h"
#include "resizeops/math.h"

namespace resizeops {
namespace {

// Channels of one task, in both layouts: the per-cell work runs over a block of
// channels held contiguously in small row buffers ([w][c]), which the compiler
// vectorises; NCHW inputs are transposed into those buffers as they are read.
// Small enough to keep a task's buffers (and its grad_x slice) in cache. The
// blend kernels' block (resize_rows.h), whose row helpers these buffers share.
using cpu::kChannelBlock;

// The two taps of every query row (or column) of one axis, computed once per
// call with the shared math: 2*out_size entries.
//
// At the last pixel both taps of bilinear_taps are that pixel, with w1 = 0. The
// definition (docs/SEMANTICS.md, DynOPool) does not read that second tap (as
// grid_sample skips it, out of bounds), so an infinite pixel must give w0·x = x
// there, not w0·x + 0·x = NaN. Hence `edge` (i1 == i0: skip the second tap).
// The column table of the row buffers (pad_edge) instead points such a second
// tap at a padding column W of zeros, so that the channel loops stay
// branch-free: lerp_tie(1, v, 0, 0) is v (0·0 adds nothing; v == 0 gives v
// itself), and the gradient written there is never read. The coordinate
// derivative (x[i1] - x[i0]) keeps the true pixel: it is multiplied by the
// clip's derivative, 0 at the border.
template <typename acc_t>
struct AxisTable {
  std::vector<int64_t> i0, i1;
  std::vector<acc_t> w0, w1;
  std::vector<acc_t> dsize;  // dclip * du/d(size_hat): the query's coordinate gradient
  std::vector<uint8_t> edge;  // i1 == i0 in bilinear_taps: the second tap is skipped

  AxisTable(int64_t out_size, int64_t in_size, bool pad_edge = false) {
    const int64_t n = 2 * out_size;
    i0.resize(n);
    i1.resize(n);
    w0.resize(n);
    w1.resize(n);
    dsize.resize(n);
    edge.resize(n);
    const acc_t size_hat = static_cast<acc_t>(out_size);  // the surrogate's value is Ho
    for (int64_t j = 0; j < n; ++j) {
      acc_t dclip;
      const acc_t u = math::clip_border<acc_t>(
          math::dynopool_query_coord<acc_t>(j, size_hat, in_size), in_size, &dclip);
      math::bilinear_taps<acc_t>(u, in_size, &i0[j], &i1[j], &w0[j], &w1[j]);
      dsize[j] = dclip * math::dynopool_query_coord_grad<acc_t>(j, size_hat, in_size);
      edge[j] = i1[j] == i0[j];
      if (pad_edge && edge[j]) i1[j] = in_size;
    }
  }
};

struct Geometry {
  int64_t N, C, H, W, Ho, Wo;
  int64_t cblock;  // channels per task
  int64_t tasks() const { return N * ((C + cblock - 1) / cblock); }
};

Geometry make_geometry(const at::Tensor& x, int64_t out_h, int64_t out_w) {
  Geometry g{x.size(0), x.size(1), x.size(2), x.size(3), out_h, out_w, 1};
  g.cblock = std::min<int64_t>(g.C, kChannelBlock);
  return g;
}

// One task's view of x: image n, channels [c_begin, c_begin + cb).
template <typename scalar_t>
struct TaskInput {
  const scalar_t* x;  // &x[n, c_begin, 0, 0]
  int64_t sC, sH, sW;
};

// The separable form of the 4 queries. Bilinear sampling is vertical then
// horizontal interpolation (each step math::lerp_tie, the tie rule all backends
// share), and the two query rows of an output row are shared
// by all its cells, so each task first interpolates the two query rows over the
// whole width (vrow, laid out [w][c]: contiguous channels for channels_last)
// and then each cell costs 4 horizontal interpolations of those rows and a max.
// The backward reuses the same rows for the coordinate derivatives:
// d query/du_row = horizontal interpolation of drow = x[i1] - x[i0], and
// d query/du_col = vrow[c1] - vrow[c0]. The row buffers have W + 1 columns:
// column W is the zero padding of the column table (AxisTable, pad_edge).
template <typename scalar_t, typename acc_t>
inline void vertical_pass(const TaskInput<scalar_t>& in, int64_t W, int64_t cb, const AxisTable<acc_t>& rows,
                          int64_t r, acc_t* vrow, acc_t* drow) {
  const scalar_t* top = in.x + rows.i0[r] * in.sH;
  const scalar_t* bot = in.x + rows.i1[r] * in.sH;
  const acc_t w0 = rows.w0[r], w1 = rows.w1[r];
  for (int64_t c = 0; c < cb; ++c) {
    vrow[W * cb + c] = acc_t(0);
    if (drow) drow[W * cb + c] = acc_t(0);
  }
  if constexpr (cpu::sse::applies_to<scalar_t, acc_t>()) {
    // float NCHW: 4x4 SSE transposes (resize_rows.h), same arithmetic as below:
    // math::lerp_tie(w0, a, w1, b), or a at the edge, and b - a as 1 * b + (-1) * a
    // (no tie rule there: a difference).
    if (in.sW == 1) {
      const bool edge = rows.edge[r];
      edge ? cpu::sse::rows_to_wc<false>(top, nullptr, 0.f, 0.f, in.sC, in.sW, cb, W, vrow)
           : cpu::sse::rows_to_wc<true, /*kTie=*/true>(top, bot, w0, w1, in.sC, in.sW, cb, W, vrow);
      if (drow) cpu::sse::rows_to_wc<true>(bot, top, 1.f, -1.f, in.sC, in.sW, cb, W, drow);
      return;
    }
  }
  // Edge: both taps are the last row (bot == top, w1 = 0), and the second is
  // skipped (AxisTable). A compile-time flag: a select in the loop stops it
  // from vectorising.
  auto sweep = [&](auto edge) {
    constexpr bool kEdge = decltype(edge)::value;
    auto one = [&](int64_t w, int64_t c) {
      const acc_t a = acc_t(top[c * in.sC + w * in.sW]);
      const acc_t b = acc_t(bot[c * in.sC + w * in.sW]);
      vrow[w * cb + c] = kEdge ? a : math::lerp_tie<acc_t>(w0, a, w1, b);
      if (drow) drow[w * cb + c] = b - a;
    };
    if (in.sC <= in.sW) {  // channels innermost in memory (channels_last): read along c
      for (int64_t w = 0; w < W; ++w)
        for (int64_t c = 0; c < cb; ++c) one(w, c);
    } else {  // NCHW: read along w, transpose into the buffer
      for (int64_t c = 0; c < cb; ++c)
        for (int64_t w = 0; w < W; ++w) one(w, c);
    }
  };
  if (rows.edge[r]) {
    sweep(std::true_type{});
  } else {
    sweep(std::false_type{});
  }
}

// Forward of one output row into orow ([j][c]): per cell, the 4 horizontal
// interpolations of the two query rows and their max, vectorised over channels.
template <typename acc_t>
void forward_row(const acc_t* __restrict v0, const acc_t* __restrict v1, const AxisTable<acc_t>& cols, int64_t Wo,
                 int64_t cb, acc_t* __restrict orow) {
  for (int64_t j = 0; j < Wo; ++j) {
    const int64_t qa = 2 * j, qb = 2 * j + 1;
    const int64_t a0 = cols.i0[qa] * cb, a1 = cols.i1[qa] * cb, b0 = cols.i0[qb] * cb, b1 = cols.i1[qb] * cb;
    const acc_t wa0 = cols.w0[qa], wa1 = cols.w1[qa], wb0 = cols.w0[qb], wb1 = cols.w1[qb];
    acc_t* __restrict o = orow + j * cb;
    _Pragma("omp simd")
    for (int64_t c = 0; c < cb; ++c) {
      uint8_t arg;
      o[c] = math::max4_first<acc_t>(
          math::lerp_tie<acc_t>(wa0, v0[a0 + c], wa1, v0[a1 + c]), math::lerp_tie<acc_t>(wb0, v0[b0 + c], wb1, v0[b1 + c]),
          math::lerp_tie<acc_t>(wa0, v1[a0 + c], wa1, v1[a1 + c]), math::lerp_tie<acc_t>(wb0, v1[b0 + c], wb1, v1[b1 + c]),
          &arg);
    }
  }
}

// The buffers of one output row's backward, all laid out [w][c] (grow: [j][c]).
template <typename acc_t>
struct RowBuffers {
  const acc_t *vrow0, *vrow1;  // the two query rows
  const acc_t *drow0, *drow1;  // their x[i1] - x[i0]
  acc_t *hrow0, *hrow1;        // gradient of the query rows (accumulated)
  const acc_t* grow;           // grad_out of the output row
  acc_t *dsum_h, *dsum_w;      // per-channel size-gradient sums (accumulated)
};

// Backward of one output row. Branch-free over the channel block, so that it
// vectorises: each query's gradient is g where it won the max and 0 elsewhere,
// and the columns it reads are fixed for a given j. Lanes are channels and a
// lane only ever touches its own addresses, which `omp simd` lets the compiler
// rely on (two taps of one query may be the same pixel at the border).
template <bool NeedX, bool NeedSize, typename acc_t>
void backward_row(const RowBuffers<acc_t>& b, const AxisTable<acc_t>& cols, const acc_t* drow_hat, int64_t Wo,
                  int64_t cb) {
  const acc_t dr0 = drow_hat[0], dr1 = drow_hat[1];
  for (int64_t j = 0; j < Wo; ++j) {
    const int64_t qa = 2 * j, qb = 2 * j + 1;  // the cell's two query columns
    const int64_t a0 = cols.i0[qa] * cb, a1 = cols.i1[qa] * cb, b0 = cols.i0[qb] * cb, b1 = cols.i1[qb] * cb;
    const acc_t wa0 = cols.w0[qa], wa1 = cols.w1[qa], wb0 = cols.w0[qb], wb1 = cols.w1[qb];
    const acc_t dca = cols.dsize[qa], dcb = cols.dsize[qb];
    const acc_t* __restrict v0 = b.vrow0;
    const acc_t* __restrict v1 = b.vrow1;
    const acc_t* __restrict d0 = b.drow0;
    const acc_t* __restrict d1 = b.drow1;
    acc_t* __restrict h0 = b.hrow0;
    acc_t* __restrict h1 = b.hrow1;
    const acc_t* __restrict gr = b.grow + j * cb;
    acc_t* __restrict sh = b.dsum_h;
    acc_t* __restrict sw = b.dsum_w;
    _Pragma("omp simd")
    for (int64_t c = 0; c < cb; ++c) {
      const acc_t q00 = math::lerp_tie<acc_t>(wa0, v0[a0 + c], wa1, v0[a1 + c]);
      const acc_t q01 = math::lerp_tie<acc_t>(wb0, v0[b0 + c], wb1, v0[b1 + c]);
      const acc_t q10 = math::lerp_tie<acc_t>(wa0, v1[a0 + c], wa1, v1[a1 + c]);
      const acc_t q11 = math::lerp_tie<acc_t>(wb0, v1[b0 + c], wb1, v1[b1 + c]);
      uint8_t arg;
      math::max4_first<acc_t>(q00, q01, q10, q11, &arg);
      const acc_t gv = gr[c];
      const acc_t m00 = arg == 0 ? gv : acc_t(0), m01 = arg == 1 ? gv : acc_t(0);
      const acc_t m10 = arg == 2 ? gv : acc_t(0), m11 = arg == 3 ? gv : acc_t(0);
      if (NeedX) {
        h0[a0 + c] += m00 * wa0;
        h0[a1 + c] += m00 * wa1;
        h0[b0 + c] += m01 * wb0;
        h0[b1 + c] += m01 * wb1;
        h1[a0 + c] += m10 * wa0;
        h1[a1 + c] += m10 * wa1;
        h1[b0 + c] += m11 * wb0;
        h1[b1 + c] += m11 * wb1;
      }
      if (NeedSize) {
        // d query/du_row: horizontal interpolation of x[i1] - x[i0];
        // d query/du_col: vrow[c1] - vrow[c0] (bilinear_taps' derivative).
        sh[c] += (m00 * (wa0 * d0[a0 + c] + wa1 * d0[a1 + c]) + m01 * (wb0 * d0[b0 + c] + wb1 * d0[b1 + c])) * dr0 +
                 (m10 * (wa0 * d1[a0 + c] + wa1 * d1[a1 + c]) + m11 * (wb0 * d1[b0 + c] + wb1 * d1[b1 + c])) * dr1;
        sw[c] += (m00 * (v0[a1 + c] - v0[a0 + c]) + m10 * (v1[a1 + c] - v1[a0 + c])) * dca +
                 (m01 * (v0[b1 + c] - v0[b0 + c]) + m11 * (v1[b1 + c] - v1[b0 + c])) * dcb;
      }
    }
  }
}

at::Tensor dynopool2d_forward_cpu(const at::Tensor& x, int64_t out_h, int64_t out_w, bool channels_last,
                                  c10::IntArrayRef forms) {
  KernelForms::decode(forms);  // validated only: the CPU kernel has one form
  check_dynopool_args(x, out_h, out_w);
  const auto fmt = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  at::Tensor out = at::empty({x.size(0), x.size(1), out_h, out_w}, x.options().memory_format(fmt));
  if (out.numel() == 0) return out;
  const Geometry g = make_geometry(x, out_h, out_w);
  const int64_t oN = out.stride(0), oC = out.stride(1), oH = out.stride(2), oW = out.stride(3);
  const int64_t blocks_per_image = (g.C + g.cblock - 1) / g.cblock;

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "dynopool2d_forward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const AxisTable<acc_t> rows(g.Ho, g.H), cols(g.Wo, g.W, /*pad_edge=*/true);
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    cpu::parallel_tasks(g.tasks(), [&](int64_t begin, int64_t end) {
      const int64_t row_len = (g.W + 1) * g.cblock;  // W columns and the padding
      std::vector<acc_t> scratch(2 * row_len + g.Wo * g.cblock);
      acc_t* vrow0 = scratch.data();
      acc_t* vrow1 = vrow0 + row_len;
      acc_t* orow = vrow1 + row_len;  // one output row, [j][c]
      for (int64_t t = begin; t < end; ++t) {
        const int64_t n = t / blocks_per_image;
        const int64_t c_begin = (t % blocks_per_image) * g.cblock;
        const int64_t cb = std::min(c_begin + g.cblock, g.C) - c_begin;
        const TaskInput<scalar_t> in{xp + n * x.stride(0) + c_begin * x.stride(1), x.stride(1), x.stride(2),
                                     x.stride(3)};
        scalar_t* o = op + n * oN + c_begin * oC;
        for (int64_t i = 0; i < g.Ho; ++i) {
          vertical_pass(in, g.W, cb, rows, 2 * i, vrow0, static_cast<acc_t*>(nullptr));
          vertical_pass(in, g.W, cb, rows, 2 * i + 1, vrow1, static_cast<acc_t*>(nullptr));
          forward_row(vrow0, vrow1, cols, g.Wo, cb, orow);
          // [j][c] -> the output's layout (SSE 4x4 transposes for float NCHW; x1 is exact).
          cpu::store_wc(orow, acc_t(1), cb, g.Wo, o + i * oH, oC, oW);
        }
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> dynopool2d_backward_cpu(const at::Tensor& grad_out, const at::Tensor& x,
                                                           int64_t out_h, int64_t out_w, bool channels_last,
                                                           bool need_x, bool need_size, c10::IntArrayRef forms) {
  KernelForms::decode(forms);  // validated only: the CPU kernel has one form
  check_dynopool_args(x, out_h, out_w);
  check_dynopool_grad(grad_out, x, out_h, out_w);
  const auto fmt = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  at::Tensor grad_x = need_x ? at::empty(x.sizes(), x.options().memory_format(fmt)) : at::empty({0}, x.options());
  // (dL/dH_hat, dL/dW_hat), accumulated in double per task, summed in task order.
  at::Tensor grad_size = at::zeros({2}, x.options().dtype(at::kDouble));
  if (x.numel() == 0 || (!need_x && !need_size)) {
    if (need_x) grad_x.zero_();
    return {grad_x, grad_size};
  }
  const Geometry g = make_geometry(x, out_h, out_w);
  const int64_t gN = grad_out.stride(0), gC = grad_out.stride(1), gH = grad_out.stride(2),
                gW = grad_out.stride(3);
  const int64_t blocks_per_image = (g.C + g.cblock - 1) / g.cblock;
  std::vector<double> partials(2 * g.tasks(), 0.0);

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "dynopool2d_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const AxisTable<acc_t> rows(g.Ho, g.H), cols(g.Wo, g.W, /*pad_edge=*/true);
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* gp = grad_out.const_data_ptr<scalar_t>();
    scalar_t* gxp = need_x ? grad_x.mutable_data_ptr<scalar_t>() : nullptr;
    cpu::parallel_tasks(g.tasks(), [&](int64_t begin, int64_t end) {
      const int64_t row_len = (g.W + 1) * g.cblock;  // W columns and the padding
      // vrow0/1: the query rows; drow0/1: their x[i1] - x[i0]; hrow0/1: the
      // gradient of the query rows, spread over the input rows after each output row.
      std::vector<acc_t> scratch(6 * row_len + 2 * g.cblock + g.Wo * g.cblock, acc_t(0));
      acc_t* vrow[2] = {scratch.data(), scratch.data() + row_len};
      acc_t* drow[2] = {scratch.data() + 2 * row_len, scratch.data() + 3 * row_len};
      acc_t* hrow[2] = {scratch.data() + 4 * row_len, scratch.data() + 5 * row_len};
      acc_t* dsum_h = scratch.data() + 6 * row_len;  // per-channel size-gradient sums of one output row
      acc_t* dsum_w = dsum_h + g.cblock;
      acc_t* grow = dsum_w + g.cblock;  // grad_out's row, [j][c]
      // The task's grad_x slice in the accumulation type, laid out [h][w][c].
      std::vector<acc_t> acc(need_x ? g.H * g.W * g.cblock : 0);
      for (int64_t t = begin; t < end; ++t) {
        const int64_t n = t / blocks_per_image;
        const int64_t c_begin = (t % blocks_per_image) * g.cblock;
        const int64_t cb = std::min(c_begin + g.cblock, g.C) - c_begin;
        const TaskInput<scalar_t> in{xp + n * x.stride(0) + c_begin * x.stride(1), x.stride(1), x.stride(2),
                                     x.stride(3)};
        const scalar_t* go = gp + n * gN + c_begin * gC;
        std::fill(acc.begin(), acc.end(), acc_t(0));
        double d_h = 0, d_w = 0;  // long sums: double keeps them close to exact
        for (int64_t i = 0; i < g.Ho; ++i) {
          for (int k = 0; k < 2; ++k) {
            vertical_pass(in, g.W, cb, rows, 2 * i + k, vrow[k], need_size ? drow[k] : nullptr);
            if (need_x) std::fill(hrow[k], hrow[k] + (g.W + 1) * cb, acc_t(0));
          }
          // grad_out's row i for the channel block, laid out [j][c] like the row buffers.
          cpu::load_row(go + i * gH, gC, gW, cb, g.Wo, grow);
          const RowBuffers<acc_t> b{vrow[0], vrow[1], drow[0], drow[1], hrow[0], hrow[1], grow, dsum_h, dsum_w};
          const acc_t drow_hat[2] = {rows.dsize[2 * i], rows.dsize[2 * i + 1]};
          if (need_x && need_size) {
            backward_row<true, true>(b, cols, drow_hat, g.Wo, cb);
          } else if (need_x) {
            backward_row<true, false>(b, cols, drow_hat, g.Wo, cb);
          } else {
            backward_row<false, true>(b, cols, drow_hat, g.Wo, cb);
          }
          if (need_size) {  // per output row into double: short float sums, long double sum
            for (int64_t c = 0; c < cb; ++c) {
              d_h += double(dsum_h[c]);
              d_w += double(dsum_w[c]);
              dsum_h[c] = dsum_w[c] = acc_t(0);
            }
          }
          if (need_x) {
            for (int k = 0; k < 2; ++k) {  // the query rows' gradient to their two input rows
              const int64_t r = 2 * i + k;
              acc_t* top = acc.data() + rows.i0[r] * g.W * cb;
              acc_t* bot = acc.data() + rows.i1[r] * g.W * cb;
              const acc_t w0 = rows.w0[r], w1 = rows.w1[r];
              if (rows.edge[r]) {  // both taps are the last row: only the first counts (AxisTable)
                for (int64_t e = 0; e < g.W * cb; ++e) top[e] += w0 * hrow[k][e];
              } else {
                for (int64_t e = 0; e < g.W * cb; ++e) {
                  top[e] += w0 * hrow[k][e];
                  bot[e] += w1 * hrow[k][e];
                }
              }
            }
          }
        }
        if (need_x) {
          scalar_t* gx = gxp + n * grad_x.stride(0) + c_begin * grad_x.stride(1);
          const int64_t xC = grad_x.stride(1), xH = grad_x.stride(2), xW = grad_x.stride(3);
          for (int64_t h = 0; h < g.H; ++h) {  // [w][c] rows -> grad_x's layout (x1 is exact)
            cpu::store_wc(acc.data() + h * g.W * cb, acc_t(1), cb, g.W, gx + h * xH, xC, xW);
          }
        }
        partials[2 * t] = d_h;
        partials[2 * t + 1] = d_w;
      }
    });
  });
  if (need_size) {
    double dh = 0, dw = 0;
    for (int64_t t = 0; t < g.tasks(); ++t) {  // fixed order: deterministic
      dh += partials[2 * t];
      dw += partials[2 * t + 1];
    }
    double* gs = grad_size.mutable_data_ptr<double>();
    gs[0] = dh;
    gs[1] = dw;
  }
  return {grad_x, grad_size};
}

}  // namespace
}  // namespace resizeops

TORCH_LIBRARY_IMPL(resizeops_ext, CPU, m) {
  m.impl("dynopool2d_forward", &resizeops::dynopool2d_forward_cpu);
  m.impl("dynopool2d_backward", &resizeops::dynopool2d_backward_cpu);
}
