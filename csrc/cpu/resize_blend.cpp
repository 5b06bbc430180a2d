// C++ CPU kernels of resize_blend (docs/SEMANTICS.md, resize_blend):
// resizeops_ext::resize_blend_forward and resizeops_ext::resize_blend_backward
// (schemas in csrc/resizeops.cpp).
//
// out = w1 * R(x1) + w2 * R(x2), R = F.interpolate(mode="bilinear") to `size`
// (with an optional scale_factor and a crop of the top-left window), an input
// already of `size` without a scale passing through unchanged.
//
// Same structure as the DynOPool CPU kernel (csrc/cpu/dynopool2d.cpp), row
// machinery in csrc/cpu/resize_rows.h (shared with csrc/cpu/shape_adaptor_maxpool.cpp): tasks of
// (image n, block of 16 channels), each output row computed separably from a
// vertical interpolation of the two input rows it reads ([w][c] row buffers,
// channels innermost, so the inner loops vectorise over channels whatever the
// layout). The backward sweeps grad_out's rows in order and builds R_kᵀ(g) an
// input row at a time (cpu::RowRing: the transpose of the column taps summed in
// registers, then the vertical taps); a row of R_kᵀ(g) is consumed once no
// later output row reads it: dL/dx_k = w_k R_kᵀ(g) stored, and
// dL/dw_k += <R_kᵀ(g), x_k> on that row, accumulated in the accumulation type
// per row, then in double per task, summed in task order: deterministic.
// dL/dw_k is Σ g·R_k(x_k) (the reference's form); the transposed sum equals it
// wherever everything is finite, but not with inf or NaN in x_k or grad_out
// (R(x) holds 0·inf = NaN where an infinite pixel is read with weight 0, and
// ±inf of one output cancel into NaN). So every pixel counts in the transposed
// sum (one no output reads too: non-finite there makes the sum non-finite),
// and a sum that is not finite is taken again in the reference's form, output
// row by output row (weight_grad_again): its inf or NaN, at the cost of a
// forward pass only then.
//
// Arithmetic: interp_ratio / interp_source_coord_from_ratio / interp_taps of
// resizeops/math.h (ATen's area_pixel_compute_* and guard_index_and_lambda
// rules, and its copy of an axis whose size does not change); in the accumulation type
// (float for half types, as the reference computes in float32).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Optional.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <tuple>
#include <vector>

#include "resizeops/checks.h"
#include "resizeops/kernel_forms.h"
#include "resize_rows.h"

namespace resizeops {
namespace {

using cpu::Branch;
using cpu::kChannelBlock;
using cpu::load_row;
using cpu::make_branch;
using cpu::masked_dot;
using cpu::resize_row;
using cpu::ScaleArg;
using cpu::store_row;
using cpu::store_wc;

std::optional<double> opt_scale(const ScaleArg& s, int k) {
  if (!s.has_value()) return std::nullopt;
  return (*s)[k];
}

at::Tensor resize_blend_forward_cpu(const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& w1,
                                    const at::Tensor& w2, c10::IntArrayRef size, bool align_corners, ScaleArg scale1,
                                    ScaleArg scale2, bool channels_last, c10::IntArrayRef forms) {
  KernelForms::decode(forms);  // validated only: the CPU kernel has one form
  check_blend_args(x1, x2, w1, w2, size, scale1, scale2);
  const int64_t N = x1.size(0), C = x1.size(1), Ho = size[0], Wo = size[1];
  const auto fmt = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  at::Tensor out = at::empty({N, C, Ho, Wo}, x1.options().memory_format(fmt));
  if (out.numel() == 0) return out;
  const int64_t cblock = std::min(C, kChannelBlock);
  const int64_t blocks_per_image = (C + cblock - 1) / cblock;
  const int64_t oN = out.stride(0), oC = out.stride(1), oH = out.stride(2), oW = out.stride(3);

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x1.scalar_type(), "resize_blend_forward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto b1 = make_branch<scalar_t, acc_t>(x1, w1, Ho, Wo, align_corners, scale1);
    const auto b2 = make_branch<scalar_t, acc_t>(x2, w2, Ho, Wo, align_corners, scale2);
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    cpu::parallel_tasks(N * blocks_per_image, [&](int64_t begin, int64_t end) {
      const int64_t wmax = std::max(b1.W, b2.W);
      std::vector<acc_t> scratch(wmax * cblock + 2 * Wo * cblock);
      acc_t* vrow = scratch.data();
      acc_t* r1 = vrow + wmax * cblock;
      acc_t* r2 = r1 + Wo * cblock;
      for (int64_t t = begin; t < end; ++t) {
        const int64_t n = t / blocks_per_image;
        const int64_t c0 = (t % blocks_per_image) * cblock;
        scalar_t* o = op + n * oN + c0 * oC;
        cpu::with_block(std::min(c0 + cblock, C) - c0, [&](const int64_t cb) {
          for (int64_t i = 0; i < Ho; ++i) {
            resize_row(b1, n, c0, cb, i, Wo, vrow, r1);
            resize_row(b2, n, c0, cb, i, Wo, vrow, r2);
            const acc_t a = b1.weight, z = b2.weight;
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

// dL/dw_k = Σ_o g_o·R_k(x_k)_o in the reference's form: R_k(x_k) output row by
// output row (the forward's resize_row), times grad_out's row, each product
// added in double; per task, then in task order. Only where the transposed sum
// of the backward is not finite (an inf or NaN in x_k or grad_out).
template <typename scalar_t, typename acc_t>
double weight_grad_again(const Branch<scalar_t, acc_t>& b, const at::Tensor& grad_out, int64_t N, int64_t C,
                         int64_t cblock, int64_t Ho, int64_t Wo) {
  const int64_t blocks_per_image = (C + cblock - 1) / cblock;
  const int64_t tasks = N * blocks_per_image;
  const int64_t gN = grad_out.stride(0), gC = grad_out.stride(1), gH = grad_out.stride(2), gW = grad_out.stride(3);
  const scalar_t* gp = grad_out.const_data_ptr<scalar_t>();
  std::vector<double> partials(tasks, 0.0);
  cpu::parallel_tasks(tasks, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> scratch(b.W * cblock + 2 * Wo * cblock);
    acc_t* vrow = scratch.data();
    acc_t* r = vrow + b.W * cblock;
    acc_t* grow = r + Wo * cblock;
    for (int64_t t = begin; t < end; ++t) {
      const int64_t n = t / blocks_per_image;
      const int64_t c0 = (t % blocks_per_image) * cblock;
      const int64_t cb = std::min(c0 + cblock, C) - c0;
      double s = 0.0;
      for (int64_t i = 0; i < Ho; ++i) {
        resize_row(b, n, c0, cb, i, Wo, vrow, r);
        load_row(gp + n * gN + c0 * gC + i * gH, gC, gW, cb, Wo, grow);
        for (int64_t e = 0; e < Wo * cb; ++e) s += static_cast<double>(grow[e] * r[e]);
      }
      partials[t] = s;
    }
  });
  double sum = 0.0;
  for (const double p : partials) sum += p;  // task order: deterministic
  return sum;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> resize_blend_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& w1,
    const at::Tensor& w2, c10::IntArrayRef size, bool align_corners, ScaleArg scale1, ScaleArg scale2,
    bool need_x1, bool need_x2, bool need_w1, bool need_w2, bool x1_channels_last, bool x2_channels_last,
    c10::IntArrayRef forms) {
  KernelForms::decode(forms);  // validated only: the CPU kernel has one form
  check_blend_args(x1, x2, w1, w2, size, scale1, scale2);
  check_blend_grad(grad_out, x1, size, "resize_blend_backward");
  const int64_t N = x1.size(0), C = x1.size(1), Ho = size[0], Wo = size[1];
  const bool need[4] = {need_x1, need_x2, need_w1, need_w2};
  auto fmt = [](bool cl) { return cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous; };
  at::Tensor gx1 = need[0] ? at::empty(x1.sizes(), x1.options().memory_format(fmt(x1_channels_last)))
                           : at::empty({0}, x1.options());
  at::Tensor gx2 = need[1] ? at::empty(x2.sizes(), x2.options().memory_format(fmt(x2_channels_last)))
                           : at::empty({0}, x2.options());
  at::Tensor gw1 = at::zeros({}, w1.options());
  at::Tensor gw2 = at::zeros({}, w2.options());
  if (grad_out.numel() == 0 || !(need[0] || need[1] || need[2] || need[3])) {
    if (need[0]) gx1.zero_();
    if (need[1]) gx2.zero_();
    return {gx1, gx2, gw1, gw2};
  }
  const int64_t cblock = std::min(C, kChannelBlock);
  const int64_t blocks_per_image = (C + cblock - 1) / cblock;
  const int64_t tasks = N * blocks_per_image;
  std::vector<double> partials(2 * tasks, 0.0);
  double sums[2] = {0.0, 0.0};
  const int64_t gN = grad_out.stride(0), gC = grad_out.stride(1), gH = grad_out.stride(2), gW = grad_out.stride(3);

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x1.scalar_type(), "resize_blend_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto b1 = make_branch<scalar_t, acc_t>(x1, w1, Ho, Wo, align_corners, scale1);
    const auto b2 = make_branch<scalar_t, acc_t>(x2, w2, Ho, Wo, align_corners, scale2);
    const Branch<scalar_t, acc_t>* br[2] = {&b1, &b2};
    at::Tensor* gxs[2] = {&gx1, &gx2};
    const scalar_t* gp = grad_out.const_data_ptr<scalar_t>();
    cpu::parallel_tasks(tasks, [&](int64_t begin, int64_t end) {
      const int64_t wmax = std::max(b1.W, b2.W);
      std::vector<acc_t> scratch(wmax * cblock + Wo * cblock + cblock + 2 * (b1.W + b2.W) * cblock);
      acc_t* xrow = scratch.data();        // a row of x_k, [w][c]
      acc_t* grow = xrow + wmax * cblock;  // grad_out's row, [j][c]
      acc_t* lanes = grow + Wo * cblock;   // per-channel partial sums of the weight gradient
      acc_t* rings = lanes + cblock;       // R_kᵀ(g): two input rows of each branch
      const bool use[2] = {need[0] || need[2], need[1] || need[3]};
      for (int64_t t = begin; t < end; ++t) {
        const int64_t n = t / blocks_per_image;
        const int64_t c0 = (t % blocks_per_image) * cblock;
        const scalar_t* go = gp + n * gN + c0 * gC;
        double dw[2] = {0.0, 0.0};
        cpu::with_block(std::min(c0 + cblock, C) - c0, [&](const int64_t cb) {
          // Input row h of R_kᵀ(g) (unweighted), once complete: dL/dw_k +=
          // <R_kᵀ(g), x_k> on that row (one read of x_k instead of
          // interpolating it again; masked_dot skips the pixels no output
          // reads), and dL/dx_k = w_k R_kᵀ(g) stored.
          auto emit = [&](int k, int64_t h, const acc_t* a) {
            const auto& bk = *br[k];
            if (need[2 + k]) {
              load_row(bk.x + n * bk.sN + c0 * bk.sC + h * bk.sH, bk.sC, bk.sW, cb, bk.W, xrow);
              dw[k] += masked_dot</*kSkipZero=*/false>(a, xrow, cb, bk.W, lanes);
            }
            if (need[k]) {
              const at::Tensor& gx = *gxs[k];
              scalar_t* o = gx.mutable_data_ptr<scalar_t>() + n * gx.stride(0) + c0 * gx.stride(1) + h * gx.stride(2);
              store_wc(a, bk.weight, cb, bk.W, o, gx.stride(1), gx.stride(3));
            }
          };
          const cpu::RowRing<acc_t> ring[2] = {{rings, 2, b1.W * cb}, {rings + 2 * b1.W * cb, 2, b2.W * cb}};
          int64_t next[2] = {0, 0};  // each branch's next input row to consume
          auto consume = [&](int k, int64_t ready) {
            for (; next[k] < ready; ++next[k]) {
              emit(k, next[k], ring[k].row(next[k]));
              ring[k].clear(next[k]);
            }
          };
          for (int k = 0; k < 2; ++k)
            if (use[k]) ring[k].clear_all();
          for (int64_t i = 0; i < Ho; ++i) {
            load_row(go + i * gH, gC, gW, cb, Wo, grow);
            for (int k = 0; k < 2; ++k) {
              if (!use[k]) continue;
              consume(k, cpu::ring_ready(*br[k], i));
              cpu::ring_add(*br[k], cb, i, grow, ring[k]);
            }
          }
          for (int k = 0; k < 2; ++k)
            if (use[k]) consume(k, br[k]->H);
        });
        partials[2 * t] = dw[0];
        partials[2 * t + 1] = dw[1];
      }
    });
    const auto [s0, s1] = cpu::sum_task_partials(partials);
    sums[0] = s0;
    sums[1] = s1;
    for (int k = 0; k < 2; ++k) {
      if (need[2 + k] && !std::isfinite(sums[k])) {
        sums[k] = weight_grad_again(*br[k], grad_out, N, C, cblock, Ho, Wo);
      }
    }
  });
  if (need[2]) gw1.fill_(sums[0]);
  if (need[3]) gw2.fill_(sums[1]);
  return {gx1, gx2, gw1, gw2};
}

}  // namespace
}  // namespace resizeops

TORCH_LIBRARY_IMPL(resizeops_ext, CPU, m) {
  m.impl("resize_blend_forward", &resizeops::resize_blend_forward_cpu);
  m.impl("resize_blend_backward", &resizeops::resize_blend_backward_cpu);
}
