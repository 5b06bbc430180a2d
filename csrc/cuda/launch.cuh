// Launch helpers shared by the CUDA kernels of csrc/cuda/: the block size,
// grid-stride grids, (n, c, h, w) indexers in a tensor's memory order (32-bit
// magic-number division where the tensors fit), and the fixed-order block
// reduction of per-thread float64 sums (deterministic).
//
// Included by each .cu file; everything is in an anonymous namespace, so each
// translation unit has its own copy of the kernels.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/detail/IntegerDivider.cuh>
#include <c10/cuda/CUDAException.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "resizeops/element_index.h"

namespace resizeops {
namespace {

constexpr int kThreads = 256;
constexpr int kReduceThreads = 256;

// (n, c, h, w) of element t of an (N, C, H, W) tensor in memory order.
// 32-bit: three magic-number divisions (multiply-high and shift).
struct Indexer32 {
  at::cuda::detail::IntDivider<uint32_t> d0, d1, d2;  // NCHW: W, H, C; channels_last: C, W, H
  bool channels_last;
  Indexer32(int64_t C, int64_t H, int64_t W, bool cl)
      : d0(static_cast<uint32_t>(cl ? C : W)),
        d1(static_cast<uint32_t>(cl ? W : H)),
        d2(static_cast<uint32_t>(cl ? H : C)),
        channels_last(cl) {}
  __device__ __forceinline__ elements::Pos<int32_t> operator()(int32_t t) const {
    const auto a = d0.divmod(static_cast<uint32_t>(t));
    const auto b = d1.divmod(a.div);
    const auto c = d2.divmod(b.div);
    elements::Pos<int32_t> p;
    p.n = static_cast<int32_t>(c.div);
    if (channels_last) {
      p.c = a.mod, p.w = b.mod, p.h = c.mod;
    } else {
      p.w = a.mod, p.h = b.mod, p.c = c.mod;
    }
    return p;
  }
};

struct Indexer64 {
  int64_t C, H, W;
  bool channels_last;
  Indexer64(int64_t C_, int64_t H_, int64_t W_, bool cl) : C(C_), H(H_), W(W_), channels_last(cl) {}
  __device__ __forceinline__ elements::Pos<int64_t> operator()(int64_t t) const {
    return elements::unravel<int64_t>(t, C, H, W, channels_last);
  }
};

// Calls f(index_t{}, indexer) with 32-bit indexing when it is safe.
template <typename F>
void with_indexing(bool use32, int64_t C, int64_t H, int64_t W, bool cl, const F& f) {
  if (use32) {
    f(int32_t{0}, Indexer32(C, H, W, cl));
  } else {
    f(int64_t{0}, Indexer64(C, H, W, cl));
  }
}

// The counter of a grid-stride loop on an index_t path: unsigned 32-bit on the
// 32-bit path (its work items number below 2^31 and the grid has far fewer
// threads, so t + stride stays below 2^32), else int64_t. A 64-bit counter
// holds two registers across the loop (ptxas spilled it to the stack in the
// lanes form of DynOPool's forward) and compares in two instructions.
template <typename index_t>
using loop_t = std::conditional_t<sizeof(index_t) == 4, uint32_t, int64_t>;

// Blocks of a grid-stride launch over `total` elements: enough to fill the GPU
// several times over, never more than there is work.
inline int64_t grid_for(int64_t total) {
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  return std::max<int64_t>(1, std::min<int64_t>((total + kThreads - 1) / kThreads, sms * 16));
}

__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// Sum of (a, b) over the block, in a fixed order; the result is in thread 0.
__device__ __forceinline__ void block_sum2(double* a, double* b) {
  __shared__ double sa[kThreads / 32], sb[kThreads / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  double va = warp_sum(*a), vb = warp_sum(*b);
  if (lane == 0) {
    sa[warp] = va;
    sb[warp] = vb;
  }
  __syncthreads();
  if (warp == 0) {
    va = lane < static_cast<int>(blockDim.x / 32) ? sa[lane] : 0.0;
    vb = lane < static_cast<int>(blockDim.x / 32) ? sb[lane] : 0.0;
    va = warp_sum(va);
    vb = warp_sum(vb);
  }
  *a = va;
  *b = vb;
}

// Sum of per-block (a, b) partials, in a fixed order, into sums[0..1] (one block).
__global__ void __launch_bounds__(kReduceThreads)
    reduce_partials_kernel(const double* __restrict__ partials, int64_t n_blocks, double* __restrict__ sums) {
  double a = 0.0, b = 0.0;
  for (int64_t k = threadIdx.x; k < n_blocks; k += blockDim.x) {
    a += partials[2 * k];
    b += partials[2 * k + 1];
  }
  block_sum2(&a, &b);
  if (threadIdx.x == 0) {
    sums[0] = a;
    sums[1] = b;
  }
}

// Launches reduce_partials_kernel: the (a, b) pairs of `blocks` partials summed
// in a fixed order into sums[0..1] (float64 tensors on the current device).
inline void launch_reduce_partials(const at::Tensor& partials, int64_t blocks, const at::Tensor& sums,
                                   cudaStream_t stream) {
  reduce_partials_kernel<<<1, kReduceThreads, 0, stream>>>(partials.const_data_ptr<double>(), blocks,
                                                           sums.mutable_data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// The accumulation type of a tensor dtype: double for double, else float.
inline at::ScalarType acc_type_of(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

}  // namespace
}  // namespace resizeops
