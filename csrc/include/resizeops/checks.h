// Argument checks shared by the CPU and CUDA kernels of one op, so that every
// device rejects the same inputs with the same message. They raise c10::Error
// (RuntimeError in Python). The public Python ops validate user input earlier
// with ValueError/TypeError (docs/SEMANTICS.md, Bad input); these guard the
// kernels.
#pragma once

#include <ATen/Context.h>
#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <optional>

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

// dynopool2d_forward / dynopool2d_backward: x is a 4-D floating tensor with
// H, W >= 1 (any strides) and the output size is positive.
inline void check_dynopool_args(const at::Tensor& x, int64_t out_h, int64_t out_w) {
  TORCH_CHECK(x.dim() == 4, "resizeops_ext::dynopool2d: x must be 4-D (N, C, H, W), got ", x.dim(), "-D");
  TORCH_CHECK(at::isFloatingType(x.scalar_type()),
              "resizeops_ext::dynopool2d: x must be a floating tensor, got ", x.scalar_type());
  TORCH_CHECK(x.size(2) >= 1 && x.size(3) >= 1,
              "resizeops_ext::dynopool2d: x must have H, W >= 1, got ", x.sizes());
  TORCH_CHECK(out_h >= 1 && out_w >= 1,
              "resizeops_ext::dynopool2d: the output size must be >= 1, got (", out_h, ", ", out_w, ")");
}

inline void check_dynopool_grad(const at::Tensor& grad_out, const at::Tensor& x, int64_t out_h,
                                int64_t out_w) {
  TORCH_CHECK(grad_out.dim() == 4 && grad_out.size(0) == x.size(0) && grad_out.size(1) == x.size(1) &&
                  grad_out.size(2) == out_h && grad_out.size(3) == out_w,
              "resizeops_ext::dynopool2d_backward: grad_out must have shape (", x.size(0), ", ", x.size(1),
              ", ", out_h, ", ", out_w, "), got ", grad_out.sizes());
  TORCH_CHECK(grad_out.scalar_type() == x.scalar_type(), "resizeops_ext::dynopool2d_backward: grad_out must be ",
              x.scalar_type(), ", got ", grad_out.scalar_type());
  TORCH_CHECK(grad_out.device() == x.device(), "resizeops_ext::dynopool2d_backward: grad_out is on ",
              grad_out.device(), " but x is on ", x.device());
}

// resize_blend_forward / resize_blend_backward (every device): 4-D inputs of one
// floating dtype with the same N and C and H, W >= 1, one-element weights, a
// positive size, and scales of two positive numbers.
inline void check_blend_args(const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& w1, const at::Tensor& w2,
                             c10::IntArrayRef size, const std::optional<c10::ArrayRef<double>>& scale1,
                             const std::optional<c10::ArrayRef<double>>& scale2) {
  TORCH_CHECK(x1.dim() == 4 && x2.dim() == 4, "resizeops_ext::resize_blend: x1 and x2 must be 4-D");
  TORCH_CHECK(x1.size(0) == x2.size(0) && x1.size(1) == x2.size(1),
              "resizeops_ext::resize_blend: x1 and x2 must have the same N and C, got ", x1.sizes(), " and ",
              x2.sizes());
  TORCH_CHECK(x1.scalar_type() == x2.scalar_type(), "resizeops_ext::resize_blend: x1 and x2 must have one dtype");
  TORCH_CHECK(at::isFloatingType(x1.scalar_type()), "resizeops_ext::resize_blend: x1 must be floating");
  TORCH_CHECK(w1.numel() == 1 && w2.numel() == 1, "resizeops_ext::resize_blend: w1 and w2 must have one element");
  TORCH_CHECK(size.size() == 2 && size[0] >= 1 && size[1] >= 1,
              "resizeops_ext::resize_blend: size must be two positive sizes, got ", size);
  TORCH_CHECK(x1.size(2) >= 1 && x1.size(3) >= 1 && x2.size(2) >= 1 && x2.size(3) >= 1,
              "resizeops_ext::resize_blend: inputs must have H, W >= 1");
  for (const auto* s : {&scale1, &scale2}) {
    TORCH_CHECK(!s->has_value() || ((*s)->size() == 2 && (**s)[0] > 0 && (**s)[1] > 0),
                "resizeops_ext::resize_blend: a scale must be two positive numbers");
  }
}

// shape_adaptor_maxpool_forward / _backward: a 4-D floating x with H, W >= 2 (its
// 2x2 max-pool is not empty), one-element weights, a positive size.
inline void check_shape_adaptor_args(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w2,
                                     c10::IntArrayRef size) {
  TORCH_CHECK(x.dim() == 4, "resizeops_ext::shape_adaptor_maxpool: x must be 4-D (N, C, H, W), got ", x.dim(), "-D");
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), "resizeops_ext::shape_adaptor_maxpool: x must be floating, got ",
              x.scalar_type());
  TORCH_CHECK(x.size(2) >= 2 && x.size(3) >= 2, "resizeops_ext::shape_adaptor_maxpool: x must have H, W >= 2, got ",
              x.sizes());
  TORCH_CHECK(w1.numel() == 1 && w2.numel() == 1,
              "resizeops_ext::shape_adaptor_maxpool: w1 and w2 must have one element");
  TORCH_CHECK(size.size() == 2 && size[0] >= 1 && size[1] >= 1,
              "resizeops_ext::shape_adaptor_maxpool: size must be two positive sizes, got ", size);
}

// grad_out of a blend backward: (N, C, size) of x's dtype, on x's device.
inline void check_blend_grad(const at::Tensor& grad_out, const at::Tensor& x, c10::IntArrayRef size, const char* op) {
  TORCH_CHECK(grad_out.dim() == 4 && grad_out.size(0) == x.size(0) && grad_out.size(1) == x.size(1) &&
                  grad_out.size(2) == size[0] && grad_out.size(3) == size[1] &&
                  grad_out.scalar_type() == x.scalar_type() && grad_out.device() == x.device(),
              "resizeops_ext::", op, ": grad_out must be (", x.size(0), ", ", x.size(1), ", ", size[0], ", ", size[1],
              ") of ", x.scalar_type(), " on ", x.device(), ", got ", grad_out.sizes(), " ", grad_out.scalar_type(),
              " on ", grad_out.device());
}

}  // namespace resizeops
