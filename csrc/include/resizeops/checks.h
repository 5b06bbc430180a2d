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
#include <cstdio>
#include <cstdlib>
#include <cstring>
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

// Test hook: RESIZEOPS_FORCE_INT64_INDEXING=1 makes the kernels that pick 32-bit
// indexing for small tensors take their 64-bit path anyway, so that the tests
// exercise it without tensors of 2^31 elements. Read per call (cheap next to a
// kernel launch), so a test can set it with monkeypatch.
inline bool force_int64_indexing() {
  const char* v = std::getenv("RESIZEOPS_FORCE_INT64_INDEXING");
  if (v == nullptr || v[0] == '\0' || std::strcmp(v, "0") == 0) return false;
  TORCH_CHECK(std::strcmp(v, "1") == 0, "RESIZEOPS_FORCE_INT64_INDEXING must be '0' or '1', got '", v, "'");
  return true;
}

// Which form the CUDA gathers (DynOPool's and the blend kernels', and their
// serial emulations) take: the loop form for every pixel, or fixed-size tiles
// where they fit (docs/PERF_NOTES.md). RESIZEOPS_CUDA_GATHER=tile / loop forces
// one; unset, each kernel passes its measured default (H200, ImageNet-VGG
// cases, 2026-11-27): the blend and fused-cell gathers loop (tiles were 30-40%
// slower), DynOPool's takes tiles for 4- and 8-byte types (5-14% faster) and
// loops for 2-byte ones (tiles 9-13% slower). Read per call, for A/B timing in
// one process and for the tests.
inline bool cuda_gather_tiles(bool by_default) {
  const char* v = std::getenv("RESIZEOPS_CUDA_GATHER");
  if (v == nullptr || v[0] == '\0') return by_default;
  if (std::strcmp(v, "tile") == 0) return true;
  TORCH_CHECK(std::strcmp(v, "loop") == 0, "RESIZEOPS_CUDA_GATHER must be 'tile' or 'loop', got '", v, "'");
  return false;
}
template <typename scalar_t>
inline bool dynopool_gather_tiles() {
  return cuda_gather_tiles(sizeof(scalar_t) >= 4);
}
inline bool blend_gather_tiles() { return cuda_gather_tiles(false); }

// How DynOPool's CUDA backward (and its serial emulation) computes grad_x:
// - "gather": pass 1 stores each output cell's winner (1 byte), pass 2 has each
//   input pixel sum the winning queries that read it (a fixed order,
//   deterministic);
// - "scatter": each output cell adds its gradient into its winner's 4 taps with
//   atomics, in the pass that finds the winner (one pass over the outputs
//   instead of two, but the order of the adds is not fixed); float and double
//   only: 16-bit atomics would round every add;
// - "fused" (opt-in until a GPU run times it): one kernel per tile of input
//   pixels finds the winners of the cells that read the tile into shared memory,
//   then gathers from there (dynopool_cells.h, "The fused backward"); every dtype,
//   deterministic, NCHW and channels_last (blocks of 8 or 4 channels where C
//   allows). With grad_x needed and a tiling that fits: the caller says whether it
//   can (fused_possible), else the unset rule applies.
// RESIZEOPS_CUDA_GRAD_X picks one, read per call; unset: scatter for float and
// double, gather for 16-bit types and under torch.use_deterministic_algorithms(True),
// which also turns "scatter" into "gather".
enum class DynopoolGradX { kGather, kScatter, kFused };

inline DynopoolGradX dynopool_grad_x_form(at::ScalarType dtype, bool fused_possible) {
  const char* v = std::getenv("RESIZEOPS_CUDA_GRAD_X");
  const bool set = v != nullptr && v[0] != '\0';
  TORCH_CHECK(!set || std::strcmp(v, "gather") == 0 || std::strcmp(v, "scatter") == 0 || std::strcmp(v, "fused") == 0,
              "RESIZEOPS_CUDA_GRAD_X must be 'gather', 'scatter' or 'fused', got '", v, "'");
  if (set && std::strcmp(v, "fused") == 0 && fused_possible) return DynopoolGradX::kFused;
  if (set && std::strcmp(v, "gather") == 0) return DynopoolGradX::kGather;
  if (dtype != at::kFloat && dtype != at::kDouble) return DynopoolGradX::kGather;
  if (at::globalContext().deterministicAlgorithms()) return DynopoolGradX::kGather;
  return DynopoolGradX::kScatter;
}

// How the fused backward (RESIZEOPS_CUDA_GRAD_X=fused) finds its tile's winners in
// phase A: "cell" (one cell at a time, the forward's cell form) or "separable"
// (dynopool_cells.h dynopool_fused_cell_separable: the vertical interpolations of
// the tile's query rows shared through shared memory, as the separable forward; for
// an NCHW grad_x on the 32-bit index path, where its window fits, else "cell").
// RESIZEOPS_CUDA_FUSED_WINNERS picks one, read per call; unset: cell, until a GPU
// run times it (docs/PERF_NOTES.md, version 8).
inline bool dynopool_fused_winners_separable() {
  const char* v = std::getenv("RESIZEOPS_CUDA_FUSED_WINNERS");
  if (v == nullptr || v[0] == '\0' || std::strcmp(v, "cell") == 0) return false;
  TORCH_CHECK(std::strcmp(v, "separable") == 0, "RESIZEOPS_CUDA_FUSED_WINNERS must be 'cell' or 'separable', got '", v,
              "'");
  return true;
}

// A tile-size test hook: the environment variable `name` = <rows>x<cols> (powers
// of two up to max_th x max_tw) caps a tiled kernel's tiles below its defaults
// (*th, *tw on entry), so that small test images span many tiles and partial
// ones. Read per call.
inline void tile_test_hook(const char* name, int32_t max_th, int32_t max_tw, int32_t* th, int32_t* tw) {
  const char* v = std::getenv(name);
  if (v == nullptr || v[0] == '\0') return;
  int r = 0, c = 0;
  char tail = 0;
  const bool ok = std::sscanf(v, "%dx%d%c", &r, &c, &tail) == 2 && r >= 1 && c >= 1 && r <= max_th && c <= max_tw &&
                  (r & (r - 1)) == 0 && (c & (c - 1)) == 0;
  TORCH_CHECK(ok, name, " must be <rows>x<cols>, powers of two up to ", max_th, "x", max_tw, ", got '", v, "'");
  *th = r;
  *tw = c;
}

// The fused backward's: RESIZEOPS_CUDA_FUSED_TILE (pixels; default 16 x 64).
inline void dynopool_fused_max_tile(int32_t* max_th, int32_t* max_tw) {
  *max_th = 16;
  *max_tw = 64;
  tile_test_hook("RESIZEOPS_CUDA_FUSED_TILE", 16, 64, max_th, max_tw);
}

// The separable forward's: RESIZEOPS_CUDA_FORWARD_TILE (output cells; default 16 x 32).
inline void dynopool_forward_max_tile(int32_t* max_th, int32_t* max_tw) {
  *max_th = 16;
  *max_tw = 32;
  tile_test_hook("RESIZEOPS_CUDA_FORWARD_TILE", 16, 32, max_th, max_tw);
}

// Which form DynOPool's CUDA forward (and its serial emulation) takes for an NCHW
// output with one channel per thread: "cell" (one output cell per thread), "rows"
// (dynopool_cells.h dynopool_forward_row_item: 4 adjacent cells of a row per
// thread, sharing their row table entries and offsets) or "separable" (dynopool_cells.h,
// "The separable forward": one block per tile of cells, the vertical interpolations
// shared through shared memory; where its plan fits, else "cell").
// RESIZEOPS_CUDA_FORWARD picks one, read per call; unset: cell, until a GPU run
// times the others (docs/PERF_NOTES.md, versions 6 and 7). channels_last outputs,
// the lanes form and the 64-bit index path always take the cell form.
enum class DynopoolForward { kCell, kRows, kSeparable };

inline DynopoolForward dynopool_forward_form() {
  const char* v = std::getenv("RESIZEOPS_CUDA_FORWARD");
  if (v == nullptr || v[0] == '\0' || std::strcmp(v, "cell") == 0) return DynopoolForward::kCell;
  if (std::strcmp(v, "rows") == 0) return DynopoolForward::kRows;
  TORCH_CHECK(std::strcmp(v, "separable") == 0,
              "RESIZEOPS_CUDA_FORWARD must be 'cell', 'rows' or 'separable', got '", v, "'");
  return DynopoolForward::kSeparable;
}

// How many channels of one output cell one thread of DynOPool's CUDA forward and
// backward pass 1 (and of their serial emulation) computes: the lanes form of
// dynopool_cells.h (one set of table reads and index arithmetic for L channels,
// L times the loads in flight; channels_last inputs with C % L == 0 and aligned
// strides load the L channels with one vector load). RESIZEOPS_CUDA_LANES=1 or 4
// (4 for 2- and 4-byte types, 2 for float64: at most 16-byte loads); unset: 1,
// until a GPU run measures the lanes form (docs/PERF_NOTES.md, version 5). Read
// per call. The kernels of 64-bit offsets always take one lane. With lanes, the
// gather (pass 2, deterministic mode and 16-bit types) takes the lanes form too,
// always in its loop form (the 3x3 tiles of 4 lanes need more than 128 registers),
// and so does the fused backward's phase A in channels_last where its blocks have at
// least L channels and x and grad_out allow the vector loads (tensor_index.h
// dynopool_backward_form).
inline int dynopool_cuda_lanes(at::ScalarType dtype) {
  const char* v = std::getenv("RESIZEOPS_CUDA_LANES");
  if (v == nullptr || v[0] == '\0' || std::strcmp(v, "1") == 0) return 1;
  TORCH_CHECK(std::strcmp(v, "4") == 0, "RESIZEOPS_CUDA_LANES must be '1' or '4', got '", v, "'");
  return dtype == at::kDouble ? 2 : 4;
}

}  // namespace resizeops
