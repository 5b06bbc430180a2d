// Argument checks shared by the CPU and CUDA kernels of one op, so that every
// device rejects the same inputs with the same message. They raise
// c10::Error (RuntimeError in Python). The public Python ops validate user
// input earlier with ValueError/TypeError (SPEC §5); these guard the kernels.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <limits>

namespace resizeops {

inline void check_query_coords_args(const at::Tensor& size_hat,
                                    int64_t out_size, int64_t in_size) {
  TORCH_CHECK(size_hat.numel() == 1,
              "resizeops_ext::query_coords: size_hat must have exactly one "
              "element, got a tensor of shape ", size_hat.sizes());
  TORCH_CHECK(size_hat.scalar_type() == at::kFloat ||
                  size_hat.scalar_type() == at::kDouble,
              "resizeops_ext::query_coords: size_hat must be float32 or "
              "float64, got ", size_hat.scalar_type());
  TORCH_CHECK(out_size >= 0,
              "resizeops_ext::query_coords: out_size must be >= 0, got ",
              out_size);
  // 2 * out_size rows of 2 values must be addressable.
  TORCH_CHECK(out_size <= std::numeric_limits<int64_t>::max() / 4,
              "resizeops_ext::query_coords: out_size is too large, got ",
              out_size);
  TORCH_CHECK(in_size >= 1,
              "resizeops_ext::query_coords: in_size must be >= 1, got ",
              in_size);
}

}  // namespace resizeops
