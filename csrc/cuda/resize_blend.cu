// CUDA kernels of resize_blend (docs/SEMANTICS.md, resize_blend):
// resizeops_ext::resize_blend_{forward,backward} (schemas in csrc/resizeops.cpp).
// The tables and the forward are blend_launch.cuh's, shared with
// shape_adaptor_maxpool (shape_adaptor_maxpool.cu).
//
// - Backward, deterministic (no atomics, fixed-order sums), one pass over the
//   input pixels of both branches (one launch): each pixel gathers R_kᵀ(g)
//   from the outputs reading it, stores w_k·R_kᵀ(g) as its gradient (each
//   pixel owns its output: no atomics, no zero-fill) and adds R_kᵀ(g)·x_k to
//   per-thread float64 sums of dL/dw_k, reduced per block into a partials
//   buffer (a fixed grid, so a fixed order), then summed by one block; a sum
//   that is not finite is taken again in the reference's form by one more block
//   (blend_weight_grads_again_kernel; it returns at once otherwise). Bytes:
//   grad_out read once per branch, x1 and x2 read once (only for the weight
//   gradients), grad_x1 and grad_x2 written once.
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

// One branch of the resize_blend backward: its input, gradient (nullptr: not
// stored), indexer over its pixels in grad_x's memory order, tables and weight.
template <typename scalar_t, typename acc_t, typename index_t, typename Indexer>
struct GradBranch {
  const scalar_t* x;
  Strides4<index_t> xs;
  scalar_t* gx;
  Indexer idx;
  elements::BlendBranch<acc_t> b;
  const acc_t* weight;
  int64_t total;  // pixels to visit: x_k.numel(), or 0 when nothing of branch k is needed
};

template <bool NeedW, bool Tiles, typename scalar_t, typename acc_t, typename index_t, typename Indexer>
__device__ __forceinline__ double blend_grad_pixel(const GradBranch<scalar_t, acc_t, index_t, Indexer>& a,
                                                   const scalar_t* __restrict__ g, const Strides4<index_t>& gs, int64_t t) {
  const auto p = a.idx(static_cast<index_t>(t));
  const index_t n = p.n, c = p.c;
  const auto r = elements::blend_pixel_grad<NeedW, Tiles, scalar_t, acc_t, index_t>(
      g + n * gs.n + c * gs.c, gs.h, gs.w, a.x + n * a.xs.n + c * a.xs.c, a.xs.h, a.xs.w, a.b, *a.weight,
      static_cast<index_t>(p.h), static_cast<index_t>(p.w));
  if (a.gx != nullptr) a.gx[t] = static_cast<scalar_t>(r.grad);
  return r.dw1;  // the weight-gradient term
}

// Both branches in one launch: threads [0, total1) take x1's pixels, the rest x2's.
// Tiles: the gathers' tile form where it fits (KernelForms::gather, kernel_forms.h).
template <bool NeedW, bool Tiles, typename scalar_t, typename acc_t, typename index_t, typename Indexer>
__global__ void __launch_bounds__(kThreads)
    blend_backward_kernel(GradBranch<scalar_t, acc_t, index_t, Indexer> a1,
                          GradBranch<scalar_t, acc_t, index_t, Indexer> a2, const scalar_t* __restrict__ g,
                          Strides4<index_t> gs, double* __restrict__ partials) {
  double dw1 = 0.0, dw2 = 0.0;
  const int64_t total = a1.total + a2.total;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if (t < a1.total) {
      dw1 += blend_grad_pixel<NeedW, Tiles>(a1, g, gs, t);
    } else {
      dw2 += blend_grad_pixel<NeedW, Tiles>(a2, g, gs, t - a1.total);
    }
  }
  if (NeedW) {
    block_sum2(&dw1, &dw2);
    if (threadIdx.x == 0) {
      partials[2 * blockIdx.x] = dw1;
      partials[2 * blockIdx.x + 1] = dw2;
    }
  }
}

// Where a needed weight gradient came out of the gather not finite (inf or NaN
// in x_k or grad_out), dL/dw_k again in the reference's form, Σ_o g_o·R_k(x_k)_o
// (blend_elements.h: the transposed sum cannot tell inf from NaN there). One block,
// launched after the reduction and reading its sums on the device, so no host
// sync: it returns at once when they are finite (the same test in every thread),
// and is slow only when they are not. Deterministic: fixed block, fixed order.
template <typename scalar_t, typename acc_t, typename index_t, typename Indexer>
__global__ void __launch_bounds__(kReduceThreads)
    blend_weight_grads_again_kernel(const scalar_t* __restrict__ x1, Strides4<index_t> s1, elements::BlendBranch<acc_t> b1,
                                    const scalar_t* __restrict__ x2, Strides4<index_t> s2, elements::BlendBranch<acc_t> b2,
                                    const scalar_t* __restrict__ g, Strides4<index_t> gs, int64_t total, Indexer idx,
                                    bool need_w1, bool need_w2, double* __restrict__ sums) {
  const bool again1 = need_w1 && !::isfinite(sums[0]);
  const bool again2 = need_w2 && !::isfinite(sums[1]);
  if (!again1 && !again2) return;
  double a = 0.0, b = 0.0;
  for (int64_t t = threadIdx.x; t < total; t += blockDim.x) {
    const auto p = idx(static_cast<index_t>(t));
    const index_t n = p.n, c = p.c, i = p.h, j = p.w;
    const scalar_t* gnc = g + n * gs.n + c * gs.c;
    if (again1) {
      a += elements::blend_weight_term<scalar_t, acc_t, index_t>(gnc, gs.h, gs.w, x1 + n * s1.n + c * s1.c, s1.h, s1.w,
                                                             b1, i, j);
    }
    if (again2) {
      b += elements::blend_weight_term<scalar_t, acc_t, index_t>(gnc, gs.h, gs.w, x2 + n * s2.n + c * s2.c, s2.h, s2.w,
                                                             b2, i, j);
    }
  }
  block_sum2(&a, &b);
  if (threadIdx.x == 0) {
    if (again1) sums[0] = a;
    if (again2) sums[1] = b;
  }
}

at::Tensor resize_blend_forward_cuda(const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& w1,
                                     const at::Tensor& w2, c10::IntArrayRef size, bool align_corners, ScaleArg scale1,
                                     ScaleArg scale2, bool channels_last, c10::IntArrayRef forms) {
  check_blend_args(x1, x2, w1, w2, size, scale1, scale2);
  check_cuda(x1, w1, w2, "resize_blend_forward");
  TORCH_CHECK(x2.device() == x1.device(), "resizeops_ext::resize_blend_forward (CUDA): x1 and x2 must be on one device");
  return forward_impl<false>(x1, x2, w1, w2, x1.size(2), x1.size(3), size[0], size[1], align_corners, scale1, scale2,
                             channels_last, KernelForms::decode(forms));
}

// Calls f(index_t{}, indexer of a, indexer of b) with one index width for both.
template <typename F>
void with_two_indexers(bool use32, const at::Tensor& a, bool a_cl, const at::Tensor& b, bool b_cl, const F& f) {
  if (use32) {
    f(int32_t{0}, Indexer32(a.size(1), a.size(2), a.size(3), a_cl), Indexer32(b.size(1), b.size(2), b.size(3), b_cl));
  } else {
    f(int64_t{0}, Indexer64(a.size(1), a.size(2), a.size(3), a_cl), Indexer64(b.size(1), b.size(2), b.size(3), b_cl));
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> resize_blend_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& w1,
    const at::Tensor& w2, c10::IntArrayRef size, bool align_corners, ScaleArg scale1, ScaleArg scale2, bool need_x1,
    bool need_x2, bool need_w1, bool need_w2, bool x1_channels_last, bool x2_channels_last,
    c10::IntArrayRef forms_arg) {
  const KernelForms forms = KernelForms::decode(forms_arg);
  check_blend_args(x1, x2, w1, w2, size, scale1, scale2);
  check_blend_grad(grad_out, x1, size, "resize_blend_backward");
  check_cuda(x1, w1, w2, "resize_blend_backward");
  TORCH_CHECK(x2.device() == x1.device(), "resizeops_ext::resize_blend_backward (CUDA): x1 and x2 must be on one device");
  const c10::cuda::CUDAGuard device_guard(x1.device());
  const int64_t Ho = size[0], Wo = size[1];
  at::Tensor gx1 = need_x1 ? at::empty(x1.sizes(), x1.options().memory_format(format_of(x1_channels_last)))
                           : at::empty({0}, x1.options());
  at::Tensor gx2 = need_x2 ? at::empty(x2.sizes(), x2.options().memory_format(format_of(x2_channels_last)))
                           : at::empty({0}, x2.options());
  const bool need_w = need_w1 || need_w2;
  if (grad_out.numel() == 0 || !(need_x1 || need_x2 || need_w)) {
    if (need_x1) gx1.zero_();
    if (need_x2) gx2.zero_();
    return {gx1, gx2, at::zeros({}, w1.options()), at::zeros({}, w2.options())};
  }
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const bool pass1 = passes_through(x1.size(2), x1.size(3), Ho, Wo, scale1);
  const bool pass2 = passes_through(x2.size(2), x2.size(3), Ho, Wo, scale2);
  const auto layout =
      blend_layout(x1.size(2), x1.size(3), pass1, scale1, x2.size(2), x2.size(3), pass2, scale2, Ho, Wo, align_corners);
  // Branch k's pixels are visited when its gradient or its weight's is needed.
  const int64_t total1 = (need_x1 || need_w1) ? x1.numel() : 0;
  const int64_t total2 = (need_x2 || need_w2) ? x2.numel() : 0;
  const int64_t blocks = grid_for(total1 + total2);
  at::Tensor partials = at::empty({2 * blocks}, x1.options().dtype(at::kDouble));
  at::Tensor sums = at::zeros({2}, x1.options().dtype(at::kDouble));
  const bool use32 =
      use_int32_indexing(forms, {total1 + total2, extent(x1), extent(x2), extent(grad_out), gx1.numel(), gx2.numel()});
  const bool tiles = forms.blend_gather_tiles();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x1.scalar_type(), "resize_blend_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const at::Tensor a = weight_on_device(w1, acc_type_of(x1.scalar_type()));
    const at::Tensor z = weight_on_device(w2, acc_type_of(x1.scalar_type()));
    const Tables tb = launch_tables<acc_t>(layout, x1, true, stream);
    const auto b1 = branch_of<acc_t>(layout, tb, 0, pass1);
    const auto b2 = branch_of<acc_t>(layout, tb, 1, pass2);
    with_two_indexers(use32, x1, x1_channels_last, x2, x2_channels_last, [&](auto zero, auto i1, auto i2) {
      using index_t = decltype(zero);
      using I = decltype(i1);
      GradBranch<scalar_t, acc_t, index_t, I> a1{x1.const_data_ptr<scalar_t>(), strides_of<index_t>(x1),
                                                 need_x1 ? gx1.mutable_data_ptr<scalar_t>() : nullptr, i1, b1,
                                                 a.const_data_ptr<acc_t>(), total1};
      GradBranch<scalar_t, acc_t, index_t, I> a2{x2.const_data_ptr<scalar_t>(), strides_of<index_t>(x2),
                                                 need_x2 ? gx2.mutable_data_ptr<scalar_t>() : nullptr, i2, b2,
                                                 z.const_data_ptr<acc_t>(), total2};
      const scalar_t* g = grad_out.const_data_ptr<scalar_t>();
      const auto gs = strides_of<index_t>(grad_out);
      auto* kernel = need_w ? (tiles ? blend_backward_kernel<true, true, scalar_t, acc_t, index_t, I>
                                     : blend_backward_kernel<true, false, scalar_t, acc_t, index_t, I>)
                            : (tiles ? blend_backward_kernel<false, true, scalar_t, acc_t, index_t, I>
                                     : blend_backward_kernel<false, false, scalar_t, acc_t, index_t, I>);
      kernel<<<blocks, kThreads, 0, stream>>>(a1, a2, g, gs, need_w ? partials.mutable_data_ptr<double>() : nullptr);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      if (need_w) {
        launch_reduce_partials(partials, blocks, sums, stream);
        blend_weight_grads_again_kernel<scalar_t, acc_t, index_t, I><<<1, kReduceThreads, 0, stream>>>(
            a1.x, a1.xs, b1, a2.x, a2.xs, b2, g, gs, grad_out.numel(), I(x1.size(1), Ho, Wo, false), need_w1, need_w2,
            sums.mutable_data_ptr<double>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
    });
  });
  auto [gw1, gw2] = weight_grads(sums, w1, w2, need_w1, need_w2);
  return {gx1, gx2, gw1, gw2};
}
}  // namespace
}  // namespace resizeops

TORCH_LIBRARY_IMPL(resizeops_ext, CUDA, m) {
  m.impl("resize_blend_forward", &resizeops::resize_blend_forward_cuda);
  m.impl("resize_blend_backward", &resizeops::resize_blend_backward_cuda);
}
