// Host side of the blend kernels' tables (csrc/cuda/blend_launch.cuh and its CPU
// emulation csrc/cpu/blend_emulation.cpp): the table layout of a call.
#pragma once

#include <c10/util/ArrayRef.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <cstdint>
#include <optional>

#include "resizeops/blend_elements.h"

namespace resizeops {

using ScaleArg = std::optional<c10::ArrayRef<double>>;

// One axis of a branch: in -> out, with interpolate's own size `full` when a
// scale is given (the outputs past `out` are cropped).
inline elements::BlendAxisSpec axis_spec(int64_t in, int64_t out, std::optional<double> scale) {
  const double f = scale ? std::floor(static_cast<double>(in) * *scale) : static_cast<double>(out);
  TORCH_CHECK(f < static_cast<double>(int64_t{1} << 30),
              "resizeops_ext::resize_blend: a scale makes an axis of ", in, " pixels ", f,
              " long: sizes must be below 2^30 (32-bit tables)");
  const int64_t full = static_cast<int64_t>(f);
  return {static_cast<int32_t>(in), static_cast<int32_t>(out), static_cast<int32_t>(full), scale ? *scale : -1.0};
}

inline std::optional<double> scale_of(const ScaleArg& s, int k) {
  if (!s.has_value()) return std::nullopt;
  return (*s)[k];
}

// The table layout of a call: branch k reads an input of (h_k, w_k) (for the
// shape_adaptor_maxpool's pooled branch, the pooled size); a pass-through branch has no tables.
inline elements::BlendTableLayout blend_layout(int64_t h1, int64_t w1, bool pass1, const ScaleArg& scale1, int64_t h2,
                                            int64_t w2, bool pass2, const ScaleArg& scale2, int64_t Ho, int64_t Wo,
                                            bool align_corners) {
  constexpr int64_t kMax = int64_t{1} << 30;  // the tables are 32-bit
  TORCH_CHECK(h1 < kMax && w1 < kMax && h2 < kMax && w2 < kMax && Ho < kMax && Wo < kMax,
              "resizeops_ext::resize_blend: spatial sizes must be below 2^30 (32-bit tables)");
  const elements::BlendAxisSpec none{0, 0, 0, -1.0};
  elements::BlendTableLayout layout;
  layout.align_corners = align_corners;
  layout.ax[0] = pass1 ? none : axis_spec(h1, Ho, scale_of(scale1, 0));
  layout.ax[1] = pass1 ? none : axis_spec(w1, Wo, scale_of(scale1, 1));
  layout.ax[2] = pass2 ? none : axis_spec(h2, Ho, scale_of(scale2, 0));
  layout.ax[3] = pass2 ? none : axis_spec(w2, Wo, scale_of(scale2, 1));
  return layout;
}

inline bool passes_through(int64_t h, int64_t w, int64_t Ho, int64_t Wo, const ScaleArg& scale) {
  return !scale.has_value() && h == Ho && w == Wo;
}

}  // namespace resizeops
