// CPU kernel of resizeops_ext::query_coords (schema in csrc/resizeops.cpp).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "resizeops/checks.h"
#include "resizeops/math.h"

namespace resizeops {
namespace {

at::Tensor query_coords_cpu(const at::Tensor& size_hat, int64_t out_size,
                            int64_t in_size) {
  check_query_coords_args(size_hat, out_size, in_size);
  const int64_t n_rows = 2 * out_size;
  at::Tensor out = at::empty({n_rows, 2}, size_hat.options());
  AT_DISPATCH_FLOATING_TYPES(size_hat.scalar_type(), "query_coords_cpu", [&] {
    // data_ptr of a 1-element tensor is its element, whatever its strides.
    const scalar_t s = *size_hat.const_data_ptr<scalar_t>();
    scalar_t* out_ptr = out.mutable_data_ptr<scalar_t>();
    // A few thousand rows at most: a serial loop beats a parallel_for here.
    for (int64_t j = 0; j < n_rows; ++j) {
      scalar_t dclip;
      const scalar_t u = math::clip_border<scalar_t>(
          math::dynopool_query_coord<scalar_t>(j, s, in_size), in_size, &dclip);
      out_ptr[2 * j] = u;
      out_ptr[2 * j + 1] =
          dclip * math::dynopool_query_coord_grad<scalar_t>(j, s, in_size);
    }
  });
  return out;
}

}  // namespace
}  // namespace resizeops

TORCH_LIBRARY_IMPL(resizeops_ext, CPU, m) {
  m.impl("query_coords", &resizeops::query_coords_cpu);
}
