// The eager fast path's autograd in C++ (resizeops/ops.py, layer 4): one op per
// public op, whose Autograd kernel is a torch::autograd::Function around the
// device kernels (resizeops_ext::*_forward / *_backward, dispatched below
// autograd to the CPU or CUDA kernel of the tensors' device). Python calls it
// when the backend chosen for a call is the extension's own (cpu or cuda) and a
// gradient is needed: the forward is one dispatcher call and the backward runs
// without Python, where the Python autograd.Function costs ~0.1 ms of host time
// per forward+backward.
//
// Same kernels and the same formulas as the Python paths, so the results are
// bit-identical to them (tests/test_library_ops.py):
//  - the backward asks each kernel for the gradients its inputs need only;
//  - DynOPool's alpha gradient is dL/dalpha = dL/dsize * (-in / alpha^2), in
//    alpha's compute dtype, as resizeops.reference.alpha_grad_from_size_grad
//    computes it (there `-in / t` is `t.reciprocal() * -in`, done so here);
//  - under create_graph (GradMode on in the backward), the gradients come from
//    the Python custom backward op resizeops::_<op>_backward instead, whose own
//    backward refuses double backward with resizeops' message.
// Without a gradient to record (inference mode, or below autograd), the
// CompositeExplicitAutograd kernel runs the forward alone.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <optional>
#include <string>
#include <vector>

namespace resizeops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

c10::OperatorHandle find_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "");
}

// The forward or backward kernel op of the extension, typed.
template <typename Sig>
c10::TypedOperatorHandle<Sig> kernel_op(const char* name) {
  return find_op(name).typed<Sig>();
}

std::optional<std::string> to_string(std::optional<c10::string_view> s) {
  if (!s.has_value()) return std::nullopt;
  return std::string(s->data(), s->size());
}

// The Python custom backward op (boxed: it is defined from Python with its
// own schema), its outputs for the inputs in `mask` and undefined otherwise.
std::vector<at::Tensor> python_backward(const char* name, std::vector<c10::IValue> args, const std::vector<bool>& mask) {
  const auto op = find_op(name);
  torch::jit::Stack stack(std::make_move_iterator(args.begin()), std::make_move_iterator(args.end()));
  op.callBoxed(&stack);
  std::vector<at::Tensor> out;
  for (size_t k = 0; k < mask.size(); ++k) out.push_back(mask[k] ? stack[k].toTensor() : at::Tensor());
  return out;
}

std::vector<double> to_vector(std::optional<c10::ArrayRef<double>> s) {
  return s.has_value() ? std::vector<double>(s->begin(), s->end()) : std::vector<double>{};
}

std::optional<c10::ArrayRef<double>> as_scale(const std::vector<double>& v, bool has) {
  if (!has) return std::nullopt;
  return c10::ArrayRef<double>(v);
}

// --- dynopool2d -----------------------------------------------------------------

struct DynOPoolFunction : public torch::autograd::Function<DynOPoolFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& alpha, int64_t out_h,
                            int64_t out_w, bool channels_last, std::optional<c10::string_view> backend) {
    ctx->save_for_backward({x, alpha});
    ctx->saved_data["out_h"] = out_h;
    ctx->saved_data["out_w"] = out_w;
    ctx->saved_data["channels_last"] = channels_last;
    ctx->saved_data["backend"] = to_string(backend);
    at::AutoDispatchBelowADInplaceOrView guard;
    static const auto fwd = kernel_op<at::Tensor(const at::Tensor&, int64_t, int64_t, bool)>("resizeops_ext::dynopool2d_forward");
    return fwd.call(x, out_h, out_w, channels_last);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &alpha = saved[1];
    const int64_t out_h = ctx->saved_data["out_h"].toInt(), out_w = ctx->saved_data["out_w"].toInt();
    const bool need_x = ctx->needs_input_grad(0), need_alpha = ctx->needs_input_grad(1);
    variable_list out(6);
    if (at::GradMode::is_enabled()) {
      const auto g = python_backward(
          "resizeops::_dynopool2d_backward",
          {grads[0], x, alpha, c10::IValue(std::vector<int64_t>{out_h, out_w}), ctx->saved_data["backend"],
           c10::IValue(std::vector<bool>{need_x, need_alpha})},
          {need_x, need_alpha});
      out[0] = g[0], out[1] = g[1];
      return out;
    }
    static const auto bwd =
        kernel_op<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, int64_t, int64_t, bool, bool,
                                                     bool)>("resizeops_ext::dynopool2d_backward");
    auto [gx, gsize] = bwd.call(grads[0], x, out_h, out_w, ctx->saved_data["channels_last"].toBool(), need_x, need_alpha);
    if (need_x) out[0] = gx;
    if (need_alpha) {
      // resizeops.reference.alpha_grad_from_size_grad, operation for operation.
      const auto cdt = at::toOpMathType(alpha.scalar_type());
      const at::Tensor a = alpha.to(cdt);
      const at::Tensor sh = (a[0] * a[0]).reciprocal() * static_cast<double>(-x.size(2));
      const at::Tensor sw = (a[1] * a[1]).reciprocal() * static_cast<double>(-x.size(3));
      out[1] = (gsize.to(cdt) * at::stack({sh, sw})).to(alpha.scalar_type());
    }
    return out;
  }
};

at::Tensor dynopool2d_autograd(const at::Tensor& x, const at::Tensor& alpha, int64_t out_h, int64_t out_w,
                               bool channels_last, std::optional<c10::string_view> backend) {
  return DynOPoolFunction::apply(x, alpha, out_h, out_w, channels_last, backend);
}

at::Tensor dynopool2d_autograd_forward_only(const at::Tensor& x, const at::Tensor&, int64_t out_h, int64_t out_w,
                                            bool channels_last, std::optional<c10::string_view>) {
  static const auto fwd = kernel_op<at::Tensor(const at::Tensor&, int64_t, int64_t, bool)>("resizeops_ext::dynopool2d_forward");
  return fwd.call(x, out_h, out_w, channels_last);
}

// --- resize_blend ----------------------------------------------------------------

using Scale = std::optional<c10::ArrayRef<double>>;
using BlendForwardSig = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                   c10::IntArrayRef, bool, Scale, Scale, bool);
using BlendBackwardSig = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, c10::IntArrayRef,
    bool, Scale, Scale, bool, bool, bool, bool, bool, bool);

c10::IValue scale_ivalue(const std::vector<double>& v, bool has) {
  return has ? c10::IValue(v) : c10::IValue();
}

struct ResizeBlendFunction : public torch::autograd::Function<ResizeBlendFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& w1,
                            const at::Tensor& w2, c10::IntArrayRef size, bool align_corners, Scale scale1, Scale scale2,
                            bool channels_last, bool x1_channels_last, bool x2_channels_last,
                            std::optional<c10::string_view> backend) {
    ctx->save_for_backward({x1, x2, w1, w2});
    ctx->saved_data["size"] = size.vec();
    ctx->saved_data["align_corners"] = align_corners;
    ctx->saved_data["has_scale1"] = scale1.has_value();
    ctx->saved_data["has_scale2"] = scale2.has_value();
    ctx->saved_data["scale1"] = to_vector(scale1);
    ctx->saved_data["scale2"] = to_vector(scale2);
    ctx->saved_data["x1_channels_last"] = x1_channels_last;
    ctx->saved_data["x2_channels_last"] = x2_channels_last;
    ctx->saved_data["backend"] = to_string(backend);
    at::AutoDispatchBelowADInplaceOrView guard;
    static const auto fwd = kernel_op<BlendForwardSig>("resizeops_ext::resize_blend_forward");
    return fwd.call(x1, x2, w1, w2, size, align_corners, scale1, scale2, channels_last);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto size = ctx->saved_data["size"].toIntVector();
    const bool ac = ctx->saved_data["align_corners"].toBool();
    const bool has1 = ctx->saved_data["has_scale1"].toBool(), has2 = ctx->saved_data["has_scale2"].toBool();
    const auto s1 = ctx->saved_data["scale1"].toDoubleVector(), s2 = ctx->saved_data["scale2"].toDoubleVector();
    const std::vector<bool> need = {ctx->needs_input_grad(0), ctx->needs_input_grad(1), ctx->needs_input_grad(2),
                                    ctx->needs_input_grad(3)};
    variable_list out(12);
    std::vector<at::Tensor> g;
    if (at::GradMode::is_enabled()) {
      g = python_backward("resizeops::_resize_blend_backward",
                          {grads[0], saved[0], saved[1], saved[2], saved[3], c10::IValue(size), ac,
                           scale_ivalue(s1, has1), scale_ivalue(s2, has2), ctx->saved_data["backend"],
                           c10::IValue(need)},
                          need);
    } else {
      static const auto bwd = kernel_op<BlendBackwardSig>("resizeops_ext::resize_blend_backward");
      auto r = bwd.call(grads[0], saved[0], saved[1], saved[2], saved[3], size, ac, as_scale(s1, has1),
                        as_scale(s2, has2), need[0], need[1], need[2], need[3],
                        ctx->saved_data["x1_channels_last"].toBool(), ctx->saved_data["x2_channels_last"].toBool());
      g = {std::get<0>(r), std::get<1>(r), std::get<2>(r), std::get<3>(r)};
    }
    for (int k = 0; k < 4; ++k)
      if (need[k]) out[k] = g[k];
    return out;
  }
};

at::Tensor resize_blend_autograd(const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& w1,
                                 const at::Tensor& w2, c10::IntArrayRef size, bool align_corners, Scale scale1,
                                 Scale scale2, bool channels_last, bool x1_channels_last, bool x2_channels_last,
                                 std::optional<c10::string_view> backend) {
  return ResizeBlendFunction::apply(x1, x2, w1, w2, size, align_corners, scale1, scale2, channels_last,
                                    x1_channels_last, x2_channels_last, backend);
}

at::Tensor resize_blend_autograd_forward_only(const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& w1,
                                              const at::Tensor& w2, c10::IntArrayRef size, bool align_corners,
                                              Scale scale1, Scale scale2, bool channels_last, bool, bool,
                                              std::optional<c10::string_view>) {
  static const auto fwd = kernel_op<BlendForwardSig>("resizeops_ext::resize_blend_forward");
  return fwd.call(x1, x2, w1, w2, size, align_corners, scale1, scale2, channels_last);
}

// --- shape_adaptor_maxpool -----------------------------------------------------------

using CellForwardSig = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, c10::IntArrayRef, bool, bool);
using CellBackwardSig = std::tuple<at::Tensor, at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                                       const at::Tensor&, const at::Tensor&,
                                                                       c10::IntArrayRef, bool, bool, bool, bool, bool);

struct ShapeAdaptorMaxPoolFunction : public torch::autograd::Function<ShapeAdaptorMaxPoolFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w2,
                            c10::IntArrayRef size, bool align_corners, bool channels_last,
                            std::optional<c10::string_view> backend) {
    ctx->save_for_backward({x, w1, w2});
    ctx->saved_data["size"] = size.vec();
    ctx->saved_data["align_corners"] = align_corners;
    ctx->saved_data["channels_last"] = channels_last;
    ctx->saved_data["backend"] = to_string(backend);
    at::AutoDispatchBelowADInplaceOrView guard;
    static const auto fwd = kernel_op<CellForwardSig>("resizeops_ext::shape_adaptor_maxpool_forward");
    return fwd.call(x, w1, w2, size, align_corners, channels_last);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto size = ctx->saved_data["size"].toIntVector();
    const bool ac = ctx->saved_data["align_corners"].toBool();
    const std::vector<bool> need = {ctx->needs_input_grad(0), ctx->needs_input_grad(1), ctx->needs_input_grad(2)};
    variable_list out(7);
    std::vector<at::Tensor> g;
    if (at::GradMode::is_enabled()) {
      g = python_backward("resizeops::_shape_adaptor_maxpool_backward",
                          {grads[0], saved[0], saved[1], saved[2], c10::IValue(size), ac, ctx->saved_data["backend"],
                           c10::IValue(need)},
                          need);
    } else {
      static const auto bwd = kernel_op<CellBackwardSig>("resizeops_ext::shape_adaptor_maxpool_backward");
      auto r = bwd.call(grads[0], saved[0], saved[1], saved[2], size, ac, need[0], need[1], need[2],
                        ctx->saved_data["channels_last"].toBool());
      g = {std::get<0>(r), std::get<1>(r), std::get<2>(r)};
    }
    for (int k = 0; k < 3; ++k)
      if (need[k]) out[k] = g[k];
    return out;
  }
};

at::Tensor shape_adaptor_maxpool_autograd(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w2,
                                          c10::IntArrayRef size, bool align_corners, bool channels_last,
                                          std::optional<c10::string_view> backend) {
  return ShapeAdaptorMaxPoolFunction::apply(x, w1, w2, size, align_corners, channels_last, backend);
}

at::Tensor shape_adaptor_maxpool_autograd_forward_only(const at::Tensor& x, const at::Tensor& w1,
                                                       const at::Tensor& w2, c10::IntArrayRef size, bool align_corners,
                                                       bool channels_last, std::optional<c10::string_view>) {
  static const auto fwd = kernel_op<CellForwardSig>("resizeops_ext::shape_adaptor_maxpool_forward");
  return fwd.call(x, w1, w2, size, align_corners, channels_last);
}

}  // namespace
}  // namespace resizeops

TORCH_LIBRARY_IMPL(resizeops_ext, Autograd, m) {
  m.impl("dynopool2d_autograd", &resizeops::dynopool2d_autograd);
  m.impl("resize_blend_autograd", &resizeops::resize_blend_autograd);
  m.impl("shape_adaptor_maxpool_autograd", &resizeops::shape_adaptor_maxpool_autograd);
}

TORCH_LIBRARY_IMPL(resizeops_ext, CompositeExplicitAutograd, m) {
  m.impl("dynopool2d_autograd", &resizeops::dynopool2d_autograd_forward_only);
  m.impl("resize_blend_autograd", &resizeops::resize_blend_autograd_forward_only);
  m.impl("shape_adaptor_maxpool_autograd", &resizeops::shape_adaptor_maxpool_autograd_forward_only);
}
