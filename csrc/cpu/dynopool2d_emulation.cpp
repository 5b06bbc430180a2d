// Serial CPU emulation of the DynOPool CUDA kernels (csrc/cuda/dynopool2d.cu):
// resizeops_ext::_dynopool2d_forward_emulated and _dynopool2d_backward_emulated.
//
// Test hooks, not a backend: they run the CUDA kernels' per-element functions
// (csrc/include/resizeops/dynopool_elements.h) in plain loops over the same linear
// indices the GPU threads take, with the same axis tables, argmax buffer and
// gather, so that tests/test_dynopool2d.py and test_dynopool2d_kernel_forms.py check the GPU code's indexing and
// arithmetic against the reference on machines without a GPU. Slow on purpose
// (one element at a time); the fast CPU kernel is csrc/cpu/dynopool2d.cpp.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <tuple>
#include <type_traits>
#include <vector>

#include "resizeops/checks.h"
#include "resizeops/kernel_forms.h"
#include "resizeops/dynopool_elements.h"
#include "resizeops/tensor_index.h"

namespace resizeops {
namespace {

// The CUDA table_kernel, one "thread" after another (ranges poisoned first), and
// the two axes' views of its buffers.
template <typename acc_t>
struct Tables {
  std::vector<acc_t> accb;
  std::vector<int32_t> intb;
  elements::AxisTaps<acc_t> rows, cols;
  Tables(const elements::TableLayout& layout, bool ranges) : accb(layout.acc_size(), acc_t(0)), intb(layout.int_size(), -7) {
    for (int64_t t = 0; t < layout.entries(ranges); ++t) {
      elements::dynopool_table_entry<acc_t>(t, layout, accb.data(), intb.data(), ranges);
    }
    rows = elements::rows_of<acc_t>(layout, accb.data(), intb.data());
    cols = elements::cols_of<acc_t>(layout, accb.data(), intb.data());
  }
  Tables(const Tables&) = delete;  // rows / cols point into the vectors
  Tables& operator=(const Tables&) = delete;
};

// The CUDA block size (csrc/cuda/launch.cuh kThreads), which the tiled kernels
// split their work by.
constexpr int32_t kBlockThreads = 256;

// One item of forward_rows_kernel, with the vector store where `vec` (2- and 4-byte
// types only, as in the CUDA launch: no copy with it is compiled for double).
template <typename scalar_t, typename acc_t>
void forward_row_item(bool vec, const elements::Pos<int32_t>& p, int32_t out_w, const scalar_t* xp,
                      const Strides4<int32_t>& xs, scalar_t* op, const Strides4<int32_t>& os, const elements::AxisTaps<acc_t>& rows,
                      const elements::AxisTaps<acc_t>& cols) {
  if constexpr (sizeof(scalar_t) <= 4) {
    if (vec) {
      elements::dynopool_forward_row_item<true, scalar_t, acc_t, int32_t>(p, out_w, xp, xs, op, os, rows, cols);
      return;
    }
  }
  elements::dynopool_forward_row_item<false, scalar_t, acc_t, int32_t>(p, out_w, xp, xs, op, os, rows, cols);
}

// The separable forward (experimental, kernel_forms.h): forward_separable_kernel's
// blocks (plane, strip) one after another, each down its tiles: step 1 for each of
// the block's threads, then step 2, with V poisoned first (every entry step 2
// reads must have been written in the same tile).
template <typename scalar_t, typename acc_t>
void forward_separable(const at::Tensor& x, at::Tensor& out, const elements::ForwardTilePlan& plan,
                   const elements::AxisTaps<acc_t>& rows, const elements::AxisTaps<acc_t>& cols) {
  const int64_t N = x.size(0), C = x.size(1), Ho = out.size(2), Wo = out.size(3);
  const auto xs = strides_of<int32_t>(x);
  const auto os = strides_of<int32_t>(out);
  std::vector<acc_t> s_v(static_cast<size_t>(2 * plan.th * plan.vcols));
  std::vector<elements::StripColumn<acc_t>> column(kBlockThreads);  // each thread's registers
  for (int64_t plane = 0; plane < N * C; ++plane) {
    for (int32_t tx = 0; tx < plan.tiles_w; ++tx) {
      const auto S = elements::dynopool_forward_strip<acc_t, int32_t>(static_cast<int32_t>(plane), tx, plan,
                                                                  static_cast<int32_t>(C), static_cast<int32_t>(Wo),
                                                                  cols);
      for (int32_t tid = 0; tid < kBlockThreads; ++tid) {
        column[tid] = elements::dynopool_forward_strip_column<acc_t, int32_t>(tid, plan, S, cols);
      }
      for (int32_t i0 = 0; i0 < Ho; i0 += plan.th) {
        const int32_t ni = static_cast<int32_t>(std::min<int64_t>(plan.th, Ho - i0));
        std::fill(s_v.begin(), s_v.end(), acc_t(-999));
        for (int32_t tid = 0; tid < kBlockThreads; ++tid) {
          elements::dynopool_separable_rows<false, scalar_t, acc_t, int32_t>(tid, kBlockThreads, S, i0, ni,
                                                                          x.const_data_ptr<scalar_t>(), xs, rows,
                                                                          s_v.data(), nullptr);
        }
        for (int32_t tid = 0; tid < kBlockThreads; ++tid) {  // after __syncthreads
          elements::dynopool_forward_tile_cells<scalar_t, acc_t, int32_t>(tid, kBlockThreads, plan, S, column[tid], i0, ni,
                                                                       s_v.data(), out.mutable_data_ptr<scalar_t>(),
                                                                       os);
        }
      }
    }
  }
}

at::Tensor forward_emulated(const at::Tensor& x, int64_t out_h, int64_t out_w, bool channels_last,
                         c10::IntArrayRef forms_arg) {
  const KernelForms forms = KernelForms::decode(forms_arg);
  check_dynopool_args(x, out_h, out_w);
  const auto fmt = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  at::Tensor out = at::empty({N, C, out_h, out_w}, x.options().memory_format(fmt));
  const int64_t total = out.numel();
  if (total == 0) return out;
  const elements::TableLayout layout{out_h, out_w, H, W};
  // The CUDA launch's index width, lanes (work items: cells of Lanes channels) and form.
  const auto launch = dynopool_forward_launch(forms, x, out_h, out_w, channels_last);
  const bool use32 = launch.use32;
  const int lanes = launch.lanes;
  const auto form = launch.form;
  const auto& plan = launch.plan;
  const int64_t groups = (C + lanes - 1) / lanes;
  const int64_t items = N * groups * out_h * out_w;
  const bool vec = lanes_vectorizable(x, lanes) && lanes_vectorizable(out, lanes);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "_dynopool2d_forward_emulated", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const Tables<acc_t> tab(layout, false);
    const auto &rows = tab.rows, &cols = tab.cols;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    if (form == DynopoolForward::kSeparable) {  // forward_separable_kernel
      forward_separable<scalar_t, acc_t>(x, out, plan, rows, cols);
      return;
    }
    if (form == DynopoolForward::kRows) {  // forward_rows_kernel
      const int32_t groups_w = static_cast<int32_t>((out_w + elements::kRowCells - 1) / elements::kRowCells);
      const int64_t row_items = N * C * out_h * groups_w;
      const auto xs = strides_of<int32_t>(x);
      const auto os = strides_of<int32_t>(out);
      const bool rows_vec = dynopool_rows_vectorizable(out);
      for (int64_t t = 0; t < row_items; ++t) {
        const auto p = elements::unravel<int32_t>(static_cast<int32_t>(t), static_cast<int32_t>(C),
                                               static_cast<int32_t>(out_h), groups_w, false);
        forward_row_item<scalar_t, acc_t>(rows_vec, p, static_cast<int32_t>(out_w), xp, xs, op, os, rows, cols);
      }
      return;
    }
    with_index_type(use32, [&](auto zero) {
      using index_t = decltype(zero);
      const auto xs = strides_of<index_t>(x);
      const auto os = strides_of<index_t>(out);
      with_lanes<scalar_t, std::is_same<index_t, int32_t>::value>(lanes, vec, [&](auto lanes_c, auto vec_c) {
        for (int64_t t = 0; t < items; ++t) {  // forward_kernel
          const auto ti = static_cast<index_t>(t);
          const auto p = elements::unravel<index_t>(ti, static_cast<index_t>(groups), static_cast<index_t>(out_h),
                                                 static_cast<index_t>(out_w), channels_last);
          elements::dynopool_forward_item<decltype(lanes_c)::value, decltype(vec_c)::value, scalar_t, acc_t, index_t>(
              ti, p, static_cast<index_t>(C), xp, xs, op, os, rows, cols);
        }
      });
    });
  });
  return out;
}


// resizeops_ext::_dynopool2d_forward_form: the launch's choice, for the tests.
std::vector<int64_t> forward_form(const at::Tensor& x, int64_t out_h, int64_t out_w, bool channels_last,
                                  c10::IntArrayRef forms) {
  check_dynopool_args(x, out_h, out_w);
  const auto a = dynopool_forward_launch(KernelForms::decode(forms), x, out_h, out_w, channels_last);
  if (a.form != DynopoolForward::kSeparable) return {static_cast<int64_t>(a.form)};
  return {static_cast<int64_t>(a.form), a.plan.th, a.plan.tw(), a.plan.vcols, a.plan.tiles_h, a.plan.tiles_w};
}

// Phase A of the fused backward for one tile, its block's threads one after another:
// winners by cells (one channel per thread, or plan.lanes_log2 > 0: the lanes form,
// as the kernel on the 32-bit path), or separable (plan.vcols > 0: A1 for each
// thread, V and D poisoned first, then A2's cells after the barrier).
template <typename scalar_t, typename acc_t, typename index_t>
void fused_phase_a(const elements::FusedPlan& plan, const elements::FusedTile<index_t>& T, bool need_size,
                   const at::Tensor& x, const Strides4<index_t>& xs, const at::Tensor& grad_out, const Strides4<index_t>& gs,
                   const elements::AxisTaps<acc_t>& rows, const elements::AxisTaps<acc_t>& cols, acc_t* region,
                   acc_t* s_g, uint8_t* s_arg, double* dh_sum, double* dw_sum) {
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  const scalar_t* gp = grad_out.const_data_ptr<scalar_t>();
  const int32_t ncells = T.nci * T.ncj;
  const auto both = [need_size](auto f) {  // f(NeedSize)
    if (need_size) {
      f(std::true_type{});
    } else {
      f(std::false_type{});
    }
  };
  if (plan.vcols == 0) {
    const auto cells_of = [&](auto ns, auto lanes) {
      int64_t items = 0;  // each (cell, group of lanes) exactly once: no thread repeats another's
      for (int32_t tid = 0; tid < kBlockThreads; ++tid) {
        const int32_t ch = elements::dynopool_fused_channel(tid, plan);
        for (auto w = elements::dynopool_fused_cursor(tid, kBlockThreads, plan, T.ncj); w.k < ncells; w.advance()) {
          elements::dynopool_fused_cell<decltype(lanes)::value, decltype(ns)::value, scalar_t, acc_t, index_t>(
              w, plan.cb_log2, ch, T, xp, xs, gp, gs, rows, cols, s_g, s_arg, dh_sum, dw_sum);
          ++items;
        }
      }
      TORCH_INTERNAL_ASSERT(items == (static_cast<int64_t>(ncells) << (plan.cb_log2 - plan.lanes_log2)),
                            "_dynopool2d_backward_emulated: phase A computed ", items, " items for ", ncells, " cells");
    };
    both([&](auto ns) {
      with_lanes<scalar_t, std::is_same<index_t, int32_t>::value>(1 << plan.lanes_log2, true,
                                                                  [&](auto lanes, auto) { cells_of(ns, lanes); });
    });
    return;
  }
  // Separable winners: the 32-bit index path only (tensor_index.h dynopool_backward_form),
  // as the CUDA launch: no 64-bit copy.
  if constexpr (std::is_same<index_t, int32_t>::value) {
    const auto S = elements::dynopool_fused_strip<acc_t, index_t>(T, plan, cols);
    std::fill(region, region + plan.region(), acc_t(-999));
    acc_t* s_v = region;
    acc_t* s_d = s_v + plan.v_entries();
    both([&](auto ns) {
      constexpr bool kNeedSize = decltype(ns)::value;
      for (int32_t tid = 0; tid < kBlockThreads; ++tid) {  // A1
        elements::dynopool_separable_rows<kNeedSize, scalar_t, acc_t, index_t>(tid, kBlockThreads, S, T.ci, T.nci, xp,
                                                                           xs, rows, s_v, s_d);
      }
      int64_t items = 0;
      for (int32_t tid = 0; tid < kBlockThreads; ++tid) {  // A2 (after __syncthreads)
        for (auto w = elements::dynopool_fused_cursor(tid, kBlockThreads, plan, T.ncj); w.k < ncells; w.advance()) {
          elements::dynopool_fused_cell_separable<kNeedSize, scalar_t, acc_t, index_t>(w, T, S, s_v, s_d, gp, gs, rows,
                                                                                   cols, s_g, s_arg, dh_sum, dw_sum);
          ++items;
        }
      }
      TORCH_INTERNAL_ASSERT(items == ncells, "_dynopool2d_backward_emulated: A2 computed ", items, " cells of ", ncells);
    });
  } else {
    TORCH_INTERNAL_ASSERT(false, "_dynopool2d_backward_emulated: separable winners off the 32-bit path");
  }
}

// resizeops_ext::_dynopool2d_backward_form: the launch's choice, for the tests.
std::vector<int64_t> backward_form(const at::Tensor& grad_out, const at::Tensor& x, int64_t out_h, int64_t out_w,
                                   bool channels_last, bool need_x, c10::IntArrayRef forms) {
  check_dynopool_args(x, out_h, out_w);
  check_dynopool_grad(grad_out, x, out_h, out_w);
  elements::FusedPlan plan{};
  const auto form = dynopool_backward_form(KernelForms::decode(forms), grad_out, x, out_h, out_w, channels_last, need_x, &plan);
  if (form != DynopoolGradX::kFused) return {static_cast<int64_t>(form)};
  return {static_cast<int64_t>(form), plan.th, plan.tw(), plan.cell_rows, plan.cell_cols, plan.cb(),
          int64_t{1} << plan.lanes_log2, plan.vcols};
}

// The fused backward (kernel_forms.h, experimental): backward_fused_kernel's
// blocks one after another, each with its shared-memory window (one buffer laid out
// as the launch's dynamic shared memory, poisoned: the window's gradients, padded,
// then the region of the row sums and of V and D, so that the emulation checks the
// alignment of B2's vector loads; the winner codes apart) and its phases in order.
std::tuple<at::Tensor, at::Tensor> backward_fused(const at::Tensor& grad_out, const at::Tensor& x, int64_t out_h,
                                                  int64_t out_w, bool channels_last, bool need_size,
                                                  const elements::FusedPlan& plan, const KernelForms& forms) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const auto fmt = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  at::Tensor grad_x = at::empty(x.sizes(), x.options().memory_format(fmt));
  at::Tensor grad_size = at::zeros({2}, x.options().dtype(at::kDouble));
  const elements::TableLayout layout{out_h, out_w, H, W};
  const bool use32 = dynopool_fused_use32(forms, grad_out, x);
  TORCH_INTERNAL_ASSERT(plan.vcols == 0 || use32,
                        "_dynopool2d_backward_emulated: separable winners off the 32-bit path");
  const int64_t blocks = N * (C >> plan.cb_log2) * plan.tiles_h * plan.tiles_w;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "_dynopool2d_backward_emulated", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const Tables<acc_t> tab(layout, true);
    const auto &rows = tab.rows, &cols = tab.cols;
    std::vector<acc_t> smem(plan.slots_padded() + plan.region());
    acc_t* s_g = smem.data();
    acc_t* s_rs = s_g + plan.slots_padded();  // the row sums; before them, V and D
    std::vector<uint8_t> s_arg(plan.window_slots());
    elements::FusedAxes<acc_t> axes;
    double dh_sum = 0.0, dw_sum = 0.0;
    with_index_type(use32, [&](auto zero) {
      using index_t = decltype(zero);
      const auto xs = strides_of<index_t>(x);
      const auto gs = strides_of<index_t>(grad_out);
      const auto gxs = dense_strides<index_t>(C, H, W, channels_last);
      scalar_t* gx = grad_x.mutable_data_ptr<scalar_t>();
      const int32_t quads = plan.b2_items();
      for (int64_t b = 0; b < blocks; ++b) {
        const auto T = elements::dynopool_fused_tile<acc_t, index_t>(static_cast<index_t>(b), plan, static_cast<index_t>(C),
                                                                 static_cast<int32_t>(H), static_cast<int32_t>(W),
                                                                 rows, cols);
        std::fill(s_g, s_rs, acc_t(-777));
        std::fill(s_arg.begin(), s_arg.end(), uint8_t(255));
        // The tile's axis entries (poisoned first: every slot a pixel selects must be written).
        std::memset(static_cast<void*>(&axes), 0xA5, sizeof(axes));
        for (int32_t e = 0; e < plan.th + plan.tw(); ++e) {
          elements::dynopool_fused_axis_entry<acc_t, index_t>(e, plan, T, rows, cols, &axes);
        }
        fused_phase_a<scalar_t, acc_t, index_t>(plan, T, need_size, x, xs, grad_out, gs, rows, cols, s_rs, s_g,
                                                s_arg.data(), &dh_sum, &dw_sum);
        // Every slot of the window written (codes are 0..3; 255 is the poison): with
        // phase A's count of items, each exactly once.
        const int64_t slots = static_cast<int64_t>(T.nci) * T.ncj << plan.cb_log2;
        TORCH_INTERNAL_ASSERT(std::find(s_arg.begin(), s_arg.begin() + slots, uint8_t(255)) == s_arg.begin() + slots,
                              "_dynopool2d_backward_emulated: a slot of the fused window was not written in phase A");
        // Phase B1 (after __syncthreads), the 256 threads of the CUDA block one after another.
        std::fill(s_rs, s_rs + plan.region(), acc_t(-555));
        for (int32_t tid = 0; tid < kBlockThreads; ++tid) {
          elements::dynopool_fused_row_sums<acc_t, index_t>(tid, kBlockThreads, plan, T, cols, axes, s_g, s_arg.data(),
                                                         s_rs);
        }
        for (int32_t p = 0; p < quads; ++p) {  // phase B2 (after __syncthreads)
          elements::dynopool_fused_quad<scalar_t, acc_t, index_t>(p, plan, T, static_cast<int32_t>(W), rows, axes, s_rs,
                                                               gx, gxs);
        }
      }
    });
    if (need_size) {
      grad_size.mutable_data_ptr<double>()[0] = dh_sum;
      grad_size.mutable_data_ptr<double>()[1] = dw_sum;
    }
  });
  return {grad_x, grad_size};
}

std::tuple<at::Tensor, at::Tensor> backward_emulated(const at::Tensor& grad_out, const at::Tensor& x, int64_t out_h,
                                                  int64_t out_w, bool channels_last, bool need_x, bool need_size,
                                                  c10::IntArrayRef forms_arg) {
  const KernelForms forms = KernelForms::decode(forms_arg);
  check_dynopool_args(x, out_h, out_w);
  check_dynopool_grad(grad_out, x, out_h, out_w);
  const auto fmt = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  // The CUDA path's choice of grad_x form (kernel_forms.h): the scatter adds into a
  // zeroed grad_x; the fused form needs a tiling that fits.
  elements::FusedPlan plan{};
  const auto form = dynopool_backward_form(forms, grad_out, x, out_h, out_w, channels_last, need_x, &plan);
  const bool scatter = need_x && form == DynopoolGradX::kScatter;
  if (form == DynopoolGradX::kFused) return backward_fused(grad_out, x, out_h, out_w, channels_last, need_size, plan, forms);
  // (at::zeros would drop the memory format: empty, then zero_.)
  at::Tensor grad_x = need_x ? at::empty(x.sizes(), x.options().memory_format(fmt)) : at::empty({0}, x.options());
  if (scatter) grad_x.zero_();
  at::Tensor grad_size = at::zeros({2}, x.options().dtype(at::kDouble));
  if (x.numel() == 0 || (!need_x && !need_size)) return {grad_x, grad_size};
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t cells_total = N * C * out_h * out_w;
  const elements::TableLayout layout{out_h, out_w, H, W};
  const bool use32 = use_int32_indexing(forms, {cells_total, x.numel(), extent(x), extent(grad_out)});
  // The CUDA launch's lanes form and work items of pass 1 (KernelForms::dynopool_lanes).
  const int lanes = use32 ? forms.dynopool_lanes(x.scalar_type()) : 1;
  const int64_t groups = (C + lanes - 1) / lanes;
  const int64_t items = N * groups * out_h * out_w;
  const bool vec = lanes_vectorizable(x, lanes) && lanes_vectorizable(grad_out, lanes);
  // The argmax buffer of the CUDA path, dense in the output's layout; poisoned:
  // every cell must be written.
  at::Tensor argmax_t =
      at::empty({N, C, out_h, out_w}, x.options().dtype(at::kByte).memory_format(fmt)).fill_(uint8_t(255));
  uint8_t* argmax = argmax_t.mutable_data_ptr<uint8_t>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "_dynopool2d_backward_emulated", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const Tables<acc_t> tab(layout, true);
    const auto &rows = tab.rows, &cols = tab.cols;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* gp = grad_out.const_data_ptr<scalar_t>();
    double dh_sum = 0.0, dw_sum = 0.0;
    with_index_type(use32, [&](auto zero) {
      using index_t = decltype(zero);
      const auto xs = strides_of<index_t>(x);
      const auto gs = strides_of<index_t>(grad_out);
      // The argmax buffer of the CUDA path: contiguous in the output's layout.
      const auto as = dense_strides<index_t>(C, out_h, out_w, channels_last);
      const auto gxs = dense_strides<index_t>(C, H, W, channels_last);
      scalar_t* gx = need_x ? grad_x.mutable_data_ptr<scalar_t>() : nullptr;
      // The CUDA kernel's atomicAdds, in this serial order.
      const auto add = [gx](index_t off, acc_t v) { gx[off] = static_cast<scalar_t>(static_cast<acc_t>(gx[off]) + v); };
      with_lanes<scalar_t, std::is_same<index_t, int32_t>::value>(lanes, vec, [&](auto lanes_c, auto vec_c) {
        constexpr int kL = decltype(lanes_c)::value;
        constexpr bool kVec = decltype(vec_c)::value;
        constexpr bool kAtomics = std::is_same<scalar_t, float>::value || std::is_same<scalar_t, double>::value;
        TORCH_INTERNAL_ASSERT(kAtomics || !scatter, "_dynopool2d_backward_emulated: no scatter for 16-bit types");
        for (int64_t t = 0; t < items; ++t) {  // backward_cells_kernel (argmax and size terms always)
          const auto ti = static_cast<index_t>(t);
          const auto p = elements::unravel<index_t>(ti, static_cast<index_t>(groups), static_cast<index_t>(out_h),
                                                 static_cast<index_t>(out_w), channels_last);
          // The scatter only for float and double (KernelForms::dynopool_grad_x), as the
          // CUDA launch: no copy for 16-bit types.
          if constexpr (kAtomics) {
            if (scatter) {
              elements::dynopool_backward_item<kL, kVec, true, true, true, scalar_t, acc_t, index_t>(
                  ti, p, static_cast<index_t>(C), xp, xs, gp, gs, argmax, as, gxs, rows, cols, add, &dh_sum,
                  &dw_sum);
              continue;
            }
          }
          elements::dynopool_backward_item<kL, kVec, true, true, false, scalar_t, acc_t, index_t>(
              ti, p, static_cast<index_t>(C), xp, xs, gp, gs, argmax, as, gxs, rows, cols, add, &dh_sum, &dw_sum);
        }
      });
      if (need_x && !scatter) {  // backward_pixels_kernel, in the same lanes form (lanes: the loop form)
        const bool tiles = lanes == 1 && forms.dynopool_gather_tiles<scalar_t>();
        const int64_t pixel_items = N * groups * H * W;
        const bool vec2 = lanes_vectorizable(grad_out, lanes) && lanes_vectorizable(argmax_t, lanes) &&
                          lanes_vectorizable(grad_x, lanes);
        with_lanes<scalar_t, std::is_same<index_t, int32_t>::value>(lanes, vec2, [&](auto lanes_c, auto vec_c) {
          constexpr int kL = decltype(lanes_c)::value;
          constexpr bool kVec = decltype(vec_c)::value;
          for (int64_t t = 0; t < pixel_items; ++t) {
            const auto ti = static_cast<index_t>(t);
            const auto p = elements::unravel<index_t>(ti, static_cast<index_t>(groups), static_cast<index_t>(H),
                                                   static_cast<index_t>(W), channels_last);
            if (tiles) {  // (one lane only: see the CUDA launch)
              elements::dynopool_pixel_item<kL, kVec, kL == 1, scalar_t, acc_t, index_t>(
                  ti, p, static_cast<index_t>(C), gp, gs, argmax, as, gx, gxs, rows, cols);
            } else {
              elements::dynopool_pixel_item<kL, kVec, false, scalar_t, acc_t, index_t>(
                  ti, p, static_cast<index_t>(C), gp, gs, argmax, as, gx, gxs, rows, cols);
            }
          }
        });
      }
    });
    if (need_size) {
      grad_size.mutable_data_ptr<double>()[0] = dh_sum;
      grad_size.mutable_data_ptr<double>()[1] = dw_sum;
    }
  });
  return {grad_x, grad_size};
}

}  // namespace
}  // namespace resizeops

TORCH_LIBRARY_IMPL(resizeops_ext, CPU, m) {
  m.impl("_dynopool2d_forward_emulated", &resizeops::forward_emulated);
  m.impl("_dynopool2d_forward_form", &resizeops::forward_form);
  m.impl("_dynopool2d_backward_emulated", &resizeops::backward_emulated);
  m.impl("_dynopool2d_backward_form", &resizeops::backward_form);
}
