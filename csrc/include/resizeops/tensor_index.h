// Host-side index helpers shared by the CUDA DynOPool kernels
// (csrc/cuda/dynopool2d.cu) and their CPU emulation (csrc/cpu/dynopool2d_cells.cpp):
// strides in the kernels' index type, and the choice of 32-bit indexing.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <initializer_list>
#include <limits>

#include "resizeops/checks.h"

namespace resizeops {

// The strides of a 4-D tensor (elements) in the index type of a launch.
template <typename index_t>
struct S4 {
  index_t n, c, h, w;
};

template <typename index_t>
S4<index_t> strides_of(const at::Tensor& t) {
  return {static_cast<index_t>(t.stride(0)), static_cast<index_t>(t.stride(1)), static_cast<index_t>(t.stride(2)),
          static_cast<index_t>(t.stride(3))};
}

// Strides of a contiguous (N, C, H, W) buffer in NCHW or channels_last order.
template <typename index_t>
S4<index_t> dense_strides(int64_t C, int64_t H, int64_t W, bool channels_last) {
  if (channels_last) return {static_cast<index_t>(H * W * C), 1, static_cast<index_t>(W * C), static_cast<index_t>(C)};
  return {static_cast<index_t>(C * H * W), static_cast<index_t>(H * W), static_cast<index_t>(W), 1};
}

// One past the largest element offset a tensor's strides reach.
inline int64_t extent(const at::Tensor& t) {
  int64_t e = 1;
  for (int64_t d = 0; d < t.dim(); ++d) e += (t.size(d) - 1) * t.stride(d);
  return e;
}

// 32-bit indexing when every extent of a launch stays below 2^31, unless the
// test hook RESIZEOPS_FORCE_INT64_INDEXING asks for the 64-bit path.
inline bool use_int32_indexing(std::initializer_list<int64_t> extents) {
  if (force_int64_indexing()) return false;
  for (int64_t e : extents)
    if (e > std::numeric_limits<int32_t>::max()) return false;
  return true;
}

// Calls f(int32_t{}) or f(int64_t{}): the index type of a launch (the CPU
// emulation of the CUDA kernels; the CUDA launches pair it with an indexer).
template <typename F>
void with_index_type(bool use32, const F& f) {
  if (use32) {
    f(int32_t{0});
  } else {
    f(int64_t{0});
  }
}

}  // namespace resizeops
