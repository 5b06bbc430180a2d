// Fused C++ CPU kernels of resize_blend (SPEC §2.2): resizeops_ext::resize_blend_forward
// and resizeops_ext::resize_blend_backward (schemas in csrc/resizeops.cpp).
//
// out = w1 * R(x1) + w2 * R(x2), R = F.interpolate(mode="bilinear") to `size`
// (with an optional scale_factor and a crop of the top-left window), an input
// already of `size` without a scale passing through unchanged.
//
// Same structure as the DynOPool CPU kernel (csrc/cpu/dynopool2d.cpp), row
// machinery in csrc/cpu/resize_rows.h (shared with csrc/cpu/shape_adaptor.cpp): tasks of
// (image n, block of 16 channels), each output row computed separably from a
// vertical interpolation of the two input rows it reads ([w][c] row buffers,
// channels innermost, so the inner loops vectorise over channels whatever the
// layout). The backward runs the transpose in the same order: the weighted
// gradient row is spread horizontally onto an input-width row, then vertically
// onto the task's slice of grad_x (its own: no atomics), and dL/dw_k = sum of
// g * R_k(x_k) is accumulated per output row in the accumulation type, then in
// double per task, summed in task order: deterministic.
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
using cpu::scatter_row;
using cpu::store_grad;
using cpu::store_row;

std::optional<double> opt_scale(const ScaleArg& s, int k) {
  if (!s.has_value()) return std::nullopt;
  return (*s)[k];
}

at::Tensor resize_blend_forward_cpu(const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& w1,
                                    const at::Tensor& w2, c10::IntArrayRef size, bool align_corners, ScaleArg scale1,
                                    ScaleArg scale2, bool channels_last) {
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
        const int64_t cb = std::min(c0 + cblock, C) - c0;
        scalar_t* o = op + n * oN + c0 * oC;
        for (int64_t i = 0; i < Ho; ++i) {
          resize_row(b1, n, c0, cb, i, Wo, vrow, r1);
          resize_row(b2, n, c0, cb, i, Wo, vrow, r2);
          const acc_t a = b1.weight, z = b2.weight;
          _Pragma("omp simd")
          for (int64_t e = 0; e < Wo * cb; ++e) r1[e] = a * r1[e] + z * r2[e];
          store_row(o, oC, oH, oW, cb, i, Wo, r1);
        }
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> resize_blend_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& w1,
    const at::Tensor& w2, c10::IntArrayRef size, bool align_corners, ScaleArg scale1, ScaleArg scale2,
    bool need_x1, bool need_x2, bool need_w1, bool need_w2, bool x1_channels_last, bool x2_channels_last) {
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
  const int64_t gN = grad_out.stride(0), gC = grad_out.stride(1), gH = grad_out.stride(2), gW = grad_out.stride(3);

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x1.scalar_type(), "resize_blend_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto b1 = make_branch<scalar_t, acc_t>(x1, w1, Ho, Wo, align_corners, scale1);
    const auto b2 = make_branch<scalar_t, acc_t>(x2, w2, Ho, Wo, align_corners, scale2);
    const scalar_t* gp = grad_out.const_data_ptr<scalar_t>();
    cpu::parallel_tasks(tasks, [&](int64_t begin, int64_t end) {
      const int64_t wmax = std::max(b1.W, b2.W);
      std::vector<acc_t> scratch(wmax * cblock + Wo * cblock + cblock);
      acc_t* vrow = scratch.data();  // the horizontal scatter row (input width)
      acc_t* grow = vrow + wmax * cblock;  // grad_out's row, [j][c]
      acc_t* lanes = grow + Wo * cblock;   // per-channel partial sums of the weight gradient
      const bool use[2] = {need[0] || need[2], need[1] || need[3]};
      std::vector<acc_t> acc1(use[0] ? b1.H * b1.W * cblock : 0), acc2(use[1] ? b2.H * b2.W * cblock : 0);
      for (int64_t t = begin; t < end; ++t) {
        const int64_t n = t / blocks_per_image;
        const int64_t c0 = (t % blocks_per_image) * cblock;
        const int64_t cb = std::min(c0 + cblock, C) - c0;
        const scalar_t* go = gp + n * gN + c0 * gC;
        std::fill(acc1.begin(), acc1.end(), acc_t(0));
        std::fill(acc2.begin(), acc2.end(), acc_t(0));
        double dw[2] = {0.0, 0.0};
        for (int64_t i = 0; i < Ho; ++i) {
          load_row(go + i * gH, gC, gW, cb, Wo, grow);
          // R_kᵀ(g), unweighted, for every branch that needs a gradient.
          if (use[0]) scatter_row(b1, cb, i, Wo, grow, vrow, acc1.data());
          if (use[1]) scatter_row(b2, cb, i, Wo, grow, vrow, acc2.data());
        }
        const Branch<scalar_t, acc_t>* br[2] = {&b1, &b2};
        const std::vector<acc_t>* accs[2] = {&acc1, &acc2};
        for (int k = 0; k < 2; ++k) {
          if (!need[2 + k]) continue;
          // dL/dw_k = <g, R_k x_k> = <R_kᵀ g, x_k>: one read of x_k instead of
          // interpolating it again, row by row, each row of x_k transposed into
          // vrow ([w][c]) first (masked_dot skips the pixels no output reads).
          const auto& bk = *br[k];
          const acc_t* ak = accs[k]->data();
          const scalar_t* xk = bk.x + n * bk.sN + c0 * bk.sC;
          for (int64_t h = 0; h < bk.H; ++h) {
            const scalar_t* xh = xk + h * bk.sH;
            load_row(xh, bk.sC, bk.sW, cb, bk.W, vrow);
            dw[k] += masked_dot(ak + h * bk.W * cb, vrow, cb, bk.W, lanes);
          }
        }
        // dL/dx_k = w_k R_kᵀ(g).
        if (need[0]) store_grad<scalar_t, acc_t>(gx1, acc1.data(), b1.weight, n, c0, cb, b1.H, b1.W);
        if (need[1]) store_grad<scalar_t, acc_t>(gx2, acc2.data(), b2.weight, n, c0, cb, b2.H, b2.W);
        partials[2 * t] = dw[0];
        partials[2 * t + 1] = dw[1];
      }
    });
  });
  const auto [s0, s1] = cpu::sum_task_partials(partials);
  if (need[2]) gw1.fill_(s0);
  if (need[3]) gw2.fill_(s1);
  return {gx1, gx2, gw1, gw2};
}

}  // namespace
}  // namespace resizeops

TORCH_LIBRARY_IMPL(resizeops_ext, CPU, m) {
  m.impl("resize_blend_forward", &resizeops::resize_blend_forward_cpu);
  m.impl("resize_blend_backward", &resizeops::resize_blend_backward_cpu);
}
