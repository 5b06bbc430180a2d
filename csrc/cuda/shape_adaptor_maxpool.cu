// CUDA kernels of the Shape Adaptor max-pool op (docs/SEMANTICS.md,
// shape_adaptor_maxpool): resizeops_ext::shape_adaptor_maxpool_{forward,backward}
// (schemas in csrc/resizeops.cpp): out = w1 * R(max_pool2d(x, 2)) + w2 * R(x)
// without the pooled map. The tables and the forward are blend_launch.cuh's,
// shared with resize_blend.
//
// - Backward, deterministic (no atomics, fixed-order sums), one thread per pixel
//   of x: each pixel gathers both branches' gradient from the outputs reading it
//   (the pooled branch's only where the pixel is its 2x2 window's first maximum,
//   max_pool2d's rule), stores it, and adds the weight-gradient terms to per-thread
//   float64 sums, reduced per block into a partials buffer (a fixed grid, so a
//   fixed order), then summed by one block.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/util/ArrayRef.h>
#include <torch/library.h>

#include <cmath>
#include <optional>
#include <tuple>

#include "blend_launch.cuh"
#include "launch.cuh"
#include "resizeops/blend_elements.h"
#include "resizeops/blend_plan.h"
#include "resizeops/checks.h"
#include "resizeops/kernel_forms.h"
#include "resizeops/tensor_index.h"

namespace resizeops {
namespace {

// shape_adaptor_maxpool's backward, one thread per pixel of x (grad_x's memory order).
template <bool NeedW, bool Tiles, typename scalar_t, typename acc_t, typename index_t, typename Indexer>
__global__ void __launch_bounds__(kThreads)
    sa_backward_kernel(const scalar_t* __restrict__ x, Strides4<index_t> xs, const scalar_t* __restrict__ g,
                       Strides4<index_t> gs, scalar_t* __restrict__ gx, int64_t total, Indexer idx,
                       elements::BlendBranch<acc_t> b1, elements::BlendBranch<acc_t> b2, index_t pooled_h,
                       index_t pooled_w, const acc_t* __restrict__ w1p, const acc_t* __restrict__ w2p,
                       double* __restrict__ partials) {
  const acc_t w1 = *w1p, w2 = *w2p;
  double dw1 = 0.0, dw2 = 0.0;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const auto p = idx(static_cast<index_t>(t));
    const index_t n = p.n, c = p.c;
    const auto r = elements::sa_pixel_grad<NeedW, Tiles, scalar_t, acc_t, index_t>(
        g + n * gs.n + c * gs.c, gs.h, gs.w, x + n * xs.n + c * xs.c, xs.h, xs.w, b1, b2, pooled_h, pooled_w, w1,
        w2, static_cast<index_t>(p.h), static_cast<index_t>(p.w));
    dw1 += r.dw1;
    dw2 += r.dw2;
    if (gx != nullptr) gx[t] = static_cast<scalar_t>(r.grad);
  }
  if (NeedW) {
    block_sum2(&dw1, &dw2);
    if (threadIdx.x == 0) {
      partials[2 * blockIdx.x] = dw1;
      partials[2 * blockIdx.x + 1] = dw2;
    }
  }
}

at::Tensor shape_adaptor_maxpool_forward_cuda(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w2,
                                              c10::IntArrayRef size, bool align_corners, bool channels_last,
                                              c10::IntArrayRef forms) {
  check_shape_adaptor_args(x, w1, w2, size);
  check_cuda(x, w1, w2, "shape_adaptor_maxpool_forward");
  return forward_impl<true>(x, x, w1, w2, x.size(2) / 2, x.size(3) / 2, size[0], size[1], align_corners,
                            std::nullopt, std::nullopt, channels_last, KernelForms::decode(forms));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> shape_adaptor_maxpool_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w2,
    c10::IntArrayRef size, bool align_corners, bool need_x, bool need_w1, bool need_w2, bool channels_last,
    c10::IntArrayRef forms_arg) {
  const KernelForms forms = KernelForms::decode(forms_arg);
  check_shape_adaptor_args(x, w1, w2, size);
  check_blend_grad(grad_out, x, size, "shape_adaptor_maxpool_backward");
  check_cuda(x, w1, w2, "shape_adaptor_maxpool_backward");
  const c10::cuda::CUDAGuard device_guard(x.device());
  const int64_t Ho = size[0], Wo = size[1], Hp = x.size(2) / 2, Wp = x.size(3) / 2;
  at::Tensor gx = need_x ? at::empty(x.sizes(), x.options().memory_format(format_of(channels_last)))
                         : at::empty({0}, x.options());
  const bool need_w = need_w1 || need_w2;
  if (grad_out.numel() == 0 || !(need_x || need_w)) {
    if (need_x) gx.zero_();
    return {gx, at::zeros({}, w1.options()), at::zeros({}, w2.options())};
  }
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const bool pass1 = passes_through(Hp, Wp, Ho, Wo, std::nullopt);
  const bool pass2 = passes_through(x.size(2), x.size(3), Ho, Wo, std::nullopt);
  const auto layout = blend_layout(Hp, Wp, pass1, std::nullopt, x.size(2), x.size(3), pass2, std::nullopt, Ho, Wo,
                              align_corners);
  const int64_t total = x.numel();
  const int64_t blocks = grid_for(total);
  at::Tensor partials = at::empty({2 * blocks}, x.options().dtype(at::kDouble));
  at::Tensor sums = at::zeros({2}, x.options().dtype(at::kDouble));
  const bool use32 = use_int32_indexing(forms, {total, extent(x), extent(grad_out)});
  const bool tiles = forms.blend_gather_tiles();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "shape_adaptor_maxpool_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const at::Tensor a = weight_on_device(w1, acc_type_of(x.scalar_type()));
    const at::Tensor z = weight_on_device(w2, acc_type_of(x.scalar_type()));
    const Tables tb = launch_tables<acc_t>(layout, x, true, stream);
    const auto b1 = branch_of<acc_t>(layout, tb, 0, pass1);
    const auto b2 = branch_of<acc_t>(layout, tb, 1, pass2);
    with_indexing(use32, x.size(1), x.size(2), x.size(3), channels_last, [&](auto zero, auto idx) {
      using index_t = decltype(zero);
      using I = decltype(idx);
      const scalar_t* xp = x.const_data_ptr<scalar_t>();
      const scalar_t* g = grad_out.const_data_ptr<scalar_t>();
      scalar_t* gxp = need_x ? gx.mutable_data_ptr<scalar_t>() : nullptr;
      const auto xs = strides_of<index_t>(x);
      const auto gs = strides_of<index_t>(grad_out);
      const index_t ph = static_cast<index_t>(Hp), pw = static_cast<index_t>(Wp);
      auto* kernel = need_w ? (tiles ? sa_backward_kernel<true, true, scalar_t, acc_t, index_t, I>
                                     : sa_backward_kernel<true, false, scalar_t, acc_t, index_t, I>)
                            : (tiles ? sa_backward_kernel<false, true, scalar_t, acc_t, index_t, I>
                                     : sa_backward_kernel<false, false, scalar_t, acc_t, index_t, I>);
      kernel<<<blocks, kThreads, 0, stream>>>(xp, xs, g, gs, gxp, total, idx, b1, b2, ph, pw,
                                              a.const_data_ptr<acc_t>(), z.const_data_ptr<acc_t>(),
                                              need_w ? partials.mutable_data_ptr<double>() : nullptr);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    if (need_w) {
      launch_reduce_partials(partials, blocks, sums, stream);
    }
  });
  auto [gw1, gw2] = weight_grads(sums, w1, w2, need_w1, need_w2);
  return {gx, gw1, gw2};
}
}  // namespace
}  // namespace resizeops

TORCH_LIBRARY_IMPL(resizeops_ext, CUDA, m) {
  m.impl("shape_adaptor_maxpool_forward", &resizeops::shape_adaptor_maxpool_forward_cuda);
  m.impl("shape_adaptor_maxpool_backward", &resizeops::shape_adaptor_maxpool_backward_cuda);
}
