// The kernel forms of one call of the CUDA kernels (and of their serial CPU
// emulation): which of the equivalent ways to compute an op a launch takes.
//
// Chosen in Python, in one place (resizeops/core/kernel_forms.py: KernelForms
// and the named variants of the backend registry), and passed to every op of
// the compiled extension as its last argument `int[] forms`: empty for the
// defaults, else the fields below in this order. Nothing here reads the
// environment; the defaults are the forms a GPU run measured fastest
// (docs/PERF_NOTES.md, "Kernel forms"). The C++ CPU kernels have one form
// each and ignore the argument.
#pragma once

#include <ATen/Context.h>
#include <c10/core/ScalarType.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Exception.h>

#include <cstdint>

namespace resizeops {

// How DynOPool's CUDA backward computes grad_x:
// - kGather: pass 1 stores each output cell's winner (1 byte), pass 2 has each
//   input pixel sum the winning queries that read it (a fixed order, deterministic);
// - kScatter: each output cell adds its gradient into its winner's 4 taps with
//   atomics, in the pass that finds the winner (one pass over the outputs instead
//   of two, but the order of the adds is not fixed); float and double only:
//   16-bit atomics would round every add;
// - kFused (experimental): one kernel per tile of input pixels finds the winners
//   of the cells that read the tile into shared memory, then gathers from there
//   (dynopool_elements.h, "The fused backward"); every dtype, deterministic.
enum class DynopoolGradX { kGather, kScatter, kFused };

// DynOPool's NCHW CUDA forward: kCell (one output cell per thread), kRows
// (experimental; 4 adjacent cells of a row per thread) or kSeparable
// (experimental; one block per tile of cells, the vertical interpolations shared
// through shared memory).
enum class DynopoolForward { kCell, kRows, kSeparable };

struct KernelForms {
  // The gathers' form (DynOPool's backward pass 2, the blend and Shape Adaptor
  // gathers): 3x3 tiles or a loop for every pixel. Auto: each kernel's measured
  // default (H200, ImageNet-VGG cases): DynOPool's tiles for 4- and 8-byte types
  // (5-14% faster) and loops for 2-byte ones (tiles 9-13% slower); the blend
  // gathers loop (tiles 30-40% slower).
  enum class Gather : int64_t { kAuto = 0, kTile = 1, kLoop = 2 };
  // DynOPool's grad_x. Auto (measured, H200): scatter for float and double
  // (1.85x faster fwd+bwd than the gather in float32), gather for 16-bit types.
  // Under torch.use_deterministic_algorithms(True) every request but kFused
  // gathers; kFused falls back to auto where its tiling does not fit.
  enum class GradX : int64_t { kAuto = 0, kGather = 1, kScatter = 2, kFused = 3 };

  Gather gather = Gather::kAuto;
  GradX grad_x = GradX::kAuto;
  bool fused_winners_separable = false;  // experimental: the fused backward's phase A, separably (NCHW)
  DynopoolForward forward = DynopoolForward::kCell;
  int64_t lanes = 1;  // experimental: 4 channels of a cell per thread (2 in float64)
  // Test hooks: caps on the tiles of the fused backward (default 16 x 64 pixels)
  // and the separable forward (default 16 x 32 cells), powers of two, 0 = the
  // default; and the 64-bit index path on small tensors.
  int32_t fused_tile_h = 0, fused_tile_w = 0;
  int32_t forward_tile_h = 0, forward_tile_w = 0;
  bool force_int64 = false;

  static constexpr int64_t kFields = 10;

  static KernelForms decode(c10::IntArrayRef v) {
    KernelForms f;
    if (v.empty()) return f;
    TORCH_CHECK(static_cast<int64_t>(v.size()) == kFields, "resizeops_ext: forms must have ", kFields,
                " entries (resizeops/core/kernel_forms.py KernelForms.encode), got ", v.size());
    const auto in = [&](int64_t i, int64_t lo, int64_t hi, const char* name) {
      TORCH_CHECK(v[i] >= lo && v[i] <= hi, "resizeops_ext: forms[", i, "] (", name, ") must be in [", lo, ", ", hi,
                  "], got ", v[i]);
      return v[i];
    };
    f.gather = static_cast<Gather>(in(0, 0, 2, "gather"));
    f.grad_x = static_cast<GradX>(in(1, 0, 3, "grad_x"));
    f.fused_winners_separable = in(2, 0, 1, "fused_winners") == 1;
    f.forward = static_cast<DynopoolForward>(in(3, 0, 2, "forward"));
    f.lanes = in(4, 1, 4, "lanes");
    TORCH_CHECK(f.lanes == 1 || f.lanes == 4, "resizeops_ext: forms[4] (lanes) must be 1 or 4, got ", f.lanes);
    f.fused_tile_h = static_cast<int32_t>(in(5, 0, 16, "fused_tile_h"));
    f.fused_tile_w = static_cast<int32_t>(in(6, 0, 64, "fused_tile_w"));
    f.forward_tile_h = static_cast<int32_t>(in(7, 0, 16, "forward_tile_h"));
    f.forward_tile_w = static_cast<int32_t>(in(8, 0, 32, "forward_tile_w"));
    f.force_int64 = in(9, 0, 1, "force_int64") == 1;
    for (int64_t i = 5; i <= 8; ++i) {
      TORCH_CHECK((v[i] & (v[i] - 1)) == 0, "resizeops_ext: forms[", i, "] (a tile cap) must be 0 or a power of two, got ",
                  v[i]);
    }
    return f;
  }

  // Whether the gathers take 3x3 tiles, given the kernel's default.
  bool gather_tiles(bool by_default) const {
    return gather == Gather::kAuto ? by_default : gather == Gather::kTile;
  }
  template <typename scalar_t>
  bool dynopool_gather_tiles() const {
    return gather_tiles(sizeof(scalar_t) >= 4);
  }
  bool blend_gather_tiles() const { return gather_tiles(false); }

  // DynOPool's grad_x form for dtype; fused_possible: the caller has a tiling
  // for the fused form.
  DynopoolGradX dynopool_grad_x(at::ScalarType dtype, bool fused_possible) const {
    if (grad_x == GradX::kFused && fused_possible) return DynopoolGradX::kFused;
    if (grad_x == GradX::kGather) return DynopoolGradX::kGather;
    if (dtype != at::kFloat && dtype != at::kDouble) return DynopoolGradX::kGather;
    if (at::globalContext().deterministicAlgorithms()) return DynopoolGradX::kGather;
    return DynopoolGradX::kScatter;
  }

  // Channels of one output cell per thread of DynOPool's forward and backward
  // pass 1 (the lanes form of dynopool_elements.h): 1, or with lanes = 4, 4 for 2-
  // and 4-byte types and 2 for float64 (at most 16-byte vector loads). The
  // kernels of 64-bit offsets always take one.
  int dynopool_lanes(at::ScalarType dtype) const {
    if (lanes == 1) return 1;
    return dtype == at::kDouble ? 2 : 4;
  }

  // The tile caps of the fused backward (pixels) and of the separable forward
  // (output cells): the defaults, or the test hook's smaller tiles.
  void dynopool_fused_max_tile(int32_t* max_th, int32_t* max_tw) const {
    *max_th = fused_tile_h > 0 ? fused_tile_h : 16;
    *max_tw = fused_tile_w > 0 ? fused_tile_w : 64;
  }
  void dynopool_forward_max_tile(int32_t* max_th, int32_t* max_tw) const {
    *max_th = forward_tile_h > 0 ? forward_tile_h : 16;
    *max_tw = forward_tile_w > 0 ? forward_tile_w : 32;
  }
};

}  // namespace resizeops
