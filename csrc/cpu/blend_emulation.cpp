// Serial CPU emulation of the resize_blend / shape_adaptor_maxpool CUDA kernels
// (csrc/cuda/resize_blend.cu, shape_adaptor_maxpool.cu): resizeops_ext::_resize_blend_{forward,backward}_emulated
// and _shape_adaptor_maxpool_{forward,backward}_emulated, with the schemas of the
// real ops.
//
// Test hooks, not a backend: they run the CUDA kernels' per-element functions
// (csrc/include/resizeops/blend_elements.h) in plain loops over the same linear
// indices the GPU threads take, with the same tables (ranges poisoned first,
// so an entry the table kernel forgets shows), so that the tests check the GPU
// code's indexing and arithmetic on machines without a GPU. Slow on purpose;
// the fast CPU kernels are csrc/cpu/resize_blend.cpp and shape_adaptor_maxpool.cpp.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <cmath>
#include <tuple>
#include <type_traits>
#include <vector>

#include "resizeops/blend_elements.h"
#include "resizeops/blend_plan.h"
#include "resizeops/checks.h"
#include "resizeops/kernel_forms.h"
#include "resizeops/tensor_index.h"

namespace resizeops {
namespace {

// The CUDA blend_table_kernel, one "thread" after another.
template <typename acc_t>
struct HostTables {
  std::vector<acc_t> accb;
  std::vector<int32_t> intb;
  HostTables(const elements::BlendTableLayout& layout, bool ranges) : accb(layout.acc_size(), acc_t(0)), intb(layout.int_size(), -7) {
    for (int64_t t = 0; t < layout.entries(ranges); ++t) elements::blend_table_entry<acc_t>(t, layout, accb.data(), intb.data(), ranges);
  }
  elements::BlendBranch<acc_t> branch(const elements::BlendTableLayout& layout, int k, bool pass) const {
    return elements::blend_branch_of<acc_t>(layout, k, pass, accb.data(), intb.data());
  }
};

template <typename index_t>
elements::Pos<index_t> pos_of(int64_t t, const at::Tensor& like, bool channels_last) {
  return elements::unravel<index_t>(static_cast<index_t>(t), static_cast<index_t>(like.size(1)),
                                 static_cast<index_t>(like.size(2)), static_cast<index_t>(like.size(3)), channels_last);
}

template <typename acc_t>
acc_t weight_value(const at::Tensor& w) {
  // The CUDA kernels read w cast to the accumulation type on the device.
  return w.reshape({}).to(c10::CppTypeToScalarType<acc_t>::value).template item<acc_t>();
}

std::tuple<at::Tensor, at::Tensor> weight_grads(double s1, double s2, const at::Tensor& w1, const at::Tensor& w2,
                                                bool need_w1, bool need_w2) {
  at::Tensor g1 = at::zeros({}, w1.options()), g2 = at::zeros({}, w2.options());
  if (need_w1) g1.fill_(s1);
  if (need_w2) g2.fill_(s2);
  return {g1, g2};
}

at::MemoryFormat format_of(bool channels_last) {
  return channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

template <bool Pool1>
at::Tensor forward_impl(const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& w1, const at::Tensor& w2,
                        int64_t h1, int64_t wd1, int64_t Ho, int64_t Wo, bool align_corners, const ScaleArg& scale1,
                        const ScaleArg& scale2, bool channels_last, const KernelForms& forms) {
  at::Tensor out = at::empty({x1.size(0), x1.size(1), Ho, Wo}, x1.options().memory_format(format_of(channels_last)));
  const int64_t total = out.numel();
  if (total == 0) return out;
  const bool pass1 = passes_through(h1, wd1, Ho, Wo, scale1);
  const bool pass2 = passes_through(x2.size(2), x2.size(3), Ho, Wo, scale2);
  const auto layout = blend_layout(h1, wd1, pass1, scale1, x2.size(2), x2.size(3), pass2, scale2, Ho, Wo, align_corners);
  const bool use32 = use_int32_indexing(forms, {total, extent(x1), extent(x2)});
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x1.scalar_type(), "_resize_blend_forward_emulated", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const HostTables<acc_t> tb(layout, false);
    const auto b1 = tb.branch(layout, 0, pass1);
    const auto b2 = tb.branch(layout, 1, pass2);
    const acc_t a = weight_value<acc_t>(w1), z = weight_value<acc_t>(w2);
    const scalar_t* p1 = x1.const_data_ptr<scalar_t>();
    const scalar_t* p2 = x2.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    with_index_type(use32, [&](auto zero) {
      using index_t = decltype(zero);
      const auto s1 = strides_of<index_t>(x1);
      const auto s2 = strides_of<index_t>(x2);
      for (int64_t t = 0; t < total; ++t) {  // blend_forward_kernel
        const auto p = pos_of<index_t>(t, out, channels_last);
        op[t] = static_cast<scalar_t>(elements::blend_out_cell<Pool1, scalar_t, acc_t, index_t>(
            p1 + p.n * s1.n + p.c * s1.c, s1.h, s1.w, b1, p2 + p.n * s2.n + p.c * s2.c, s2.h, s2.w, b2, a, z, p.h,
            p.w));
      }
    });
  });
  return out;
}

at::Tensor resize_blend_forward_emulated(const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& w1,
                                      const at::Tensor& w2, c10::IntArrayRef size, bool align_corners, ScaleArg scale1,
                                      ScaleArg scale2, bool channels_last, c10::IntArrayRef forms) {
  check_blend_args(x1, x2, w1, w2, size, scale1, scale2);
  return forward_impl<false>(x1, x2, w1, w2, x1.size(2), x1.size(3), size[0], size[1], align_corners, scale1, scale2,
                             channels_last, KernelForms::decode(forms));
}

at::Tensor shape_adaptor_maxpool_forward_emulated(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w2,
                                               c10::IntArrayRef size, bool align_corners, bool channels_last,
                                               c10::IntArrayRef forms) {
  check_shape_adaptor_args(x, w1, w2, size);
  return forward_impl<true>(x, x, w1, w2, x.size(2) / 2, x.size(3) / 2, size[0], size[1], align_corners, std::nullopt,
                            std::nullopt, channels_last, KernelForms::decode(forms));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> resize_blend_backward_emulated(
    const at::Tensor& grad_out, const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& w1,
    const at::Tensor& w2, c10::IntArrayRef size, bool align_corners, ScaleArg scale1, ScaleArg scale2, bool need_x1,
    bool need_x2, bool need_w1, bool need_w2, bool x1_channels_last, bool x2_channels_last,
    c10::IntArrayRef forms_arg) {
  const KernelForms forms = KernelForms::decode(forms_arg);
  check_blend_args(x1, x2, w1, w2, size, scale1, scale2);
  check_blend_grad(grad_out, x1, size, "_resize_blend_backward_emulated");
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
  const bool pass1 = passes_through(x1.size(2), x1.size(3), Ho, Wo, scale1);
  const bool pass2 = passes_through(x2.size(2), x2.size(3), Ho, Wo, scale2);
  const auto layout =
      blend_layout(x1.size(2), x1.size(3), pass1, scale1, x2.size(2), x2.size(3), pass2, scale2, Ho, Wo, align_corners);
  const int64_t total1 = (need_x1 || need_w1) ? x1.numel() : 0;
  const int64_t total2 = (need_x2 || need_w2) ? x2.numel() : 0;
  const bool use32 =
      use_int32_indexing(forms, {total1 + total2, extent(x1), extent(x2), extent(grad_out), gx1.numel(), gx2.numel()});
  double dw[2] = {0.0, 0.0};
  const bool tiles = forms.blend_gather_tiles();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x1.scalar_type(), "_resize_blend_backward_emulated", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const HostTables<acc_t> tb(layout, true);
    const elements::BlendBranch<acc_t> br[2] = {tb.branch(layout, 0, pass1), tb.branch(layout, 1, pass2)};
    const acc_t weights[2] = {weight_value<acc_t>(w1), weight_value<acc_t>(w2)};
    const at::Tensor* xs[2] = {&x1, &x2};
    at::Tensor* gxs[2] = {&gx1, &gx2};
    const bool store[2] = {need_x1, need_x2};
    const int64_t totals[2] = {total1, total2};
    const bool cl[2] = {x1_channels_last, x2_channels_last};
    const scalar_t* g = grad_out.const_data_ptr<scalar_t>();
    with_index_type(use32, [&](auto zero) {
      using index_t = decltype(zero);
      const auto gs = strides_of<index_t>(grad_out);
      for (int k = 0; k < 2; ++k) {  // blend_backward_kernel: x1's pixels, then x2's
        const at::Tensor& x = *xs[k];
        const auto s = strides_of<index_t>(x);
        const scalar_t* xp = x.const_data_ptr<scalar_t>();
        scalar_t* gxp = store[k] ? gxs[k]->mutable_data_ptr<scalar_t>() : nullptr;
        for (int64_t t = 0; t < totals[k]; ++t) {
          const auto p = pos_of<index_t>(t, x, cl[k]);
          const scalar_t* gnc = g + p.n * gs.n + p.c * gs.c;
          const scalar_t* xnc = xp + p.n * s.n + p.c * s.c;
          auto one = [&](auto need_w_c, auto tiles_c) {
            return elements::blend_pixel_grad<decltype(need_w_c)::value, decltype(tiles_c)::value, scalar_t, acc_t,
                                           index_t>(gnc, gs.h, gs.w, xnc, s.h, s.w, br[k], weights[k], p.h, p.w);
          };
          const auto r = need_w ? (tiles ? one(std::true_type{}, std::true_type{})
                                         : one(std::true_type{}, std::false_type{}))
                                : (tiles ? one(std::false_type{}, std::true_type{})
                                         : one(std::false_type{}, std::false_type{}));
          dw[k] += r.dw1;
          if (gxp != nullptr) gxp[t] = static_cast<scalar_t>(r.grad);
        }
      }
      // blend_weight_grads_again_kernel: where a needed sum is not finite, the
      // reference's form over the output elements (blend_elements.h).
      const bool need_w_k[2] = {need_w1, need_w2};
      for (int k = 0; k < 2; ++k) {
        if (!need_w_k[k] || std::isfinite(dw[k])) continue;
        const at::Tensor& x = *xs[k];
        const auto s = strides_of<index_t>(x);
        const scalar_t* xp = x.const_data_ptr<scalar_t>();
        dw[k] = 0.0;
        for (int64_t t = 0; t < grad_out.numel(); ++t) {
          const auto p = pos_of<index_t>(t, grad_out, false);
          dw[k] += elements::blend_weight_term<scalar_t, acc_t, index_t>(
              g + p.n * gs.n + p.c * gs.c, gs.h, gs.w, xp + p.n * s.n + p.c * s.c, s.h, s.w, br[k], p.h, p.w);
        }
      }
    });
  });
  auto [gw1, gw2] = weight_grads(dw[0], dw[1], w1, w2, need_w1, need_w2);
  return {gx1, gx2, gw1, gw2};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> shape_adaptor_maxpool_backward_emulated(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w2,
    c10::IntArrayRef size, bool align_corners, bool need_x, bool need_w1, bool need_w2, bool channels_last,
    c10::IntArrayRef forms_arg) {
  const KernelForms forms = KernelForms::decode(forms_arg);
  check_shape_adaptor_args(x, w1, w2, size);
  check_blend_grad(grad_out, x, size, "_shape_adaptor_maxpool_backward_emulated");
  const int64_t Ho = size[0], Wo = size[1], Hp = x.size(2) / 2, Wp = x.size(3) / 2;
  at::Tensor gx = need_x ? at::empty(x.sizes(), x.options().memory_format(format_of(channels_last)))
                         : at::empty({0}, x.options());
  const bool need_w = need_w1 || need_w2;
  if (grad_out.numel() == 0 || !(need_x || need_w)) {
    if (need_x) gx.zero_();
    return {gx, at::zeros({}, w1.options()), at::zeros({}, w2.options())};
  }
  const bool pass1 = passes_through(Hp, Wp, Ho, Wo, std::nullopt);
  const bool pass2 = passes_through(x.size(2), x.size(3), Ho, Wo, std::nullopt);
  const auto layout =
      blend_layout(Hp, Wp, pass1, std::nullopt, x.size(2), x.size(3), pass2, std::nullopt, Ho, Wo, align_corners);
  const int64_t total = x.numel();
  const bool use32 = use_int32_indexing(forms, {total, extent(x), extent(grad_out)});
  double dw1 = 0.0, dw2 = 0.0;
  const bool tiles = forms.blend_gather_tiles();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "_shape_adaptor_maxpool_backward_emulated", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const HostTables<acc_t> tb(layout, true);
    const auto b1 = tb.branch(layout, 0, pass1);
    const auto b2 = tb.branch(layout, 1, pass2);
    const acc_t a = weight_value<acc_t>(w1), z = weight_value<acc_t>(w2);
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* g = grad_out.const_data_ptr<scalar_t>();
    scalar_t* gxp = need_x ? gx.mutable_data_ptr<scalar_t>() : nullptr;
    with_index_type(use32, [&](auto zero) {
      using index_t = decltype(zero);
      const auto s = strides_of<index_t>(x);
      const auto gs = strides_of<index_t>(grad_out);
      for (int64_t t = 0; t < total; ++t) {  // sa_backward_kernel
        const auto p = pos_of<index_t>(t, x, channels_last);
        auto one = [&](auto tiles_c) {
          return elements::sa_pixel_grad<true, decltype(tiles_c)::value, scalar_t, acc_t, index_t>(
              g + p.n * gs.n + p.c * gs.c, gs.h, gs.w, xp + p.n * s.n + p.c * s.c, s.h, s.w, b1, b2,
              static_cast<index_t>(Hp), static_cast<index_t>(Wp), a, z, p.h, p.w);
        };
        const auto r = tiles ? one(std::true_type{}) : one(std::false_type{});
        dw1 += r.dw1;
        dw2 += r.dw2;
        if (gxp != nullptr) gxp[t] = static_cast<scalar_t>(r.grad);
      }
    });
  });
  auto [gw1, gw2] = weight_grads(dw1, dw2, w1, w2, need_w1, need_w2);
  return {gx, gw1, gw2};
}

}  // namespace
}  // namespace resizeops

TORCH_LIBRARY_IMPL(resizeops_ext, CPU, m) {
  m.impl("_resize_blend_forward_emulated", &resizeops::resize_blend_forward_emulated);
  m.impl("_resize_blend_backward_emulated", &resizeops::resize_blend_backward_emulated);
  m.impl("_shape_adaptor_maxpool_forward_emulated", &resizeops::shape_adaptor_maxpool_forward_emulated);
  m.impl("_shape_adaptor_maxpool_backward_emulated", &resizeops::shape_adaptor_maxpool_backward_emulated);
}
