// CUDA kernel of resizeops_ext::query_coords (schema in csrc/resizeops.cpp).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

#include "resizeops/checks.h"
#include "resizeops/math.h"

namespace resizeops {
namespace {

constexpr int kThreads = 256;

// One thread per query row j (grid-stride, 64-bit indices). size_hat is read
// from device memory, so the launch needs no host sync.
template <typename scalar_t>
__global__ void query_coords_kernel(
    const scalar_t* __restrict__ size_hat,  // 1 element, on the device
    scalar_t* __restrict__ out,             // (n_rows, 2), contiguous
    int64_t n_rows,                         // 2 * out_size
    int64_t in_size) {
  const scalar_t s = *size_hat;
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
       j < n_rows; j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    scalar_t dclip;
    const scalar_t u = math::clip_border<scalar_t>(
        math::dynopool_query_coord<scalar_t>(j, s, in_size), in_size, &dclip);
    out[2 * j] = u;
    out[2 * j + 1] =
        dclip * math::dynopool_query_coord_grad<scalar_t>(j, s, in_size);
  }
}

at::Tensor query_coords_cuda(const at::Tensor& size_hat, int64_t out_size,
                             int64_t in_size) {
  check_query_coords_args(size_hat, out_size, in_size);
  const c10::cuda::CUDAGuard device_guard(size_hat.device());
  const int64_t n_rows = 2 * out_size;
  at::Tensor out = at::empty({n_rows, 2}, size_hat.options());
  if (n_rows == 0) {
    return out;  // a zero-block launch is an error
  }
  const int64_t blocks = std::min<int64_t>((n_rows + kThreads - 1) / kThreads,
                                           int64_t{65535});
  // The current stream, not the default one: correct under torch.compile's
  // CUDA graphs and user streams (pytorch/pytorch#157363).
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(size_hat.scalar_type(), "query_coords_cuda", [&] {
    query_coords_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
        size_hat.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(),
        n_rows, in_size);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace

// The GPU targets this library holds ("sm_80+compute_80"): setup.py compiles
// every .cu file with their -gencode flags and -DRESIZEOPS_CUDA_TARGETS naming
// them; build_info() (csrc/resizeops.cpp) reports it, and resizeops/core/_cuda_arch.py
// decides from it which GPUs the kernels run on.
#define RESIZEOPS_STRINGIFY_(x) #x
#define RESIZEOPS_STRINGIFY(x) RESIZEOPS_STRINGIFY_(x)
const char* cuda_targets() {
#ifdef RESIZEOPS_CUDA_TARGETS
  return RESIZEOPS_STRINGIFY(RESIZEOPS_CUDA_TARGETS);
#else
  return "unknown";
#endif
}

}  // namespace resizeops

TORCH_LIBRARY_IMPL(resizeops_ext, CUDA, m) {
  m.impl("query_coords", &resizeops::query_coords_cuda);
}
