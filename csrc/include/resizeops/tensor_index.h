// Host-side index helpers shared by the CUDA DynOPool kernels
// (csrc/cuda/dynopool2d.cu) and their CPU emulation (csrc/cpu/dynopool2d_emulation.cpp):
// strides in the kernels' index type, and the choice of 32-bit indexing.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <type_traits>

#include "resizeops/element_index.h"  // Strides4
#include "resizeops/checks.h"
#include "resizeops/dynopool_elements.h"  // FusedPlan
#include "resizeops/kernel_forms.h"

namespace resizeops {

template <typename index_t>
Strides4<index_t> strides_of(const at::Tensor& t) {
  return {static_cast<index_t>(t.stride(0)), static_cast<index_t>(t.stride(1)), static_cast<index_t>(t.stride(2)),
          static_cast<index_t>(t.stride(3))};
}

// Strides of a contiguous (N, C, H, W) buffer in NCHW or channels_last order.
template <typename index_t>
Strides4<index_t> dense_strides(int64_t C, int64_t H, int64_t W, bool channels_last) {
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
// test hook KernelForms::force_int64 asks for the 64-bit path.
inline bool use_int32_indexing(const KernelForms& forms, std::initializer_list<int64_t> extents) {
  if (forms.force_int64) return false;
  for (int64_t e : extents)
    if (e > std::numeric_limits<int32_t>::max()) return false;
  return true;
}

// The index width of a fused DynOPool backward (grad_out, x): 32-bit where the
// cells, x and both tensors' extents fit.
inline bool dynopool_fused_use32(const KernelForms& forms, const at::Tensor& grad_out, const at::Tensor& x) {
  return use_int32_indexing(forms, {grad_out.numel(), x.numel(), extent(x), extent(grad_out)});
}

// Whether load_lanes / store_lanes (dynopool_elements.h) may read the `lanes`
// channels c0 .. c0 + lanes - 1 (c0 a multiple of lanes) of every (n, h, w) of t
// with one vector access: C % lanes == 0, channel stride 1, the other strides
// multiples of lanes (where their size exceeds 1) and the data aligned to lanes elements.
inline bool lanes_vectorizable(const at::Tensor& t, int lanes) {
  if (lanes == 1 || t.dim() != 4 || t.size(1) % lanes != 0 || t.stride(1) != 1) return false;
  for (int64_t d : {0, 2, 3}) {
    if (t.size(d) > 1 && t.stride(d) % lanes != 0) return false;
  }
  return reinterpret_cast<uintptr_t>(t.const_data_ptr()) % (static_cast<uintptr_t>(lanes) * t.element_size()) == 0;
}

// The grad_x form of a DynOPool CUDA backward (and of its emulation) for x ->
// (out_h, out_w) with gradient grad_out (KernelForms::dynopool_grad_x), and with
// kFused its plan (cb_log2: the channels per block; vcols > 0: separable winners,
// for an NCHW grad_x on the 32-bit path where the plan allows; lanes_log2 > 0:
// phase A's lanes form).
inline DynopoolGradX dynopool_backward_form(const KernelForms& forms, const at::Tensor& grad_out, const at::Tensor& x,
                                            int64_t out_h, int64_t out_w, bool channels_last, bool need_x,
                                            elements::FusedPlan* plan) {
  if (!need_x) return DynopoolGradX::kGather;  // pass 1 alone (the size gradient)
  // The plan only where the fused form is asked for.
  if (forms.dynopool_grad_x(x.scalar_type(), true) != DynopoolGradX::kFused) {
    return forms.dynopool_grad_x(x.scalar_type(), false);
  }
  int32_t max_th = 0, max_tw = 0;
  forms.dynopool_fused_max_tile(&max_th, &max_tw);
  const int64_t acc_bytes = x.scalar_type() == at::kDouble ? 8 : 4;
  const int32_t cb_log2 = elements::dynopool_fused_channels_log2(x.size(1), x.element_size(), channels_last);
  const bool fused_possible = x.numel() > 0 && elements::dynopool_fused_plan(x.size(2), x.size(3), out_h, out_w,
                                                                          acc_bytes, plan, max_th, max_tw, cb_log2);
  // Separable winners: NCHW only (their V and D are one plane's, read along rows).
  const bool separable = forms.fused_winners_separable && !channels_last;
  if (fused_possible && separable && dynopool_fused_use32(forms, grad_out, x)) {
    elements::dynopool_fused_separable(x.size(3), out_w, acc_bytes, plan);
  }
  // Phase A's lanes form (channels_last, lanes asked for, blocks of at least Lanes
  // channels, vector loads of x and grad_out possible, the 32-bit path).
  const int lanes = forms.dynopool_lanes(x.scalar_type());
  if (fused_possible && lanes > 1 && plan->cb() >= lanes && lanes_vectorizable(x, lanes) &&
      lanes_vectorizable(grad_out, lanes) && dynopool_fused_use32(forms, grad_out, x)) {
    plan->lanes_log2 = lanes == 4 ? 2 : 1;
  }
  return forms.dynopool_grad_x(x.scalar_type(), fused_possible);
}

// How a DynOPool forward x -> (out_h, out_w) is launched, for the CUDA kernels and
// their emulation alike: the index width (32-bit where the output and x's extent
// allow), the lanes (KernelForms::dynopool_lanes; 32-bit path only) and the
// form (KernelForms::forward). Rows and separable need an NCHW output, one lane
// and the 32-bit path, separable a plan that fits (then in plan); otherwise the
// cell form.
struct DynopoolForwardLaunch {
  bool use32;
  int lanes;
  DynopoolForward form;
  elements::ForwardTilePlan plan;
};

inline DynopoolForwardLaunch dynopool_forward_launch(const KernelForms& forms, const at::Tensor& x, int64_t out_h,
                                                     int64_t out_w, bool channels_last) {
  DynopoolForwardLaunch a{};
  a.use32 = use_int32_indexing(forms, {x.size(0) * x.size(1) * out_h * out_w, extent(x)});
  a.lanes = a.use32 ? forms.dynopool_lanes(x.scalar_type()) : 1;
  a.form = forms.forward;
  if (a.form == DynopoolForward::kCell || channels_last || a.lanes != 1 || !a.use32) {
    a.form = DynopoolForward::kCell;
  } else if (a.form == DynopoolForward::kSeparable) {
    int32_t max_th = 0, max_tw = 0;
    forms.dynopool_forward_max_tile(&max_th, &max_tw);
    if (!elements::dynopool_forward_tile_plan(x.size(3), out_h, out_w, &a.plan, max_th, max_tw)) {
      a.form = DynopoolForward::kCell;
    }
  }
  return a;
}

// Whether the row form stores its cells with one vector access (dynopool_elements.h
// dynopool_forward_row_item): out dense NCHW, Wo % kRowCells == 0, elements of at
// most 4 bytes, data aligned to kRowCells elements.
inline bool dynopool_rows_vectorizable(const at::Tensor& out) {
  const int64_t q = elements::kRowCells;
  return out.is_contiguous() && out.size(3) % q == 0 && out.element_size() <= 4 &&
         reinterpret_cast<uintptr_t>(out.const_data_ptr()) % (static_cast<uintptr_t>(q) * out.element_size()) == 0;
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

// Calls f(std::integral_constant<int, Lanes>{}, std::integral_constant<bool, VectorIO>{})
// for a launch of `lanes` channels per thread (1, or kL: 4, 2 for 8-byte types;
// KernelForms::dynopool_lanes), with vector accesses where `vec`. With Allow
// false (the 64-bit index path) only the one-lane form is instantiated.
template <typename scalar_t, bool Allow, typename F>
void with_lanes(int lanes, bool vec, const F& f) {
  constexpr int kL = sizeof(scalar_t) == 8 ? 2 : 4;
  if constexpr (Allow) {
    if (lanes != 1) {
      TORCH_INTERNAL_ASSERT(lanes == kL, "with_lanes: ", lanes, " lanes for a ", sizeof(scalar_t), "-byte type");
      if (vec) {
        f(std::integral_constant<int, kL>{}, std::true_type{});
      } else {
        f(std::integral_constant<int, kL>{}, std::false_type{});
      }
      return;
    }
  }
  TORCH_INTERNAL_ASSERT(lanes == 1, "with_lanes: lanes on the 64-bit index path");
  f(std::integral_constant<int, 1>{}, std::false_type{});
}

}  // namespace resizeops
