// Per-element math shared by the CPU (csrc/cpu) and CUDA (csrc/cuda) kernels.
//
// The query coordinates, bilinear weights and their derivatives live here, in
// one place (every backend computes the same: docs/SEMANTICS.md, Backends),
// so that the CPU tests exercise exactly the arithmetic the GPU runs.
// Everything is a header-only function template on the accumulation type T
// (float or double). Kernels for half / bfloat16 tensors load their
// inputs, convert them to float (at::opmath_type) and call these with T=float.
//
// This header must stay free of torch / ATen includes: it is compiled by g++
// and by nvcc (host and device passes) alike.
#pragma once

#include <math.h>

#include <cstdint>
#include <type_traits>

#ifdef __CUDACC__
#define RESIZEOPS_HD __host__ __device__ __forceinline__
// Full unrolling of small fixed loops (register arrays must be indexed with
// compile-time constants on the GPU). Host compilers unroll them at -O3 anyway
// and g++ warns about the CUDA pragma, so it is spelled only for nvcc.
#define RESIZEOPS_UNROLL _Pragma("unroll")
#else
#define RESIZEOPS_HD inline
#define RESIZEOPS_UNROLL
#endif

namespace resizeops {
namespace math {

#define RESIZEOPS_CHECK_ACC_TYPE(T)                                          \
  static_assert(std::is_same<T, float>::value ||                             \
                    std::is_same<T, double>::value,                          \
                "resizeops math is templated on the accumulation type: "     \
                "float or double (load half / bfloat16 values as float)")

// floor / isnan spelled out per type: `floor` on a float must not go through
// double on the device, and std:: overloads are host-only on older toolkits.
RESIZEOPS_HD float floor_(float v) { return floorf(v); }
RESIZEOPS_HD double floor_(double v) { return floor(v); }

template <typename T>
RESIZEOPS_HD bool is_nan(T v) {
#ifdef __CUDA_ARCH__
  return ::isnan(v);
#else
  // `v != v` is true exactly for NaN (we never compile with -ffast-math).
  return v != v;
#endif
}

// a * b and a - b, each rounded on its own (round to nearest) on every device.
// nvcc contracts a * b + c into one FMA by default (-fmad=true), which skips the
// product's rounding; in the F.interpolate source index below that moves
// lambda1 = ratio * dst - i0 off an exact 0 (2/3 * 3 - 2 = 6e-8 in float32),
// so an infinite last pixel gives inf instead of the reference's 0 * inf = NaN.
// The __f*_rn / __d*_rn intrinsics are never contracted. On the host: plain
// operators. The CPU kernels build their tap tables (resize_rows.h make_taps)
// in the baseline x86-64 code, which has no FMA instruction to contract into;
// g++ does contract C++ by default where FMA exists (-ffp-contract=fast), so
// keep these out of the AVX2+FMA task copies. T: float or double.
template <typename T>
RESIZEOPS_HD T mul_rn(T a, T b) {
#ifdef __CUDA_ARCH__
  if constexpr (std::is_same<T, float>::value) {
    return __fmul_rn(a, b);
  } else {
    return __dmul_rn(a, b);
  }
#else
  return a * b;
#endif
}
template <typename T>
RESIZEOPS_HD T sub_rn(T a, T b) {
#ifdef __CUDA_ARCH__
  if constexpr (std::is_same<T, float>::value) {
    return __fsub_rn(a, b);
  } else {
    return __dsub_rn(a, b);
  }
#else
  return a - b;
#endif
}

// ---------------------------------------------------------------------------
// DynOPool (docs/SEMANTICS.md, DynOPool)
// ---------------------------------------------------------------------------

// Source pixel coordinate u of query row j, j in [0, 2*Ho), for the surrogate
// output size size_hat (value Ho, carries the straight-through gradient):
//   y_j = -1 + (2j + 1) / (2 * size_hat)   (normalised, align_corners=False)
//   u   = ((y_j + 1) * in_size - 1) / 2    (grid_sample's unnormalisation)
//       = ((2j + 1) * in_size - 2 * size_hat) / (4 * size_hat),
// computed in that last form: the numerator's terms are integers, exact in T
// below 2^24 (float) or 2^53 (double), so u is one correctly rounded division,
// the same in every backend (the reference, resizeops/core/reference.py
// _query_axis, and Triton compute it alike), and a query that lies on a pixel
// is exactly on it (alpha = 2 on an even size: u_j = j; docs/DESIGN.md,
// "Rounding and ties"). mul_rn / sub_rn: no FMA contraction on the GPU.
template <typename T>
RESIZEOPS_HD T dynopool_query_coord(int64_t j, T size_hat, int64_t in_size) {
  RESIZEOPS_CHECK_ACC_TYPE(T);
  const T num = sub_rn(mul_rn(T(2 * j + 1), T(in_size)), T(2) * size_hat);
  return num / (T(4) * size_hat);
}

// du / d(size_hat) for dynopool_query_coord:
//   dy/d(size_hat) = -(2j+1) / (2 * size_hat^2),  du/dy = in_size / 2
//   => du/d(size_hat) = -(2j+1) * in_size / (4 * size_hat^2).
// Query points move towards the origin as the output grows; the alpha
// gradient is this times dL/du (and times d(size_hat)/d(alpha) = -in/alpha^2).
template <typename T>
RESIZEOPS_HD T dynopool_query_coord_grad(int64_t j, T size_hat,
                                         int64_t in_size) {
  RESIZEOPS_CHECK_ACC_TYPE(T);
  return -T(2 * j + 1) * T(in_size) / (T(4) * size_hat * size_hat);
}

// Border padding: clip u to [0, in_size - 1] and report the clip's derivative
// in *dclip: 1 on [0, in_size - 1), 0 elsewhere. That is the derivative towards
// larger u everywhere, as the interpolation's (x[i0 + 1] - x[i0] with
// i0 = floor(u), also where u is on a pixel): one convention for the kink at
// alpha = 2 on even sizes, where every query sits on a pixel (docs/DESIGN.md,
// "Rounding and ties"). grid_sample(padding_mode="border") differs only at
// u == 0 exactly, where its derivative is 0 (it treats both borders as closed).
// For in_size == 1 every u is clipped to 0 with derivative 0.
template <typename T>
RESIZEOPS_HD T clip_border(T u, int64_t in_size, T* dclip) {
  RESIZEOPS_CHECK_ACC_TYPE(T);
  const T hi = T(in_size - 1);
  if (u < T(0)) {
    *dclip = T(0);
    return T(0);
  }
  if (u >= hi) {
    *dclip = T(0);
    return hi;
  }
  *dclip = T(1);
  return u;
}

// One step of DynOPool's bilinear query along an axis: w0 * a + w1 * b, and
// exactly a where a == b. Every backend interpolates a query this way, first
// along H (each tap column), then along W, so equal pixels give their value at
// any position: an input whose rows or columns repeat (expanded, nearest-
// upsampled, constant) gives bit-identical queries, whose tie max4_first then
// resolves alike everywhere (the first maximum). The gradient is bilinear's
// (w0, w1 to the taps, b - a to the coordinate) also where a == b.
template <typename T>
RESIZEOPS_HD T lerp_tie(T w0, T a, T w1, T b) {
  const T v = w0 * a + w1 * b;
#ifdef __CUDA_ARCH__
  return a == b ? a : v;
#else
  // The same select as a bit mask: the CPU kernels call this in loops over
  // channels that must vectorise, and under GCC's default -ftrapping-math a
  // select between a loaded value and a computed one keeps them scalar (10x
  // slower; resize_rows.h keep_if has the same reason).
  using bits_t = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  bits_t ba, bv;
  __builtin_memcpy(&ba, &a, sizeof ba);
  __builtin_memcpy(&bv, &v, sizeof bv);
  const bits_t same = bits_t(0) - bits_t(a == b);
  ba = (ba & same) | (bv & ~same);
  T r;
  __builtin_memcpy(&r, &ba, sizeof r);
  return r;
#endif
}

// ---------------------------------------------------------------------------
// Bilinear taps (shared by DynOPool and resize_blend)
// ---------------------------------------------------------------------------

// Linear interpolation taps of a coordinate u >= 0 along one axis:
//   sample = w0 * x[i0] + w1 * x[i1],   d sample / du = x[i1] - x[i0].
// i0 = floor(u), i1 = min(i0 + 1, in_size - 1): at the last pixel both taps
// are the same pixel, so the value is exact whatever w1 is and no read goes
// out of bounds (grid_sample instead skips the out-of-bounds tap, whose weight
// is 0 there: same value). i0 is also clamped to in_size - 1, as ATen's
// guard_index_and_lambda does for F.interpolate, so an interpolate source
// index that lands past the last pixel still reads in bounds.
// w0 = 1 - w1 (not (i0 + 1) - u) matches F.interpolate's lambda0 bit for bit;
// it is within one rounding of grid_sample's weight.
template <typename T>
RESIZEOPS_HD void bilinear_taps(T u, int64_t in_size, int64_t* i0,
                                int64_t* i1, T* w0, T* w1) {
  RESIZEOPS_CHECK_ACC_TYPE(T);
  int64_t lo = static_cast<int64_t>(floor_(u));
  if (lo > in_size - 1) lo = in_size - 1;
  if (lo < 0) lo = 0;  // u >= 0 by contract; guards a stray -0.0 / rounding
  *i0 = lo;
  *i1 = (lo + 1 < in_size) ? lo + 1 : in_size - 1;
  *w1 = u - T(lo);
  *w0 = T(1) - *w1;
}

// ---------------------------------------------------------------------------
// F.interpolate(mode="bilinear") source index (docs/SEMANTICS.md, resize_blend)
// ---------------------------------------------------------------------------

// Ratio source/destination of one axis, as ATen's area_pixel_compute_scale
// (aten/src/ATen/native/UpSample.h and cuda/UpSample.cuh) computes it, in the
// accumulation type T:
//   align_corners=True : (in - 1) / (out - 1), 0 when out <= 1. PyTorch
//     ignores scale_factor here, so `out_size` must be the full interpolate
//     output size floor(in * s) even when the caller crops
//     (docs/SEMANTICS.md, resize_blend).
//   align_corners=False: T(1.0 / scale) when a scale > 0 is given (the
//     reciprocal is taken in double, then rounded to T, as ATen does),
//     else T(in) / T(out).
template <typename T>
RESIZEOPS_HD T interp_ratio(int64_t in_size, int64_t out_size,
                            bool align_corners, double scale) {
  RESIZEOPS_CHECK_ACC_TYPE(T);
  if (align_corners) {
    return out_size > 1 ? T(in_size - 1) / T(out_size - 1) : T(0);
  }
  return scale > 0. ? static_cast<T>(1.0 / scale)
                    : static_cast<T>(in_size) / static_cast<T>(out_size);
}

// Source index of destination index dst given the ratio above, as ATen's
// area_pixel_compute_source_index(cubic=false): align_corners=True maps
// dst * ratio; align_corners=False maps pixel centres,
// (dst + 0.5) * ratio - 0.5, clamped below at 0 (OpenCV's rule; for linear
// modes the clamp only matters in the first half pixel).
template <typename T>
RESIZEOPS_HD T interp_source_coord_from_ratio(T ratio, int64_t dst,
                                              bool align_corners) {
  RESIZEOPS_CHECK_ACC_TYPE(T);
  // Products rounded before the subtractions (mul_rn / sub_rn), as ATen's CPU
  // kernel computes them: the same taps and weights on every device.
  if (align_corners) {
    return mul_rn(ratio, T(dst));
  }
  const T src = sub_rn(mul_rn(ratio, T(dst) + T(0.5)), T(0.5));
  return src < T(0) ? T(0) : src;
}

// One-shot form: F.interpolate(mode="bilinear") source coordinate of output
// index dst along an axis of in_size -> out_size. scale <= 0 means "no
// scale_factor given" (as ATen's magic `scale > 0` test). Kernels hoist
// interp_ratio out of their loops; this is the same arithmetic.
template <typename T>
RESIZEOPS_HD T interp_source_coord(int64_t dst, int64_t in_size,
                                   int64_t out_size, bool align_corners,
                                   double scale) {
  return interp_source_coord_from_ratio<T>(
      interp_ratio<T>(in_size, out_size, align_corners, scale), dst,
      align_corners);
}

// Taps of F.interpolate(mode="bilinear") at source coordinate src (>= 0), as
// ATen's guard_index_and_lambda and compute_indices_weights_linear compute them
// (found by the Triton blend kernels' tests, triton_kernels/blend.py):
//  - i0 = floorf(src): the coordinate is rounded to float32 before the floor
//    even in double (ATen calls floorf), so src = 1 - 4.5e-9 gives i0 = 1;
//  - lambda1 = src - i0 clamped to [0, 1]; i1 = i0 + 1 unless i0 is the last.
// Unlike bilinear_taps (grid_sample's rules), which DynOPool uses.
template <typename T>
RESIZEOPS_HD void interp_taps(T src, int64_t in_size, int64_t* i0, int64_t* i1, T* w0, T* w1) {
  RESIZEOPS_CHECK_ACC_TYPE(T);
  int64_t lo = static_cast<int64_t>(floorf(static_cast<float>(src)));
  if (lo > in_size - 1) lo = in_size - 1;
  if (lo < 0) lo = 0;
  *i0 = lo;
  *i1 = lo < in_size - 1 ? lo + 1 : lo;
  T l1 = sub_rn(src, T(lo));
  l1 = l1 < T(0) ? T(0) : (l1 > T(1) ? T(1) : l1);
  *w1 = l1;
  *w0 = T(1) - l1;
}

// ---------------------------------------------------------------------------
// 2x2 max with max_pool2d's tie and NaN rules (docs/SEMANTICS.md, DynOPool)
// ---------------------------------------------------------------------------

// Max of the four query values in the order (k,l) = (0,0),(0,1),(1,0),(1,1);
// *argmax receives the winner's position 0..3. The update rule is
// max_pool2d's: `if (v > best || isnan(v))` (ATen's CPU and CUDA kernels), so
//  - ties keep the first maximum (a strict > never replaces an equal value);
//  - any NaN makes the result NaN, and argmax is the LAST NaN in the order
//    (a NaN always replaces the current best, even another NaN), exactly the
//    index max_pool2d reports; the gradient goes there.
template <typename T>
RESIZEOPS_HD T max4_first(T v0, T v1, T v2, T v3, uint8_t* argmax) {
  RESIZEOPS_CHECK_ACC_TYPE(T);
  // Branch-free selects: on random data the comparisons are unpredictable, and
  // mispredicted branches cost more than the whole bilinear arithmetic.
  T best = v0;
  uint8_t idx = 0;
  bool take = (v1 > best) | is_nan(v1);
  best = take ? v1 : best;
  idx = take ? uint8_t(1) : idx;
  take = (v2 > best) | is_nan(v2);
  best = take ? v2 : best;
  idx = take ? uint8_t(2) : idx;
  take = (v3 > best) | is_nan(v3);
  best = take ? v3 : best;
  idx = take ? uint8_t(3) : idx;
  *argmax = idx;
  return best;
}

#undef RESIZEOPS_CHECK_ACC_TYPE

}  // namespace math
}  // namespace resizeops
