// Fused C++ CPU kernels of resize_blend (SPEC §2.2): resizeops_ext::resize_blend_forward
// and resizeops_ext::resize_blend_backward (schemas in csrc/resizeops.cpp).
//
// out = w1 * R(x1) + w2 * R(x2), R = F.interpolate(mode="bilinear") to `size`
// (with an optional scale_factor and a crop of the top-left window), an input
// already of `size` without a scale passing through unchanged.
//
// Same structure as the DynOPool CPU kernel (csrc/cpu/dynopool2d.cpp): tasks of
// (image n, block of 16 channels), each output row computed separably from a
// vertical interpolation of the two input rows it reads ([w][c] row buffers,
// channels innermost, so the inner loops vectorise over channels whatever the
// layout). The backward runs the transpose in the same order: the weighted
// gradient row is spread horizontally onto an input-width row, then vertically
// onto the task's slice of grad_x (its own: no atomics), and dL/dw_k = sum of
// g * R_k(x_k) is accumulated per output row in the accumulation type, then in
// double per task, summed in task order: deterministic.
//
// Arithmetic: interp_ratio / interp_source_coord_from_ratio / interp_taps of
// resizeops/math.h (ATen's area_pixel_compute_* and guard_index_and_lambda
// rules, and its copy of an axis whose size does not change); in the accumulation type
// (float for half types, as the reference computes in float32).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Optional.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <tuple>
#include <vector>

#include "resizeops/math.h"

namespace resizeops {
namespace {

constexpr int64_t kChannelBlock = 16;

using ScaleArg = std::optional<c10::ArrayRef<double>>;

// Taps of every output index along one axis of one input.
template <typename acc_t>
struct Taps {
  std::vector<int64_t> i0, i1;
  std::vector<acc_t> w0, w1;
};

template <typename acc_t>
Taps<acc_t> make_taps(int64_t in_size, int64_t out_size, bool align_corners, std::optional<double> scale) {
  // With a scale, interpolate's own output is floor(in * s) (then cropped to out_size).
  const int64_t full = scale ? static_cast<int64_t>(std::floor(static_cast<double>(in_size) * *scale)) : out_size;
  const acc_t ratio = math::interp_ratio<acc_t>(in_size, full, align_corners, scale ? *scale : -1.0);
  Taps<acc_t> t;
  t.i0.resize(out_size);
  t.i1.resize(out_size);
  t.w0.resize(out_size);
  t.w1.resize(out_size);
  for (int64_t j = 0; j < out_size; ++j) {
    if (full == in_size) {
      // ATen copies an axis whose interpolate size equals its input size (even
      // with a scale like 1.1 on 7 pixels): taps (j, j), so a NaN or inf never
      // reaches a neighbour through a zero weight.
      t.i0[j] = t.i1[j] = j;
      t.w0[j] = acc_t(1);
      t.w1[j] = acc_t(0);
      continue;
    }
    const acc_t u = math::interp_source_coord_from_ratio<acc_t>(ratio, j, align_corners);
    math::interp_taps<acc_t>(u, in_size, &t.i0[j], &t.i1[j], &t.w0[j], &t.w1[j]);
  }
  return t;
}

// One input of the blend: its data, strides, whether it passes through
// unchanged, and (otherwise) its taps.
template <typename scalar_t, typename acc_t>
struct Branch {
  const scalar_t* x;
  int64_t sN, sC, sH, sW, H, W;
  bool pass;
  Taps<acc_t> rows, cols;
  acc_t weight;
};

template <typename scalar_t, typename acc_t>
Branch<scalar_t, acc_t> make_branch(const at::Tensor& x, const at::Tensor& w, int64_t Ho, int64_t Wo,
                                    bool align_corners, const ScaleArg& scale) {
  Branch<scalar_t, acc_t> b;
  b.x = x.const_data_ptr<scalar_t>();
  b.sN = x.stride(0), b.sC = x.stride(1), b.sH = x.stride(2), b.sW = x.stride(3);
  b.H = x.size(2), b.W = x.size(3);
  b.pass = !scale.has_value() && b.H == Ho && b.W == Wo;
  if (!b.pass) {
    std::optional<double> sh, sw;
    if (scale.has_value()) {
      sh = (*scale)[0];
      sw = (*scale)[1];
    }
    b.rows = make_taps<acc_t>(b.H, Ho, align_corners, sh);
    b.cols = make_taps<acc_t>(b.W, Wo, align_corners, sw);
  }
  // The reference casts the weight to the compute type first: w.to(cdt).
  b.weight = static_cast<acc_t>(w.item<double>());
  return b;
}

// R_k(x_k) of output row i for channels [c0, c0 + cb) of image n, laid out
// [j][c] in r; vrow: scratch of W_k * cb.
template <typename scalar_t, typename acc_t>
void resize_row(const Branch<scalar_t, acc_t>& b, int64_t n, int64_t c0, int64_t cb, int64_t i, int64_t Wo,
                acc_t* __restrict vrow, acc_t* __restrict r) {
  const scalar_t* xn = b.x + n * b.sN + c0 * b.sC;
  if (b.pass) {
    const scalar_t* row = xn + i * b.sH;
    if (b.sC <= b.sW) {
      for (int64_t j = 0; j < Wo; ++j)
        for (int64_t c = 0; c < cb; ++c) r[j * cb + c] = static_cast<acc_t>(row[c * b.sC + j * b.sW]);
    } else {
      for (int64_t c = 0; c < cb; ++c)
        for (int64_t j = 0; j < Wo; ++j) r[j * cb + c] = static_cast<acc_t>(row[c * b.sC + j * b.sW]);
    }
    return;
  }
  const scalar_t* top = xn + b.rows.i0[i] * b.sH;
  const scalar_t* bot = xn + b.rows.i1[i] * b.sH;
  const acc_t h0 = b.rows.w0[i], h1 = b.rows.w1[i];
  auto one = [&](int64_t w, int64_t c) {
    vrow[w * cb + c] = h0 * static_cast<acc_t>(top[c * b.sC + w * b.sW]) +
                       h1 * static_cast<acc_t>(bot[c * b.sC + w * b.sW]);
  };
  if (b.sC <= b.sW) {
    for (int64_t w = 0; w < b.W; ++w)
      for (int64_t c = 0; c < cb; ++c) one(w, c);
  } else {
    for (int64_t c = 0; c < cb; ++c)
      for (int64_t w = 0; w < b.W; ++w) one(w, c);
  }
  for (int64_t j = 0; j < Wo; ++j) {
    const acc_t* a = vrow + b.cols.i0[j] * cb;
    const acc_t* z = vrow + b.cols.i1[j] * cb;
    const acc_t v0 = b.cols.w0[j], v1 = b.cols.w1[j];
    acc_t* __restrict o = r + j * cb;
    _Pragma("omp simd")
    for (int64_t c = 0; c < cb; ++c) o[c] = v0 * a[c] + v1 * z[c];
  }
}

std::optional<double> opt_scale(const ScaleArg& s, int k) {
  if (!s.has_value()) return std::nullopt;
  return (*s)[k];
}

void check_args(const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& w1, const at::Tensor& w2,
                c10::IntArrayRef size, const ScaleArg& scale1, const ScaleArg& scale2) {
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
  for (const ScaleArg* s : {&scale1, &scale2}) {
    TORCH_CHECK(!s->has_value() || ((*s)->size() == 2 && (**s)[0] > 0 && (**s)[1] > 0),
                "resizeops_ext::resize_blend: a scale must be two positive numbers");
  }
}

at::Tensor resize_blend_forward_cpu(const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& w1,
                                    const at::Tensor& w2, c10::IntArrayRef size, bool align_corners, ScaleArg scale1,
                                    ScaleArg scale2, bool channels_last) {
  check_args(x1, x2, w1, w2, size, scale1, scale2);
  const int64_t N = x1.size(0), C = x1.size(1), Ho = size[0], Wo = size[1];
  const auto fmt = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  at::Tensor out = at::empty({N, C, Ho, Wo}, x1.options().memory_format(fmt));
  if (out.numel() == 0) return out;
  const int64_t cblock = std::min(C, kChannelBlock);
  const int64_t blocks_per_image = (C + cblock - 1) / cblock;
  const int64_t oN = out.stride(0), oC = out.stride(1), oH = out.stride(2), oW = out.stride(3);

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x1.scalar_type(), "resize_blend_forward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto b1 = make_branch<scalar_t, acc_t>(x1, w1, Ho, Wo, align_corners, scale1);
    const auto b2 = make_branch<scalar_t, acc_t>(x2, w2, Ho, Wo, align_corners, scale2);
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, N * blocks_per_image, 1, [&](int64_t begin, int64_t end) {
      const int64_t wmax = std::max(b1.W, b2.W);
      std::vector<acc_t> scratch(wmax * cblock + 2 * Wo * cblock);
      acc_t* vrow = scratch.data();
      acc_t* r1 = vrow + wmax * cblock;
      acc_t* r2 = r1 + Wo * cblock;
      for (int64_t t = begin; t < end; ++t) {
        const int64_t n = t / blocks_per_image;
        const int64_t c0 = (t % blocks_per_image) * cblock;
        const int64_t cb = std::min(c0 + cblock, C) - c0;
        scalar_t* o = op + n * oN + c0 * oC;
        for (int64_t i = 0; i < Ho; ++i) {
          resize_row(b1, n, c0, cb, i, Wo, vrow, r1);
          resize_row(b2, n, c0, cb, i, Wo, vrow, r2);
          const acc_t a = b1.weight, z = b2.weight;
          _Pragma("omp simd")
          for (int64_t e = 0; e < Wo * cb; ++e) r1[e] = a * r1[e] + z * r2[e];
          if (channels_last) {
            for (int64_t j = 0; j < Wo; ++j)
              for (int64_t c = 0; c < cb; ++c) o[c * oC + i * oH + j * oW] = static_cast<scalar_t>(r1[j * cb + c]);
          } else {  // NCHW: along the row of each channel
            for (int64_t c = 0; c < cb; ++c)
              for (int64_t j = 0; j < Wo; ++j) o[c * oC + i * oH + j * oW] = static_cast<scalar_t>(r1[j * cb + c]);
          }
        }
      }
    });
  });
  return out;
}

// Spreads wg (the gradient of one output row, [j][c]) onto the task's slice of
// R_kᵀ(g) in acc ([h][w][c] of branch b): the transpose of resize_row.
template <typename scalar_t, typename acc_t>
void scatter_row(const Branch<scalar_t, acc_t>& b, int64_t cb, int64_t i, int64_t Wo, const acc_t* __restrict wg,
                 acc_t* __restrict hrow, acc_t* __restrict acc) {
  if (b.pass) {
    acc_t* dst = acc + i * b.W * cb;
    for (int64_t e = 0; e < Wo * cb; ++e) dst[e] += wg[e];
    return;
  }
  std::fill(hrow, hrow + b.W * cb, acc_t(0));
  for (int64_t j = 0; j < Wo; ++j) {
    acc_t* a = hrow + b.cols.i0[j] * cb;
    acc_t* z = hrow + b.cols.i1[j] * cb;
    const acc_t v0 = b.cols.w0[j], v1 = b.cols.w1[j];
    const acc_t* g = wg + j * cb;
    // a and z may be the same row at the border: no simd pragma, plain loops.
    for (int64_t c = 0; c < cb; ++c) a[c] += v0 * g[c];
    for (int64_t c = 0; c < cb; ++c) z[c] += v1 * g[c];
  }
  acc_t* top = acc + b.rows.i0[i] * b.W * cb;
  acc_t* bot = acc + b.rows.i1[i] * b.W * cb;
  const acc_t h0 = b.rows.w0[i], h1 = b.rows.w1[i];
  for (int64_t e = 0; e < b.W * cb; ++e) top[e] += h0 * hrow[e];
  for (int64_t e = 0; e < b.W * cb; ++e) bot[e] += h1 * hrow[e];
}

// grad_x_k = weight * acc (R_kᵀ(g)) into the task's slice of gx, in gx's layout.
template <typename scalar_t, typename acc_t>
void store_grad(const at::Tensor& gx, const acc_t* acc, acc_t weight, int64_t n, int64_t c0, int64_t cb, int64_t H,
                int64_t W, bool channels_last) {
  scalar_t* p = gx.mutable_data_ptr<scalar_t>() + n * gx.stride(0) + c0 * gx.stride(1);
  const int64_t sC = gx.stride(1), sH = gx.stride(2), sW = gx.stride(3);
  if (channels_last) {
    for (int64_t h = 0; h < H; ++h)
      for (int64_t w = 0; w < W; ++w)
        for (int64_t c = 0; c < cb; ++c) p[c * sC + h * sH + w * sW] = static_cast<scalar_t>(weight * acc[(h * W + w) * cb + c]);
  } else {
    for (int64_t c = 0; c < cb; ++c)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t w = 0; w < W; ++w) p[c * sC + h * sH + w * sW] = static_cast<scalar_t>(weight * acc[(h * W + w) * cb + c]);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> resize_blend_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& w1,
    const at::Tensor& w2, c10::IntArrayRef size, bool align_corners, ScaleArg scale1, ScaleArg scale2,
    bool need_x1, bool need_x2, bool need_w1, bool need_w2, bool x1_channels_last, bool x2_channels_last) {
  check_args(x1, x2, w1, w2, size, scale1, scale2);
  const int64_t N = x1.size(0), C = x1.size(1), Ho = size[0], Wo = size[1];
  TORCH_CHECK(grad_out.dim() == 4 && grad_out.size(0) == N && grad_out.size(1) == C && grad_out.size(2) == Ho &&
                  grad_out.size(3) == Wo && grad_out.scalar_type() == x1.scalar_type(),
              "resizeops_ext::resize_blend_backward: grad_out must be (", N, ", ", C, ", ", Ho, ", ", Wo, ") of ",
              x1.scalar_type(), ", got ", grad_out.sizes(), " ", grad_out.scalar_type());
  const bool need[4] = {need_x1, need_x2, need_w1, need_w2};
  auto fmt = [](bool cl) { return cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous; };
  at::Tensor gx1 = need[0] ? at::empty(x1.sizes(), x1.options().memory_format(fmt(x1_channels_last)))
                           : at::empty({0}, x1.options());
  at::Tensor gx2 = need[1] ? at::empty(x2.sizes(), x2.options().memory_format(fmt(x2_channels_last)))
                           : at::empty({0}, x2.options());
  at::Tensor gw1 = at::zeros({}, w1.options());
  at::Tensor gw2 = at::zeros({}, w2.options());
  if (grad_out.numel() == 0 || !(need[0] || need[1] || need[2] || need[3])) {
    if (need[0]) gx1.zero_();
    if (need[1]) gx2.zero_();
    return {gx1, gx2, gw1, gw2};
  }
  const int64_t cblock = std::min(C, kChannelBlock);
  const int64_t blocks_per_image = (C + cblock - 1) / cblock;
  const int64_t tasks = N * blocks_per_image;
  std::vector<double> partials(2 * tasks, 0.0);
  const int64_t gN = grad_out.stride(0), gC = grad_out.stride(1), gH = grad_out.stride(2), gW = grad_out.stride(3);

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x1.scalar_type(), "resize_blend_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto b1 = make_branch<scalar_t, acc_t>(x1, w1, Ho, Wo, align_corners, scale1);
    const auto b2 = make_branch<scalar_t, acc_t>(x2, w2, Ho, Wo, align_corners, scale2);
    const scalar_t* gp = grad_out.const_data_ptr<scalar_t>();
    at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
      const int64_t wmax = std::max(b1.W, b2.W);
      std::vector<acc_t> scratch(wmax * cblock + Wo * cblock + cblock);
      acc_t* vrow = scratch.data();  // the horizontal scatter row (input width)
      acc_t* grow = vrow + wmax * cblock;  // grad_out's row, [j][c]
      acc_t* lanes = grow + Wo * cblock;   // per-channel partial sums of the weight gradient
      const bool use[2] = {need[0] || need[2], need[1] || need[3]};
      std::vector<acc_t> acc1(use[0] ? b1.H * b1.W * cblock : 0), acc2(use[1] ? b2.H * b2.W * cblock : 0);
      for (int64_t t = begin; t < end; ++t) {
        const int64_t n = t / blocks_per_image;
        const int64_t c0 = (t % blocks_per_image) * cblock;
        const int64_t cb = std::min(c0 + cblock, C) - c0;
        const scalar_t* go = gp + n * gN + c0 * gC;
        std::fill(acc1.begin(), acc1.end(), acc_t(0));
        std::fill(acc2.begin(), acc2.end(), acc_t(0));
        double dw[2] = {0.0, 0.0};
        for (int64_t i = 0; i < Ho; ++i) {
          for (int64_t c = 0; c < cb; ++c)
            for (int64_t j = 0; j < Wo; ++j) grow[j * cb + c] = static_cast<acc_t>(go[c * gC + i * gH + j * gW]);
          // R_kᵀ(g), unweighted, for every branch that needs a gradient.
          if (use[0]) scatter_row(b1, cb, i, Wo, grow, vrow, acc1.data());
          if (use[1]) scatter_row(b2, cb, i, Wo, grow, vrow, acc2.data());
        }
        const Branch<scalar_t, acc_t>* br[2] = {&b1, &b2};
        const std::vector<acc_t>* accs[2] = {&acc1, &acc2};
        for (int k = 0; k < 2; ++k) {
          if (!need[2 + k]) continue;
          // dL/dw_k = <g, R_k x_k> = <R_kᵀ g, x_k>: one read of x_k instead of
          // interpolating it again. Pixels no output reads (acc = 0) are skipped,
          // so a non-finite value there does not reach the sum, as in the reference.
          const auto& bk = *br[k];
          const acc_t* ak = accs[k]->data();
          const scalar_t* xk = bk.x + n * bk.sN + c0 * bk.sC;
          // Per-channel lanes (independent sums: they vectorise; one running sum
          // would be bound by the latency of its additions), per input row, then
          // in double.
          // NCHW rows are first transposed into vrow ([w][c]) along each channel's
          // row: reading 16 channel planes in lock step, 2^k bytes apart, would
          // thrash the L1 sets.
          for (int64_t h = 0; h < bk.H; ++h) {
            std::fill(lanes, lanes + cb, acc_t(0));
            const scalar_t* xh = xk + h * bk.sH;
            for (int64_t c = 0; c < cb; ++c)
              for (int64_t w = 0; w < bk.W; ++w) vrow[w * cb + c] = static_cast<acc_t>(xh[c * bk.sC + w * bk.sW]);
            for (int64_t w = 0; w < bk.W; ++w) {
              const acc_t* a = ak + (h * bk.W + w) * cb;
              const acc_t* v = vrow + w * cb;
              _Pragma("omp simd")
              for (int64_t c = 0; c < cb; ++c) lanes[c] += a[c] != acc_t(0) ? a[c] * v[c] : acc_t(0);
            }
            for (int64_t c = 0; c < cb; ++c) dw[k] += static_cast<double>(lanes[c]);
          }
        }
        // dL/dx_k = w_k R_kᵀ(g).
        if (need[0]) store_grad<scalar_t, acc_t>(gx1, acc1.data(), b1.weight, n, c0, cb, b1.H, b1.W, x1_channels_last);
        if (need[1]) store_grad<scalar_t, acc_t>(gx2, acc2.data(), b2.weight, n, c0, cb, b2.H, b2.W, x2_channels_last);
        partials[2 * t] = dw[0];
        partials[2 * t + 1] = dw[1];
      }
    });
  });
  double s[2] = {0.0, 0.0};
  for (int64_t t = 0; t < tasks; ++t) {  // fixed order: deterministic
    s[0] += partials[2 * t];
    s[1] += partials[2 * t + 1];
  }
  if (need[2]) gw1.fill_(s[0]);
  if (need[3]) gw2.fill_(s[1]);
  return {gx1, gx2, gw1, gw2};
}

}  // namespace
}  // namespace resizeops

TORCH_LIBRARY_IMPL(resizeops_ext, CPU, m) {
  m.impl("resize_blend_forward", &resizeops::resize_blend_forward_cpu);
  m.impl("resize_blend_backward", &resizeops::resize_blend_backward_cpu);
}
