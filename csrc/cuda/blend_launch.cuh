// The launch side shared by the CUDA kernels of resize_blend (resize_blend.cu)
// and of the Shape Adaptor max-pool op (shape_adaptor_maxpool.cu): both
// ops are a blend of two bilinear branches (docs/SEMANTICS.md, resize_blend and
// shape_adaptor_maxpool), so they share the axis tables, the forward kernel (the
// Shape Adaptor cell's first branch reads max_pool2d(x, 2) as the max of each
// 2x2 window a tap touches: the pooled map never exists) and the weights' host side.
//
// The per-element work is in csrc/include/resizeops/blend_elements.h, shared with
// a serial CPU emulation (csrc/cpu/blend_emulation.cpp) that the tests run
// without a GPU. Here: the launches and the grid-stride loops.
//
// - Axis tables: one small launch per call computes, for each output index of
//   each axis of each branch, its taps and weights, and for the backward each
//   input index's range of the outputs reading it; the other kernels read them
//   from L1 (the DynOPool kernels showed that per-element floors and
//   float-to-int conversions make such kernels instruction-bound).
// - Forward: one thread per output element, in the output's memory order (NCHW
//   or channels_last), so stores coalesce; x1 and x2 are read through their
//   strides (any layout, no copy), a pass-through input directly. One pass:
//   reads x1 and x2, writes out. The weights are read on the device (no host
//   sync).
//
// Half types are loaded as float (at::opmath_type) and rounded once on store.
// Indices: 32-bit offsets and magic-number division where every tensor's
// extent fits in 31 bits; 64-bit otherwise. Every launch is on the current
// stream under a device guard and checked. Everything is in an anonymous
// namespace (launch.cuh), so each translation unit has its own copy.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/util/ArrayRef.h>
#include <torch/library.h>

#include <cmath>
#include <optional>
#include <tuple>
#include <type_traits>

#include "launch.cuh"
#include "resizeops/blend_elements.h"
#include "resizeops/blend_plan.h"
#include "resizeops/checks.h"
#include "resizeops/kernel_forms.h"
#include "resizeops/tensor_index.h"


namespace resizeops {
namespace {

// ---------------------------------------------------------------------------
// Kernels
// ---------------------------------------------------------------------------

template <typename acc_t>
__global__ void blend_table_kernel(elements::BlendTableLayout layout, acc_t* __restrict__ accb, int32_t* __restrict__ intb,
                                   bool ranges) {
  const int64_t total = layout.entries(ranges);
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    elements::blend_table_entry<acc_t>(t, layout, accb, intb, ranges);
  }
}

// out = w1 * R(x1) + w2 * R(x2); with Pool1, x1 is max_pool2d of the tensor x1 points to.
template <bool Pool1, typename scalar_t, typename acc_t, typename index_t, typename Indexer>
__global__ void __launch_bounds__(kThreads)
    blend_forward_kernel(const scalar_t* __restrict__ x1, Strides4<index_t> s1, const scalar_t* __restrict__ x2,
                         Strides4<index_t> s2, const acc_t* __restrict__ w1p, const acc_t* __restrict__ w2p,
                         scalar_t* __restrict__ out, int64_t total, Indexer idx, elements::BlendBranch<acc_t> b1,
                         elements::BlendBranch<acc_t> b2) {
  const acc_t w1 = *w1p, w2 = *w2p;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const auto p = idx(static_cast<index_t>(t));
    const index_t n = p.n, c = p.c;
    out[t] = static_cast<scalar_t>(elements::blend_out_cell<Pool1, scalar_t, acc_t, index_t>(
        x1 + n * s1.n + c * s1.c, s1.h, s1.w, b1, x2 + n * s2.n + c * s2.c, s2.h, s2.w, b2, w1, w2,
        static_cast<index_t>(p.h), static_cast<index_t>(p.w)));
  }
}

// ---------------------------------------------------------------------------
// Host side
// ---------------------------------------------------------------------------

// The tables of one call on the device (ranges only for the backward's gather).
struct Tables {
  at::Tensor accb, intb;
};

template <typename acc_t>
Tables launch_tables(const elements::BlendTableLayout& layout, const at::Tensor& like, bool ranges, cudaStream_t stream) {
  Tables tb{at::empty({layout.acc_size()}, like.options().dtype(c10::CppTypeToScalarType<acc_t>::value)),
            at::empty({layout.int_size()}, like.options().dtype(at::kInt))};
  const int64_t total = layout.entries(ranges);
  if (total > 0) {
    blend_table_kernel<acc_t><<<grid_for(total), kThreads, 0, stream>>>(layout, tb.accb.mutable_data_ptr<acc_t>(),
                                                                        tb.intb.mutable_data_ptr<int32_t>(), ranges);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return tb;
}

template <typename acc_t>
elements::BlendBranch<acc_t> branch_of(const elements::BlendTableLayout& layout, const Tables& tb, int k, bool pass) {
  return elements::blend_branch_of<acc_t>(layout, k, pass, tb.accb.const_data_ptr<acc_t>(), tb.intb.const_data_ptr<int32_t>());
}

// A weight as a device scalar of the accumulation type (the reference casts it
// to the compute type first); no copy when it already is one.
at::Tensor weight_on_device(const at::Tensor& w, at::ScalarType acc) {
  return w.reshape({}).to(acc).contiguous();
}

// dL/dw_k from the device sums, as fresh 0-d tensors of w_k's dtype.
std::tuple<at::Tensor, at::Tensor> weight_grads(const at::Tensor& sums, const at::Tensor& w1, const at::Tensor& w2,
                                                bool need_w1, bool need_w2) {
  at::Tensor g1 = need_w1 ? sums.select(0, 0).to(w1.scalar_type(), false, true) : at::zeros({}, w1.options());
  at::Tensor g2 = need_w2 ? sums.select(0, 1).to(w2.scalar_type(), false, true) : at::zeros({}, w2.options());
  return {g1, g2};
}

at::MemoryFormat format_of(bool channels_last) {
  return channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

void check_cuda(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w2, const char* op) {
  TORCH_CHECK(x.is_cuda(), "resizeops_ext::", op, " (CUDA): the inputs must be CUDA tensors");
  TORCH_CHECK(w1.device() == x.device() && w2.device() == x.device(), "resizeops_ext::", op,
              " (CUDA): w1 and w2 must be on the inputs' device ", x.device(), ", got ", w1.device(), " and ",
              w2.device());
}

// The forward of both ops. Pool1: branch 1 is max_pool2d(x1, 2) of (h1, w1).
template <bool Pool1>
at::Tensor forward_impl(const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& w1, const at::Tensor& w2,
                        int64_t h1, int64_t wd1, int64_t Ho, int64_t Wo, bool align_corners, const ScaleArg& scale1,
                        const ScaleArg& scale2, bool channels_last, const KernelForms& forms) {
  const c10::cuda::CUDAGuard device_guard(x1.device());
  const int64_t N = x1.size(0), C = x1.size(1);
  at::Tensor out = at::empty({N, C, Ho, Wo}, x1.options().memory_format(format_of(channels_last)));
  const int64_t total = out.numel();
  if (total == 0) return out;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const bool pass1 = passes_through(h1, wd1, Ho, Wo, scale1);
  const bool pass2 = passes_through(x2.size(2), x2.size(3), Ho, Wo, scale2);
  const auto layout = blend_layout(h1, wd1, pass1, scale1, x2.size(2), x2.size(3), pass2, scale2, Ho, Wo, align_corners);
  const bool use32 = use_int32_indexing(forms, {total, extent(x1), extent(x2)});
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x1.scalar_type(), "resize_blend_forward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const at::Tensor a = weight_on_device(w1, acc_type_of(x1.scalar_type()));
    const at::Tensor z = weight_on_device(w2, acc_type_of(x1.scalar_type()));
    const Tables tb = launch_tables<acc_t>(layout, x1, false, stream);
    const auto b1 = branch_of<acc_t>(layout, tb, 0, pass1);
    const auto b2 = branch_of<acc_t>(layout, tb, 1, pass2);
    with_indexing(use32, C, Ho, Wo, channels_last, [&](auto zero, auto idx) {
      using index_t = decltype(zero);
      blend_forward_kernel<Pool1, scalar_t, acc_t, index_t, decltype(idx)><<<grid_for(total), kThreads, 0, stream>>>(
          x1.const_data_ptr<scalar_t>(), strides_of<index_t>(x1), x2.const_data_ptr<scalar_t>(),
          strides_of<index_t>(x2), a.const_data_ptr<acc_t>(), z.const_data_ptr<acc_t>(),
          out.mutable_data_ptr<scalar_t>(), total, idx, b1, b2);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

}  // namespace
}  // namespace resizeops
