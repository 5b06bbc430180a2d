// CUDA kernels of DynOPool (docs/SEMANTICS.md, DynOPool):
// resizeops_ext::dynopool2d_forward and resizeops_ext::dynopool2d_backward
// (schemas in csrc/resizeops.cpp).
//
// The per-element work is in csrc/include/resizeops/dynopool_elements.h, shared
// with a serial CPU emulation (csrc/cpu/dynopool2d_emulation.cpp) that the tests
// run without a GPU. Here: the launches, the grid-stride loops and the block
// reduction.
//
// - Axis tables: one small launch per call computes the taps, weight and size
//   derivative of each of the 2*Ho query rows and 2*Wo query columns and, for
//   the backward, each input row's / column's range of the queries that read
//   it. The other kernels read them from L1: no floor or float-to-int
//   conversion per element (the first version computed the taps per element
//   and was bound by instruction issue at 38% of copy bandwidth).
// - Forward: one thread per output cell, in the output's memory order (NCHW or
//   channels_last), so that stores coalesce; x is read through its strides (any
//   layout, no copy). The 2Ho x 2Wo query tensor never exists. With
//   lanes = 4 (kernel_forms.h; experimental), the lanes form: one thread per cell of 4
//   channels (2 in float64), vector loads where they are contiguous and aligned.
//   Experimental NCHW forms (kernel_forms.h KernelForms::forward): rows,
//   4 cells of a row per thread; separable, one block per strip of cells sharing its
//   vertical interpolations through shared memory.
// - Backward: by default (float and double, outside deterministic mode) one pass
//   that scatters each cell's gradient into grad_x with atomics (pass 1 below with
//   Scatter); otherwise deterministic (no atomics, fixed-order sums), two passes:
//   (1) per output cell: recompute the winner, store it (1 byte), and add the
//       size-gradient terms into per-thread float64 sums, reduced per block into
//       a partials buffer (a fixed grid, so a fixed order), then summed by one
//       block in a fixed order;
//   (2) per input pixel: gather the gradient of the winning queries that read it
//       (each pixel owns its output: no atomics, no zero-fill of grad_x).
//   Bytes: x, grad_out twice and grad_x, plus the 1-byte argmax written and read.
//
// Half types are loaded as float (at::opmath_type) and rounded once on store.
// Indices: 32-bit offsets and magic-number division (ATen's IntDivider) where
// every tensor's extent fits in 31 bits; 64-bit otherwise.
// Every launch is on the current stream under a device guard and checked.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/detail/IntegerDivider.cuh>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <initializer_list>
#include <limits>
#include <tuple>
#include <type_traits>

#include "resizeops/checks.h"
#include "resizeops/kernel_forms.h"
#include "resizeops/dynopool_elements.h"
#include "resizeops/tensor_index.h"
#include "launch.cuh"

namespace resizeops {
namespace {

// ---------------------------------------------------------------------------
// Kernels
// ---------------------------------------------------------------------------

template <typename acc_t>
__global__ void table_kernel(elements::TableLayout layout, acc_t* __restrict__ accb, int32_t* __restrict__ intb,
                             bool ranges) {
  const int64_t total = layout.entries(ranges);
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    elements::dynopool_table_entry<acc_t>(t, layout, accb, intb, ranges);
  }
}

// Forward: work item t is one output element (Lanes = 1) or the same cell of Lanes
// channels (the lanes form, dynopool_elements.h); idx enumerates the items in the
// output's memory order, channel groups of Lanes in place of channels.
//
// Launch bounds (blocks of kThreads per SM, at least): they decide how many of a
// cell's 16 loads per lane ptxas keeps in flight. With no bound it took 32
// registers for one lane and reloaded into the same registers, issuing the
// loads in about three waves (each waiting for memory); with at least 6 blocks
// (at most 40 registers) it issues all 28 (12 table entries, 16 values of x)
// before the arithmetic, as it does for the lanes form with at least 2 blocks
// (about 100 registers). Float64 (one lane): 4.
template <int Lanes, typename scalar_t>
constexpr int forward_min_blocks() {
  return Lanes == 1 ? (sizeof(scalar_t) <= 4 ? 6 : 4) : 2;
}

template <int Lanes, bool VectorIO, typename scalar_t, typename acc_t, typename index_t, typename Indexer>
__global__ void __launch_bounds__(kThreads, forward_min_blocks<Lanes, scalar_t>())
    forward_kernel(const scalar_t* __restrict__ x, Strides4<index_t> xs, scalar_t* __restrict__ out, Strides4<index_t> os,
                   int64_t items, index_t C, Indexer idx, elements::AxisTaps<acc_t> rows, elements::AxisTaps<acc_t> cols) {
  using loop = loop_t<index_t>;
  for (loop t = blockIdx.x * static_cast<loop>(blockDim.x) + threadIdx.x; t < static_cast<loop>(items);
       t += static_cast<loop>(gridDim.x) * blockDim.x) {
    const index_t ti = static_cast<index_t>(t);
    elements::dynopool_forward_item<Lanes, VectorIO, scalar_t, acc_t, index_t>(ti, idx(ti), C, x, xs, out, os, rows, cols);
  }
}

// The row form of the forward (experimental, KernelForms::forward = rows; dynopool_elements.h
// dynopool_forward_row_item): work item t is kRowCells adjacent cells of one
// output row, idx enumerating (n, c, h, column group) in NCHW order. Launch
// bounds: at least 3 blocks per SM (at most 80 registers), room for more of the
// cells' loads in flight than the one-cell kernel's 40 registers hold (at 64, the
// 16-bit types' scalar-store form spilled); float64 2.
template <bool VectorIO, typename scalar_t, typename acc_t, typename index_t, typename Indexer>
__global__ void __launch_bounds__(kThreads, sizeof(scalar_t) <= 4 ? 3 : 2)
    forward_rows_kernel(const scalar_t* __restrict__ x, Strides4<index_t> xs, scalar_t* __restrict__ out, Strides4<index_t> os,
                        int64_t items, index_t Wo, Indexer idx, elements::AxisTaps<acc_t> rows,
                        elements::AxisTaps<acc_t> cols) {
  using loop = loop_t<index_t>;
  for (loop t = blockIdx.x * static_cast<loop>(blockDim.x) + threadIdx.x; t < static_cast<loop>(items);
       t += static_cast<loop>(gridDim.x) * blockDim.x) {
    elements::dynopool_forward_row_item<VectorIO, scalar_t, acc_t, index_t>(idx(static_cast<index_t>(t)), Wo, x, xs, out, os,
                                                                    rows, cols);
  }
}

// The row form's kernel for one dtype, with the vector store where `vec`
// (dynopool_rows_vectorizable: 2- and 4-byte types only, so that no copy with it
// is compiled for double; in a template, the discarded branch is not instantiated).
template <typename scalar_t, typename acc_t>
auto forward_rows_kernel_for(bool vec) {
  if constexpr (sizeof(scalar_t) <= 4) {
    if (vec) return &forward_rows_kernel<true, scalar_t, acc_t, int32_t, Indexer32>;
  }
  return &forward_rows_kernel<false, scalar_t, acc_t, int32_t, Indexer32>;
}

// The separable forward (experimental, KernelForms::forward = separable; dynopool_elements.h, "The
// separable forward"): one block per strip of output columns of one plane, blockIdx
// = (plane, strip), down the strip one tile at a time with two barriers per tile
// (after step 1's V; after step 2's cells, before the next tile overwrites V).
// Dynamic shared memory: ForwardTilePlan::smem_bytes. (index_t: int32_t only; the
// form needs the 32-bit index path.)
static_assert(kThreads % elements::kTileGroup == 0 && kThreads % elements::kTileTW == 0,
              "the separable forward's steps split kThreads into groups of columns and into strip columns");

template <typename scalar_t, typename acc_t, typename index_t>
__global__ void __launch_bounds__(kThreads)
    forward_separable_kernel(const scalar_t* __restrict__ x, Strides4<index_t> xs, scalar_t* __restrict__ out,
                             Strides4<index_t> os, elements::ForwardTilePlan plan, index_t C, int32_t Ho, int32_t Wo,
                             elements::AxisTaps<acc_t> rows, elements::AxisTaps<acc_t> cols) {
  static_assert(std::is_same<index_t, int32_t>::value, "the separable forward runs on the 32-bit index path");
  extern __shared__ __align__(16) unsigned char tile_smem[];
  acc_t* s_v = reinterpret_cast<acc_t*>(tile_smem);
  const auto S = elements::dynopool_forward_strip<acc_t, index_t>(static_cast<index_t>(blockIdx.x),
                                                              static_cast<int32_t>(blockIdx.y), plan, C, Wo, cols);
  const auto K = elements::dynopool_forward_strip_column<acc_t, index_t>(threadIdx.x, plan, S, cols);
  for (int32_t i0 = 0; i0 < Ho; i0 += plan.th) {
    const int32_t ni = Ho - i0 < plan.th ? Ho - i0 : plan.th;
    elements::dynopool_separable_rows<false, scalar_t, acc_t, index_t>(threadIdx.x, blockDim.x, S, i0, ni, x, xs, rows,
                                                                    s_v, nullptr);
    __syncthreads();
    elements::dynopool_forward_tile_cells<scalar_t, acc_t, index_t>(threadIdx.x, blockDim.x, plan, S, K, i0, ni, s_v, out,
                                                                 os);
    __syncthreads();
  }
}

// Backward pass 1, per work item (as in the forward): the winners and the
// size-gradient terms, reduced to one (dH, dW) pair per block. With NeedX, the
// winner is either written (argmax, in the output's memory order, for the
// gather pass 2) or, with Scatter (float and double), the cell's gradient is
// added into its winner's taps of grad_x (zeroed, dense strides gxs) with
// atomics, and there is no pass 2.
//
// Launch bounds (blocks of kThreads per SM, at least): ptxas's own choice is
// erratic here. For one lane of a 2- or 4-byte type, 4 (at most 64 registers):
// left to itself ptxas took 48 and spilled a register of the scatter form inside
// the loop. Otherwise 2 (at most 128): float64 needs more than 64, the lanes form
// about 100-125, and with no bound ptxas took up to 164 (one block per SM).
template <int Lanes, typename scalar_t>
constexpr int cells_min_blocks() {
  return (Lanes == 1 && sizeof(scalar_t) <= 4) ? 4 : 2;
}

template <int Lanes, bool VectorIO, bool NeedX, bool NeedSize, bool Scatter, typename scalar_t, typename acc_t,
          typename index_t, typename Indexer>
__global__ void __launch_bounds__(kThreads, cells_min_blocks<Lanes, scalar_t>())
    backward_cells_kernel(const scalar_t* __restrict__ x, Strides4<index_t> xs, const scalar_t* __restrict__ grad_out,
                          Strides4<index_t> gs, uint8_t* __restrict__ argmax, Strides4<index_t> as, scalar_t* __restrict__ grad_x,
                          Strides4<index_t> gxs, int64_t items, index_t C, Indexer idx, elements::AxisTaps<acc_t> rows,
                          elements::AxisTaps<acc_t> cols, double* __restrict__ partials) {
  double dh_sum = 0.0, dw_sum = 0.0;
  using loop = loop_t<index_t>;
  for (loop t = blockIdx.x * static_cast<loop>(blockDim.x) + threadIdx.x; t < static_cast<loop>(items);
       t += static_cast<loop>(gridDim.x) * blockDim.x) {
    const index_t ti = static_cast<index_t>(t);
    elements::dynopool_backward_item<Lanes, VectorIO, NeedX, NeedSize, Scatter, scalar_t, acc_t, index_t>(
        ti, idx(ti), C, x, xs, grad_out, gs, argmax, as, gxs, rows, cols,
        [grad_x](index_t off, acc_t v) {
          if constexpr (Scatter) atomicAdd(grad_x + off, v);  // float and double only
        },
        &dh_sum, &dw_sum);
  }
  if (NeedSize) {
    block_sum2(&dh_sum, &dw_sum);
    if (threadIdx.x == 0) {
      partials[2 * blockIdx.x] = dh_sum;
      partials[2 * blockIdx.x + 1] = dw_sum;
    }
  }
}

// Backward pass 2, per input pixel (in grad_x's memory order; with lanes, per
// pixel of Lanes channels, always in the loop form: the tiles of 4 lanes need more
// than 128 registers): the gather. One lane keeps ptxas's own register choice (a
// minimum of 0 blocks is no minimum; the tile / loop A/B of docs/PERF_NOTES.md was
// measured so); lanes: at least 2 blocks per SM, as in pass 1.
template <int Lanes, bool VectorIO, bool Tiles, typename scalar_t, typename acc_t, typename index_t, typename Indexer>
__global__ void __launch_bounds__(kThreads, Lanes == 1 ? 0 : 2)
    backward_pixels_kernel(const scalar_t* __restrict__ grad_out, Strides4<index_t> gs, const uint8_t* __restrict__ argmax,
                           Strides4<index_t> as, scalar_t* __restrict__ grad_x, Strides4<index_t> gxs, int64_t items, index_t C,
                           Indexer idx, elements::AxisTaps<acc_t> rows, elements::AxisTaps<acc_t> cols) {
  using loop = loop_t<index_t>;
  for (loop t = blockIdx.x * static_cast<loop>(blockDim.x) + threadIdx.x; t < static_cast<loop>(items);
       t += static_cast<loop>(gridDim.x) * blockDim.x) {
    const index_t ti = static_cast<index_t>(t);
    elements::dynopool_pixel_item<Lanes, VectorIO, Tiles, scalar_t, acc_t, index_t>(ti, idx(ti), C, grad_out, gs, argmax, as,
                                                                        grad_x, gxs, rows, cols);
  }
}

// The fused backward (experimental, KernelForms::grad_x = fused; dynopool_elements.h, "The fused
// backward"): block work item b is one tile of one image's block of cb channels
// (one (n, c) plane for NCHW), taken in a
// grid-stride loop over the tiles (a fixed grid, so that the size-gradient
// partials are summed in a fixed order), with three barriers per tile (after
// phase A and the axis entries, after the row sums B1, after the pixel quads B2), four
// with Separable winners (KernelForms::fused_winners_separable; 32-bit index path
// only: after A1's V and D and the axis entries, then after A2's cells).
// Dynamic shared memory: FusedPlan::smem_bytes (window gradients, the region of
// the row sums and of V and D, winner codes); static: the tile's axis entries.
static_assert(kThreads == elements::kFusedThreads && kThreads % elements::kFusedMaxTW == 0,
              "B1 of the fused backward gives each thread one (tile column, channel)");

// Launch bounds: ptxas's own choice (it takes 54-64 registers, 4 blocks per SM),
// except for float64: at least 2 blocks per SM (at most 128 registers; left to itself
// ptxas took 64 and spilled 8 bytes). At least 6 blocks (40 registers) made the
// separable winners spill 16-40 bytes since B2 takes quads of pixels; before that,
// ptxas took 40 for them in float32 by itself.
// Phase A's lanes form (Lanes > 1: channels_last, KernelForms::lanes = 4): at least 2
// blocks as well (the lanes forms of the forward and of pass 1 took 100-128
// registers).
template <typename scalar_t, int Lanes>
constexpr int fused_min_blocks() {
  return sizeof(scalar_t) == 8 || Lanes > 1 ? 2 : 0;
}

// Blocks: channel blocks (plan.cb_log2 > 0, channels_last); without, the plan's
// channel shifts are the constant 0, so that the NCHW kernels' index arithmetic is
// that of one channel per block (no run-time shifts in phase A's and B1's slots).
template <bool NeedSize, bool Separable, bool Blocks, int Lanes, typename scalar_t, typename acc_t, typename index_t>
__global__ void __launch_bounds__(kThreads, fused_min_blocks<scalar_t, Lanes>())
    backward_fused_kernel(const scalar_t* __restrict__ x, Strides4<index_t> xs, const scalar_t* __restrict__ grad_out,
                          Strides4<index_t> gs, scalar_t* __restrict__ grad_x, Strides4<index_t> gxs, elements::FusedPlan plan_arg,
                          int64_t tiles, index_t C, int32_t H, int32_t W, elements::AxisTaps<acc_t> rows,
                          elements::AxisTaps<acc_t> cols, double* __restrict__ partials) {
  static_assert(!Separable || (!Blocks && std::is_same<index_t, int32_t>::value),
                "separable winners: one channel per block, on the 32-bit path");
  static_assert(Lanes == 1 || (Blocks && std::is_same<index_t, int32_t>::value),
                "phase A's lanes: channel blocks, on the 32-bit path");
  elements::FusedPlan plan = plan_arg;
  if constexpr (!Blocks) {
    plan.cb_log2 = 0;
    plan.lanes_log2 = 0;
  }
  extern __shared__ __align__(16) unsigned char fused_smem[];
  __shared__ elements::FusedAxes<acc_t> axes;
  acc_t* s_g = reinterpret_cast<acc_t*>(fused_smem);
  acc_t* s_rs = s_g + plan.slots_padded();  // (16-byte aligned) also V, then D (phase A, Separable)
  acc_t* s_d = s_rs + plan.v_entries();
  uint8_t* s_arg = reinterpret_cast<uint8_t*>(s_rs + plan.region());
  const int32_t quads = plan.b2_items(), entries = plan.th + plan.tw();
  const int32_t ch = elements::dynopool_fused_channel(threadIdx.x, plan);  // the thread's first channel in phase A
  double dh_sum = 0.0, dw_sum = 0.0;
  using loop = loop_t<index_t>;
  for (loop b = blockIdx.x; b < static_cast<loop>(tiles); b += gridDim.x) {
    const auto T = elements::dynopool_fused_tile<acc_t, index_t>(static_cast<index_t>(b), plan, C, H, W, rows, cols);
    const int32_t ncells = T.nci * T.ncj;
    // The tile's axis entries (read from phase B on, after at least one barrier).
    for (int32_t e = threadIdx.x; e < entries; e += blockDim.x) {
      elements::dynopool_fused_axis_entry<acc_t, index_t>(e, plan, T, rows, cols, &axes);
    }
    if constexpr (Separable) {
      const auto S = elements::dynopool_fused_strip<acc_t, index_t>(T, plan, cols);
      elements::dynopool_separable_rows<NeedSize, scalar_t, acc_t, index_t>(threadIdx.x, blockDim.x, S, T.ci, T.nci, x, xs,
                                                                        rows, s_rs, s_d);
      __syncthreads();
      for (auto w = elements::dynopool_fused_cursor(threadIdx.x, blockDim.x, plan, T.ncj); w.k < ncells; w.advance()) {
        elements::dynopool_fused_cell_separable<NeedSize, scalar_t, acc_t, index_t>(w, T, S, s_rs, s_d, grad_out, gs, rows,
                                                                                cols, s_g, s_arg, &dh_sum, &dw_sum);
      }
    } else {
      for (auto w = elements::dynopool_fused_cursor(threadIdx.x, blockDim.x, plan, T.ncj); w.k < ncells; w.advance()) {
        elements::dynopool_fused_cell<Lanes, NeedSize, scalar_t, acc_t, index_t>(w, plan.cb_log2, ch, T, x, xs, grad_out,
                                                                              gs, rows, cols, s_g, s_arg, &dh_sum,
                                                                              &dw_sum);
      }
    }
    __syncthreads();
    elements::dynopool_fused_row_sums<acc_t, index_t>(threadIdx.x, blockDim.x, plan, T, cols, axes, s_g, s_arg, s_rs);
    __syncthreads();
    for (int32_t p = threadIdx.x; p < quads; p += blockDim.x) {
      elements::dynopool_fused_quad<scalar_t, acc_t, index_t>(p, plan, T, W, rows, axes, s_rs, grad_x, gxs);
    }
    __syncthreads();  // the next tile overwrites the window
  }
  if (NeedSize) {
    block_sum2(&dh_sum, &dw_sum);
    if (threadIdx.x == 0) {
      partials[2 * blockIdx.x] = dh_sum;
      partials[2 * blockIdx.x + 1] = dw_sum;
    }
  }
}

// ---------------------------------------------------------------------------
// Host side
// ---------------------------------------------------------------------------


void check_axis_sizes(const at::Tensor& x, int64_t out_h, int64_t out_w) {
  // The axis tables are 32-bit (2 * out and 2 * in entries per axis).
  constexpr int64_t kMax = int64_t{1} << 30;
  TORCH_CHECK(out_h < kMax && out_w < kMax && x.size(2) < kMax && x.size(3) < kMax,
              "resizeops_ext::dynopool2d (CUDA): spatial sizes must be below 2^30, got input ", x.sizes(),
              " and output (", out_h, ", ", out_w, ")");
}

// The axis tables of one call (ranges only for the backward's gather), filled
// on the stream; rows / cols view the two buffers, which live as long as this.
template <typename acc_t>
struct DeviceTables {
  at::Tensor accb, intb;
  elements::AxisTaps<acc_t> rows, cols;
  DeviceTables(const elements::TableLayout& layout, const at::Tensor& like, bool ranges, cudaStream_t stream)
      : accb(at::empty({layout.acc_size()}, like.options().dtype(c10::CppTypeToScalarType<acc_t>::value))),
        intb(at::empty({layout.int_size()}, like.options().dtype(at::kInt))) {
    const int64_t total = layout.entries(ranges);
    table_kernel<acc_t><<<grid_for(total), kThreads, 0, stream>>>(layout, accb.mutable_data_ptr<acc_t>(),
                                                                  intb.mutable_data_ptr<int32_t>(), ranges);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    rows = elements::rows_of<acc_t>(layout, accb.const_data_ptr<acc_t>(), intb.const_data_ptr<int32_t>());
    cols = elements::cols_of<acc_t>(layout, accb.const_data_ptr<acc_t>(), intb.const_data_ptr<int32_t>());
  }
};

at::Tensor dynopool2d_forward_cuda(const at::Tensor& x, int64_t out_h, int64_t out_w, bool channels_last,
                                   c10::IntArrayRef forms_arg) {
  const KernelForms forms = KernelForms::decode(forms_arg);
  check_dynopool_args(x, out_h, out_w);
  check_axis_sizes(x, out_h, out_w);
  TORCH_CHECK(x.is_cuda(), "resizeops_ext::dynopool2d_forward (CUDA): x must be a CUDA tensor");
  const c10::cuda::CUDAGuard device_guard(x.device());
  const auto fmt = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  at::Tensor out = at::empty({N, C, out_h, out_w}, x.options().memory_format(fmt));
  const int64_t total = out.numel();
  if (total == 0) return out;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const elements::TableLayout layout{out_h, out_w, H, W};
  // Index width, lanes (items: cells of Lanes channels) and form (tensor_index.h).
  const auto launch = dynopool_forward_launch(forms, x, out_h, out_w, channels_last);
  const bool use32 = launch.use32;
  const int lanes = launch.lanes;
  const auto form = launch.form;
  const auto& plan = launch.plan;
  const int64_t groups = (C + lanes - 1) / lanes;
  const int64_t items = N * groups * out_h * out_w;
  const bool vec = lanes_vectorizable(x, lanes) && lanes_vectorizable(out, lanes);

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "dynopool2d_forward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const DeviceTables<acc_t> tab(layout, x, false, stream);
    const auto &rows = tab.rows, &cols = tab.cols;
    if (form == DynopoolForward::kSeparable) {  // the separable form (kernel_forms.h)
      // One block per strip: planes (N * C < 2^31 on the 32-bit path) x strips (at
      // most 65535: the plan).
      const dim3 grid(static_cast<unsigned>(N * C), static_cast<unsigned>(plan.tiles_w));
      const size_t smem = static_cast<size_t>(plan.smem_bytes(sizeof(acc_t)));
      TORCH_INTERNAL_ASSERT(smem <= 48 * 1024, "dynopool2d separable forward: ", smem, " bytes of shared memory");
      forward_separable_kernel<scalar_t, acc_t, int32_t><<<grid, kThreads, smem, stream>>>(
          x.const_data_ptr<scalar_t>(), strides_of<int32_t>(x), out.mutable_data_ptr<scalar_t>(),
          strides_of<int32_t>(out), plan, static_cast<int32_t>(C), static_cast<int32_t>(out_h),
          static_cast<int32_t>(out_w), rows, cols);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      return;
    }
    if (form == DynopoolForward::kRows) {  // the row form (kernel_forms.h)
      const int64_t groups_w = (out_w + elements::kRowCells - 1) / elements::kRowCells;
      const int64_t row_items = N * C * out_h * groups_w;
      const Indexer32 idx(C, out_h, groups_w, false);
      auto* kernel = forward_rows_kernel_for<scalar_t, acc_t>(dynopool_rows_vectorizable(out));
      kernel<<<grid_for(row_items), kThreads, 0, stream>>>(x.const_data_ptr<scalar_t>(), strides_of<int32_t>(x),
                                                            out.mutable_data_ptr<scalar_t>(), strides_of<int32_t>(out),
                                                            row_items, static_cast<int32_t>(out_w), idx, rows, cols);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      return;
    }
    with_indexing(use32, groups, out_h, out_w, channels_last, [&](auto zero, auto idx) {
      using index_t = decltype(zero);
      with_lanes<scalar_t, std::is_same<index_t, int32_t>::value>(lanes, vec, [&](auto lanes_c, auto vec_c) {
        constexpr int kL = decltype(lanes_c)::value;
        constexpr bool kVec = decltype(vec_c)::value;
        forward_kernel<kL, kVec, scalar_t, acc_t, index_t, decltype(idx)><<<grid_for(items), kThreads, 0, stream>>>(
            x.const_data_ptr<scalar_t>(), strides_of<index_t>(x), out.mutable_data_ptr<scalar_t>(),
            strides_of<index_t>(out), items, static_cast<index_t>(C), idx, rows, cols);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    });
  });
  return out;
}

// The arguments of one backward pass 1 launch that do not depend on its template flags.
template <typename acc_t, typename index_t, typename Indexer>
struct CellsLaunch {
  const at::Tensor &x, &grad_out, &argmax, &grad_x, &partials;
  bool channels_last;
  int64_t items, blocks;
  index_t C;
  Indexer idx;
  elements::AxisTaps<acc_t> rows, cols;
  cudaStream_t stream;
};

template <int Lanes, bool VectorIO, bool NeedX, bool NeedSize, bool Scatter, typename scalar_t, typename acc_t,
          typename index_t, typename Indexer>
void launch_backward_cells(const CellsLaunch<acc_t, index_t, Indexer>& a) {
  const bool scatter = NeedX && Scatter;
  const bool gather = NeedX && !Scatter;
  // Non-dependent names for the tensors (a's members would need `.template`).
  const at::Tensor &x = a.x, &grad_out = a.grad_out, &argmax = a.argmax, &grad_x = a.grad_x, &partials = a.partials;
  const int64_t C = x.size(1), H = x.size(2), W = x.size(3);
  backward_cells_kernel<Lanes, VectorIO, NeedX, NeedSize, Scatter, scalar_t, acc_t, index_t, Indexer>
      <<<a.blocks, kThreads, 0, a.stream>>>(
          x.const_data_ptr<scalar_t>(), strides_of<index_t>(x), grad_out.const_data_ptr<scalar_t>(),
          strides_of<index_t>(grad_out), gather ? argmax.mutable_data_ptr<uint8_t>() : nullptr,
          dense_strides<index_t>(C, grad_out.size(2), grad_out.size(3), a.channels_last),
          scatter ? grad_x.mutable_data_ptr<scalar_t>() : nullptr,
          dense_strides<index_t>(C, H, W, a.channels_last), a.items, a.C, a.idx, a.rows, a.cols,
          NeedSize ? partials.mutable_data_ptr<double>() : nullptr);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// The backward_cells launch for (need_x, need_size, scatter); scatter only for
// float and double (atomicAdd), KernelForms::dynopool_grad_x.
template <int Lanes, bool VectorIO, typename scalar_t, typename acc_t, typename index_t, typename Indexer>
void launch_backward_cells_for(bool need_x, bool need_size, bool scatter, const CellsLaunch<acc_t, index_t, Indexer>& a) {
  constexpr bool kAtomics = std::is_same<scalar_t, float>::value || std::is_same<scalar_t, double>::value;
  if constexpr (kAtomics) {
    if (need_x && scatter) {
      if (need_size) {
        launch_backward_cells<Lanes, VectorIO, true, true, true, scalar_t>(a);
      } else {
        launch_backward_cells<Lanes, VectorIO, true, false, true, scalar_t>(a);
      }
      return;
    }
  }
  TORCH_INTERNAL_ASSERT(!(need_x && scatter), "dynopool2d_backward (CUDA): no scatter for 16-bit types");
  if (need_x && need_size) {
    launch_backward_cells<Lanes, VectorIO, true, true, false, scalar_t>(a);
  } else if (need_x) {
    launch_backward_cells<Lanes, VectorIO, true, false, false, scalar_t>(a);
  } else {
    launch_backward_cells<Lanes, VectorIO, false, true, false, scalar_t>(a);
  }
}

// The fused backward (one kernel, then the partials' sum): grad_x needed (NCHW or
// channels_last), plan from elements::dynopool_fused_plan.
std::tuple<at::Tensor, at::Tensor> backward_fused_cuda(const at::Tensor& grad_out, const at::Tensor& x, int64_t out_h,
                                                       int64_t out_w, bool channels_last, bool need_size,
                                                       const elements::FusedPlan& plan, const KernelForms& forms) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const auto fmt = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  at::Tensor grad_x = at::empty(x.sizes(), x.options().memory_format(fmt));
  at::Tensor grad_size = at::zeros({2}, x.options().dtype(at::kDouble));
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const elements::TableLayout layout{out_h, out_w, H, W};
  const bool use32 = dynopool_fused_use32(forms, grad_out, x);
  const int64_t tiles = N * (C >> plan.cb_log2) * plan.tiles_h * plan.tiles_w;
  // A fixed grid (several blocks per SM), each block looping over tiles.
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(tiles, sms * 16));
  at::Tensor partials = need_size ? at::empty({2 * blocks}, x.options().dtype(at::kDouble)) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "dynopool2d_backward_fused_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const size_t smem = static_cast<size_t>(plan.smem_bytes(sizeof(acc_t)));
    // kFusedMaxBytes keeps it, with the static axis entries, below the 48 KiB a
    // launch gets without opting in.
    TORCH_INTERNAL_ASSERT(smem + sizeof(elements::FusedAxes<acc_t>) + 1024 <= 48 * 1024, "dynopool2d fused backward: ",
                          smem, " bytes of shared memory");
    const DeviceTables<acc_t> tab(layout, x, true, stream);
    const auto &rows = tab.rows, &cols = tab.cols;
    with_index_type(use32, [&](auto zero) {
      using index_t = decltype(zero);
      // <Separable, Blocks, Lanes> (NeedSize from need_size).
      const auto pick = [need_size](auto separable, auto blocks, auto lanes) {
        constexpr bool S = decltype(separable)::value, B = decltype(blocks)::value;
        constexpr int Lanes = decltype(lanes)::value;
        return need_size ? backward_fused_kernel<true, S, B, Lanes, scalar_t, acc_t, index_t>
                         : backward_fused_kernel<false, S, B, Lanes, scalar_t, acc_t, index_t>;
      };
      using no = std::false_type;
      using yes = std::true_type;
      using one = std::integral_constant<int, 1>;
      constexpr bool k32 = std::is_same<index_t, int32_t>::value;
      auto* kernel = pick(no{}, no{}, one{});
      if (plan.cb_log2 > 0) {  // channel blocks, one channel or (32-bit path) phase A's lanes per thread
        with_lanes<scalar_t, k32>(1 << plan.lanes_log2, true,
                                  [&](auto lanes, auto) { kernel = pick(no{}, yes{}, lanes); });
      } else if constexpr (k32) {
        if (plan.vcols > 0) kernel = pick(yes{}, no{}, one{});  // separable winners (32-bit only)
      }
      TORCH_INTERNAL_ASSERT(plan.vcols == 0 || use32,
                            "dynopool2d fused backward: separable winners off the 32-bit path");
      kernel<<<blocks, kThreads, smem, stream>>>(
          x.const_data_ptr<scalar_t>(), strides_of<index_t>(x), grad_out.const_data_ptr<scalar_t>(),
          strides_of<index_t>(grad_out), grad_x.mutable_data_ptr<scalar_t>(),
          dense_strides<index_t>(C, H, W, channels_last),
          plan, tiles, static_cast<index_t>(C), static_cast<int32_t>(H), static_cast<int32_t>(W), rows, cols,
          need_size ? partials.mutable_data_ptr<double>() : nullptr);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    if (need_size) launch_reduce_partials(partials, blocks, grad_size, stream);
  });
  return {grad_x, grad_size};
}

std::tuple<at::Tensor, at::Tensor> dynopool2d_backward_cuda(const at::Tensor& grad_out, const at::Tensor& x,
                                                            int64_t out_h, int64_t out_w, bool channels_last,
                                                            bool need_x, bool need_size, c10::IntArrayRef forms_arg) {
  const KernelForms forms = KernelForms::decode(forms_arg);
  check_dynopool_args(x, out_h, out_w);
  check_dynopool_grad(grad_out, x, out_h, out_w);
  check_axis_sizes(x, out_h, out_w);
  TORCH_CHECK(x.is_cuda(), "resizeops_ext::dynopool2d_backward (CUDA): x must be a CUDA tensor");
  const c10::cuda::CUDAGuard device_guard(x.device());
  const auto fmt = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  // Scatter, gather or fused (kernel_forms.h): the scatter adds into a zeroed grad_x
  // and needs no argmax; the fused form needs a tiling that fits.
  elements::FusedPlan plan{};
  const auto form = dynopool_backward_form(forms, grad_out, x, out_h, out_w, channels_last, need_x, &plan);
  if (form == DynopoolGradX::kFused) {
    return backward_fused_cuda(grad_out, x, out_h, out_w, channels_last, need_size, plan, forms);
  }
  const bool scatter = need_x && form == DynopoolGradX::kScatter;
  // (at::zeros would drop the memory format: empty, then zero_.)
  at::Tensor grad_x = need_x ? at::empty(x.sizes(), x.options().memory_format(fmt)) : at::empty({0}, x.options());
  if (scatter) grad_x.zero_();
  at::Tensor grad_size = at::zeros({2}, x.options().dtype(at::kDouble));
  if (x.numel() == 0 || (!need_x && !need_size)) return {grad_x, grad_size};

  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const elements::TableLayout layout{out_h, out_w, H, W};
  at::Tensor argmax = (need_x && !scatter)
                         ? at::empty({N, C, out_h, out_w}, x.options().dtype(at::kByte).memory_format(fmt))
                         : at::Tensor();
  const int64_t cells_total = grad_out.numel();
  // One index width for both passes: every tensor they touch must fit.
  const bool use32 = use_int32_indexing(forms, {cells_total, x.numel(), extent(x), extent(grad_out), grad_x.numel()});
  // Pass 1's lanes form (kernel_forms.h) on the 32-bit path; items: cells of Lanes channels.
  const int lanes = use32 ? forms.dynopool_lanes(x.scalar_type()) : 1;
  const int64_t groups = (C + lanes - 1) / lanes;
  const int64_t items = N * groups * out_h * out_w;
  const bool vec = lanes_vectorizable(x, lanes) && lanes_vectorizable(grad_out, lanes);
  const int64_t blocks = grid_for(items);
  at::Tensor partials = need_size ? at::empty({2 * blocks}, x.options().dtype(at::kDouble)) : at::Tensor();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "dynopool2d_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const DeviceTables<acc_t> tab(layout, x, need_x && !scatter, stream);
    const auto &rows = tab.rows, &cols = tab.cols;
    with_indexing(use32, groups, out_h, out_w, channels_last, [&](auto zero, auto idx) {
      using index_t = decltype(zero);
      using I = decltype(idx);
      const CellsLaunch<acc_t, index_t, I> a{x,    grad_out, argmax, grad_x, partials, channels_last,
                                             items, blocks,  static_cast<index_t>(C), idx, rows, cols, stream};
      with_lanes<scalar_t, std::is_same<index_t, int32_t>::value>(lanes, vec, [&](auto lanes_c, auto vec_c) {
        launch_backward_cells_for<decltype(lanes_c)::value, decltype(vec_c)::value, scalar_t>(need_x, need_size,
                                                                                              scatter, a);
      });
    });
    if (need_size) {
      launch_reduce_partials(partials, blocks, grad_size, stream);
    }
    if (need_x && !scatter) {
      // Pass 2 in the same lanes form, over grad_x's pixels.
      const int64_t pixel_items = N * groups * H * W;
      const bool tiles = lanes == 1 && forms.dynopool_gather_tiles<scalar_t>();
      const bool vec2 = lanes_vectorizable(grad_out, lanes) && lanes_vectorizable(argmax, lanes) &&
                        lanes_vectorizable(grad_x, lanes);
      with_indexing(use32, groups, H, W, channels_last, [&](auto zero, auto idx) {
        using index_t = decltype(zero);
        using I = decltype(idx);
        with_lanes<scalar_t, std::is_same<index_t, int32_t>::value>(lanes, vec2, [&](auto lanes_c, auto vec_c) {
          constexpr int kL = decltype(lanes_c)::value;
          constexpr bool kVec = decltype(vec_c)::value;
          // (tiles implies one lane; Tiles = kL == 1 keeps lanes from instantiating tiles.)
          auto* kernel = tiles ? backward_pixels_kernel<kL, kVec, kL == 1, scalar_t, acc_t, index_t, I>
                               : backward_pixels_kernel<kL, kVec, false, scalar_t, acc_t, index_t, I>;
          kernel<<<grid_for(pixel_items), kThreads, 0, stream>>>(
              grad_out.const_data_ptr<scalar_t>(), strides_of<index_t>(grad_out), argmax.const_data_ptr<uint8_t>(),
              dense_strides<index_t>(C, out_h, out_w, channels_last), grad_x.mutable_data_ptr<scalar_t>(),
              dense_strides<index_t>(C, H, W, channels_last), pixel_items, static_cast<index_t>(C), idx, rows, cols);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
      });
    }
  });
  return {grad_x, grad_size};
}

}  // namespace
}  // namespace resizeops

TORCH_LIBRARY_IMPL(resizeops_ext, CUDA, m) {
  m.impl("dynopool2d_forward", &resizeops::dynopool2d_forward_cuda);
  m.impl("dynopool2d_backward", &resizeops::dynopool2d_backward_cuda);
}
