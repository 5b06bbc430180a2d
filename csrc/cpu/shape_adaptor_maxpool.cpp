// C++ CPU kernels of the Shape Adaptor max-pool op (docs/SEMANTICS.md,
// shape_adaptor_maxpool): resizeops_ext::shape_adaptor_maxpool_forward and
// _backward (schemas in csrc/resizeops.cpp).
//
// out = w1 * R(P(x)) + w2 * R(x), P = max_pool2d(x, 2) (floor mode: Hp x Wp =
// floor(H/2) x floor(W/2)), R = F.interpolate(mode="bilinear") to `size`, an
// input already of `size` passing through unchanged.
//
// The resize_blend kernel (csrc/cpu/resize_blend.cpp) with the pooled map
// computed where it is read: pooled row p is the 2x2 max of x rows 2p, 2p+1,
// taken into a row buffer when an output row's vertical taps need it. Output
// rows walk the pooled rows in order, so a cache of the last two pooled rows
// computes each of them about once. Same tasks (image n, block of 16 channels)
// and [w][c] row buffers (csrc/cpu/resize_rows.h).
//
// Backward: R_1ᵀ(g) (on the pooled grid) and R_2ᵀ(g) (on x's grid) are swept
// row by row as in resize_blend (cpu::RowRing); x's rows are consumed two at a
// time, once rows 2p, 2p + 1 of R_2ᵀ(g) and row p of R_1ᵀ(g) are all complete
// (each ring sized on the host by running the sweep's bookkeeping): the pass
// recomputes each window's max and where it is
// (max4_first: max_pool2d's first-maximum and NaN rules), and gives
//   dL/dw1 = <R_1ᵀ(g), P(x)>, dL/dw2 = <R_2ᵀ(g), x>,
//   dL/dx  = w2 R_2ᵀ(g) + w1 R_1ᵀ(g) routed to each window's maximum,
// the two gradients summed in the accumulation type and rounded once.
// Deterministic: no atomics, per-task double partials summed in task order.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/ArrayRef.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <tuple>
#include <vector>

#include "resize_rows.h"
#include "resizeops/checks.h"
#include "resizeops/kernel_forms.h"
#include "resizeops/math.h"

namespace resizeops {
namespace {

using cpu::kChannelBlock;
using cpu::load_row;
using cpu::make_branch;
using cpu::make_resize;
using cpu::masked_dot;
using cpu::resize_cols;
using cpu::resize_row;
using cpu::store_row;
using cpu::store_wc;

// The pooled row of x rows t (top) and b (bottom), both [w][c]: p[q][c] is the
// max of the window (t[2q], t[2q+1], b[2q], b[2q+1]) and, with kArgmax, idx[q][c]
// its position 0..3 in that order.
template <bool kArgmax, typename acc_t>
void pool_rows(const acc_t* __restrict t, const acc_t* __restrict b, int64_t cb, int64_t Wp, acc_t* __restrict p,
               uint8_t* __restrict idx) {
  for (int64_t q = 0; q < Wp; ++q) {
    const acc_t* t0 = t + 2 * q * cb;
    const acc_t* b0 = b + 2 * q * cb;
    acc_t* o = p + q * cb;
    uint8_t* k = kArgmax ? idx + q * cb : nullptr;
    _Pragma("omp simd")
    for (int64_t c = 0; c < cb; ++c) {
      uint8_t at;
      o[c] = math::max4_first<acc_t>(t0[c], t0[cb + c], b0[c], b0[cb + c], &at);
      if (kArgmax) k[c] = at;
    }
  }
}

// dL/dx of x rows 2p, 2p + 1 in place of their R_2ᵀ(g) (top, bot: [w][c]):
// w2 R_2ᵀ(g), plus w1 R_1ᵀ(g) of pooled row p (a1, [q][c]) at each window's
// maximum (argmax, as pool_rows gives it), summed in acc_t.
template <typename acc_t>
void pair_grad(acc_t* __restrict top, acc_t* __restrict bot, const acc_t* __restrict a1,
               const uint8_t* __restrict argmax, int64_t cb, int64_t W, int64_t Wp, acc_t w1, acc_t w2) {
  for (int64_t q = 0; q < Wp; ++q) {
    acc_t* t = top + 2 * q * cb;
    acc_t* b = bot + 2 * q * cb;
    const acc_t* g = a1 + q * cb;
    const uint8_t* k = argmax + q * cb;
    _Pragma("omp simd")
    for (int64_t c = 0; c < cb; ++c) {
      const acc_t v = w1 * g[c];
      t[c] = w2 * t[c] + cpu::keep_if(k[c] == 0, v);
      t[cb + c] = w2 * t[cb + c] + cpu::keep_if(k[c] == 1, v);
      b[c] = w2 * b[c] + cpu::keep_if(k[c] == 2, v);
      b[cb + c] = w2 * b[cb + c] + cpu::keep_if(k[c] == 3, v);
    }
  }
  // A last odd column is in no window.
  _Pragma("omp simd")
  for (int64_t e = 2 * Wp * cb; e < W * cb; ++e) top[e] *= w2;
  _Pragma("omp simd")
  for (int64_t e = 2 * Wp * cb; e < W * cb; ++e) bot[e] *= w2;
}

at::MemoryFormat format(bool channels_last) {
  return channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

at::Tensor shape_adaptor_maxpool_forward_cpu(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w2,
                                             c10::IntArrayRef size, bool align_corners, bool channels_last,
                                             c10::IntArrayRef forms) {
  KernelForms::decode(forms);  // validated only: the CPU kernel has one form
  check_shape_adaptor_args(x, w1, w2, size);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), Ho = size[0], Wo = size[1];
  const int64_t Hp = H / 2, Wp = W / 2;
  at::Tensor out = at::empty({N, C, Ho, Wo}, x.options().memory_format(format(channels_last)));
  if (out.numel() == 0) return out;
  const int64_t cblock = std::min(C, kChannelBlock);
  const int64_t blocks_per_image = (C + cblock - 1) / cblock;
  const int64_t oN = out.stride(0), oC = out.stride(1), oH = out.stride(2), oW = out.stride(3);

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "shape_adaptor_maxpool_forward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto full = make_branch<scalar_t, acc_t>(x, w2, Ho, Wo, align_corners, std::nullopt);
    const auto pool = make_resize<acc_t>(Hp, Wp, Ho, Wo, align_corners, std::nullopt);
    const acc_t pw = static_cast<acc_t>(w1.item<double>());
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    cpu::parallel_tasks(N * blocks_per_image, [&](int64_t begin, int64_t end) {
      const int64_t row = W * cblock, prow = Wp * cblock, orow = Wo * cblock;
      std::vector<acc_t> scratch(3 * row + 2 * prow + 2 * orow);
      acc_t* vrow = scratch.data();  // vertical pass of either branch (W >= Wp)
      acc_t* xt = vrow + row;        // x rows 2p and 2p + 1, [w][c]
      acc_t* xb = xt + row;
      acc_t* cache[2] = {xb + row, xb + row + prow};  // the last two pooled rows
      acc_t* r1 = cache[1] + prow;
      acc_t* r2 = r1 + orow;
      for (int64_t t = begin; t < end; ++t) {
        const int64_t n = t / blocks_per_image;
        const int64_t c0 = (t % blocks_per_image) * cblock;
        cpu::with_block(std::min(c0 + cblock, C) - c0, [&](const int64_t cb) {
          const scalar_t* xn = full.x + n * full.sN + c0 * full.sC;
          auto pooled_row = [&](int64_t p, acc_t* dst) {
            load_row(xn + 2 * p * full.sH, full.sC, full.sW, cb, 2 * Wp, xt);
            load_row(xn + (2 * p + 1) * full.sH, full.sC, full.sW, cb, 2 * Wp, xb);
            pool_rows<false>(xt, xb, cb, Wp, dst, nullptr);
          };
          int64_t cached[2] = {-1, -1};
          // The slot holding pooled row p, computing it into the slot other than `keep` if absent.
          auto fetch = [&](int64_t p, int keep) {
            for (int s = 0; s < 2; ++s)
              if (cached[s] == p) return s;
            const int s = keep == 0 ? 1 : 0;
            pooled_row(p, cache[s]);
            cached[s] = p;
            return s;
          };
          scalar_t* o = op + n * oN + c0 * oC;
          for (int64_t i = 0; i < Ho; ++i) {
            if (pool.pass) {
              pooled_row(i, r1);
            } else {
              const int64_t p0 = pool.rows.i0[i], p1 = pool.rows.i1[i];
              const int s0 = fetch(p0, cached[0] == p1 ? 0 : (cached[1] == p1 ? 1 : -1));
              const int s1 = fetch(p1, s0);
              const acc_t* top = cache[s0];
              const acc_t* bot = cache[s1];
              const acc_t h0 = pool.rows.w0[i], h1 = pool.rows.w1[i];
              _Pragma("omp simd")
              for (int64_t e = 0; e < Wp * cb; ++e) vrow[e] = h0 * top[e] + h1 * bot[e];
              resize_cols(pool.cols, cb, Wo, vrow, r1);
            }
            resize_row(full, n, c0, cb, i, Wo, vrow, r2);
            const acc_t a = pw, z = full.weight;
            _Pragma("omp simd")
            for (int64_t e = 0; e < Wo * cb; ++e) r1[e] = a * r1[e] + z * r2[e];
            store_row(o, oC, oH, oW, cb, i, Wo, r1);
          }
        });
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> shape_adaptor_maxpool_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w2,
    c10::IntArrayRef size, bool align_corners, bool need_x, bool need_w1, bool need_w2, bool channels_last,
    c10::IntArrayRef forms) {
  KernelForms::decode(forms);  // validated only: the CPU kernel has one form
  check_shape_adaptor_args(x, w1, w2, size);
  check_blend_grad(grad_out, x, size, "shape_adaptor_maxpool_backward");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), Ho = size[0], Wo = size[1];
  const int64_t Hp = H / 2, Wp = W / 2;
  at::Tensor gx = need_x ? at::empty(x.sizes(), x.options().memory_format(format(channels_last)))
                         : at::empty({0}, x.options());
  at::Tensor gw1 = at::zeros({}, w1.options());
  at::Tensor gw2 = at::zeros({}, w2.options());
  if (grad_out.numel() == 0 || !(need_x || need_w1 || need_w2)) {
    if (need_x) gx.zero_();
    return {gx, gw1, gw2};
  }
  const int64_t cblock = std::min(C, kChannelBlock);
  const int64_t blocks_per_image = (C + cblock - 1) / cblock;
  const int64_t tasks = N * blocks_per_image;
  std::vector<double> partials(2 * tasks, 0.0);
  const int64_t gN = grad_out.stride(0), gC = grad_out.stride(1), gH = grad_out.stride(2), gW = grad_out.stride(3);
  const int64_t gxN = need_x ? gx.stride(0) : 0, gxC = need_x ? gx.stride(1) : 0;
  const int64_t gxH = need_x ? gx.stride(2) : 0, gxW = need_x ? gx.stride(3) : 0;
  // R_1ᵀ(g) is needed for dL/dx and dL/dw1, R_2ᵀ(g) for dL/dx and dL/dw2.
  const bool use_pool = need_x || need_w1, use_full = need_x || need_w2;

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "shape_adaptor_maxpool_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto full = make_branch<scalar_t, acc_t>(x, w2, Ho, Wo, align_corners, std::nullopt);
    const auto pool = make_resize<acc_t>(Hp, Wp, Ho, Wo, align_corners, std::nullopt);
    const acc_t pw = static_cast<acc_t>(w1.item<double>()), fw = full.weight;
    const scalar_t* gp = grad_out.const_data_ptr<scalar_t>();
    scalar_t* gxp = need_x ? gx.mutable_data_ptr<scalar_t>() : nullptr;
    // Ring sizes (cpu::RowRing): the sweep below consumes pooled row p together
    // with x rows 2p and 2p + 1, once all three are complete; simulated here
    // to size each ring to the most rows it holds at once.
    // Pairs (x rows 2p, 2p + 1 and pooled row p) complete before output row i is
    // added: p < pairs_ready(i), i.e. 2p + 1 < the full branch's ready rows and
    // p < the pooled branch's (never decreasing in i).
    auto pairs_ready = [&](int64_t i) {
      const int64_t fr = use_full ? cpu::ring_ready(full, i) : H;
      const int64_t pr = use_pool ? cpu::ring_ready(pool, i) : Hp;
      return std::min({Hp, fr / 2, pr});
    };
    int64_t k_full = 2, k_pool = 2;
    {
      int64_t p_next = 0;
      for (int64_t i = 0; i < Ho; ++i) {
        p_next = std::max(p_next, pairs_ready(i));
        const int64_t top_full = full.pass ? i : full.rows.i1[i];
        const int64_t top_pool = pool.pass ? i : pool.rows.i1[i];
        k_full = std::max(k_full, top_full - 2 * p_next + 1);
        k_pool = std::max(k_pool, top_pool - p_next + 1);
      }
    }
    cpu::parallel_tasks(tasks, [&](int64_t begin, int64_t end) {
      const int64_t row = W * cblock, prow = Wp * cblock;
      std::vector<acc_t> scratch(2 * row + prow + Wo * cblock + cblock + (use_full ? k_full * row : 0) +
                                 (use_pool ? k_pool * prow : 0));
      acc_t* xt = scratch.data();           // x rows 2p and 2p + 1, [w][c]
      acc_t* xb = xt + row;
      acc_t* pooled = xb + row;             // their pooled row, [q][c]
      acc_t* grow = pooled + prow;          // grad_out's row, [j][c]
      acc_t* lanes = grow + Wo * cblock;    // per-channel partial sums of a weight gradient
      acc_t* ring_full = lanes + cblock;    // R_2ᵀ(g) rows in flight
      acc_t* ring_pool = ring_full + (use_full ? k_full * row : 0);  // R_1ᵀ(g) rows in flight
      std::vector<uint8_t> argmax(need_x ? prow : 0);
      for (int64_t t = begin; t < end; ++t) {
        const int64_t n = t / blocks_per_image;
        const int64_t c0 = (t % blocks_per_image) * cblock;
        double dw[2] = {0.0, 0.0};
        cpu::with_block(std::min(c0 + cblock, C) - c0, [&](const int64_t cb) {
          const scalar_t* go = gp + n * gN + c0 * gC;
          const scalar_t* xn = full.x + n * full.sN + c0 * full.sC;
          scalar_t* gxn = need_x ? gxp + n * gxN + c0 * gxC : nullptr;
          const cpu::RowRing<acc_t> r2{ring_full, k_full, W * cb}, r1{ring_pool, k_pool, Wp * cb};
          if (use_full) r2.clear_all();
          if (use_pool) r1.clear_all();
          // x rows 2p and 2p + 1 with pooled row p, their R_2ᵀ(g) rows and R_1ᵀ(g) row
          // complete: the weight gradients' dots, and dL/dx stored while the rows are in cache.
          auto consume_pair = [&](int64_t p) {
            const int64_t h = 2 * p;
            acc_t* a2t = use_full ? r2.row(h) : nullptr;
            acc_t* a2b = use_full ? r2.row(h + 1) : nullptr;
            const acc_t* a1 = use_pool ? r1.row(p) : nullptr;
            load_row(xn + h * full.sH, full.sC, full.sW, cb, W, xt);
            load_row(xn + (h + 1) * full.sH, full.sC, full.sW, cb, W, xb);
            if (need_w2) {
              dw[1] += masked_dot(a2t, xt, cb, W, lanes);
              dw[1] += masked_dot(a2b, xb, cb, W, lanes);
            }
            if (use_pool) {
              if (need_x) {
                pool_rows<true>(xt, xb, cb, Wp, pooled, argmax.data());
              } else {
                pool_rows<false>(xt, xb, cb, Wp, pooled, nullptr);
              }
              if (need_w1) dw[0] += masked_dot(a1, pooled, cb, Wp, lanes);
            }
            if (need_x) {
              pair_grad(a2t, a2b, a1, argmax.data(), cb, W, Wp, pw, fw);
              store_wc(a2t, acc_t(1), cb, W, gxn + h * gxH, gxC, gxW);
              store_wc(a2b, acc_t(1), cb, W, gxn + (h + 1) * gxH, gxC, gxW);
            }
            if (use_full) {
              r2.clear(h);
              r2.clear(h + 1);
            }
            if (use_pool) r1.clear(p);
          };
          int64_t p_next = 0;
          for (int64_t i = 0; i < Ho; ++i) {
            for (const int64_t ready = pairs_ready(i); p_next < ready; ++p_next) consume_pair(p_next);
            load_row(go + i * gH, gC, gW, cb, Wo, grow);
            // R_kᵀ(g), unweighted.
            if (use_full) cpu::ring_add(full, cb, i, grow, r2);
            if (use_pool) cpu::ring_add(pool, cb, i, grow, r1);
          }
          for (; p_next < Hp; ++p_next) consume_pair(p_next);
          if (H % 2 == 1 && use_full) {
            // A last odd row is in no window: only the full-resolution branch reads it.
            const int64_t h = H - 1;
            const acc_t* a2 = r2.row(h);
            if (need_w2) {
              load_row(xn + h * full.sH, full.sC, full.sW, cb, W, xt);
              dw[1] += masked_dot(a2, xt, cb, W, lanes);
            }
            if (need_x) store_wc(a2, fw, cb, W, gxn + h * gxH, gxC, gxW);
          }
        });
        partials[2 * t] = dw[0];
        partials[2 * t + 1] = dw[1];
      }
    });
  });
  const auto [s0, s1] = cpu::sum_task_partials(partials);
  if (need_w1) gw1.fill_(s0);
  if (need_w2) gw2.fill_(s1);
  return {gx, gw1, gw2};
}

}  // namespace
}  // namespace resizeops

TORCH_LIBRARY_IMPL(resizeops_ext, CPU, m) {
  m.impl("shape_adaptor_maxpool_forward", &resizeops::shape_adaptor_maxpool_forward_cpu);
  m.impl("shape_adaptor_maxpool_backward", &resizeops::shape_adaptor_maxpool_backward_cpu);
}
