// Row-wise bilinear resize (F.interpolate rules) of a block of channels, shared
// by the C++ CPU kernels of resize_blend (csrc/cpu/resize_blend.cpp) and of
// the Shape Adaptor max-pool op (csrc/cpu/shape_adaptor_maxpool.cpp).
//
// A task is (image n, block of up to kChannelBlock channels); rows live in
// [w][c] buffers of the accumulation type, channels innermost, so the inner
// loops vectorise over channels whatever the tensor's layout. The forward
// computes an output row separably (vertical interpolation of the two input
// rows it reads, then horizontal); the backward sweeps grad_out's rows in order
// and builds the transpose an input row at a time in a small ring of rows
// (RowRing below), handing each row to the kernel once it is complete (no
// atomics, no gradient slice of the whole input).
#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "resizeops/math.h"

#if defined(__SSE2__)
#include <xmmintrin.h>
#endif

namespace resizeops {
namespace cpu {

constexpr int64_t kChannelBlock = 16;

// The (a, b) pairs of per-task partial sums added in task order: the same result
// whatever the thread count (the kernels' deterministic weight gradients).
inline std::pair<double, double> sum_task_partials(const std::vector<double>& partials) {
  double a = 0.0, b = 0.0;
  for (size_t t = 0; t + 1 < partials.size(); t += 2) {
    a += partials[t];
    b += partials[t + 1];
  }
  return {a, b};
}

// Instruction sets. The extension is built for baseline x86-64 (SSE2, no
// -march), so one wheel runs on any x86-64 CPU; the eager ops it is measured
// against run AVX2 kernels. So the kernels run their tasks through
// parallel_tasks: on x86-64 with GCC or Clang, the task function is compiled a
// second time, inlined (flatten) into run_tasks_avx2 with target("avx2,fma")
// -- every helper of this header it calls is inlined there and vectorised for
// 256-bit registers, a*b+c contracted to FMA -- and the CPU's support,
// checked once per process, picks that copy or the baseline one. The choice is
// fixed per machine: results are deterministic run to run, within float
// rounding (FMA) of the baseline copy. RESIZEOPS_CPU_ISA=default forces the
// baseline copy (tests, comparisons); =native (or unset) lets the CPU choose;
// any other value is an error. Other architectures and compilers build
// the baseline copy only.
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define RESIZEOPS_CPU_AVX2_DISPATCH 1

inline bool cpu_has_avx2() {
  static const bool yes = [] {
    __builtin_cpu_init();
    const char* isa = std::getenv("RESIZEOPS_CPU_ISA");
    const bool set = isa != nullptr && isa[0] != '\0';
    TORCH_CHECK(!set || std::strcmp(isa, "default") == 0 || std::strcmp(isa, "native") == 0,
                "RESIZEOPS_CPU_ISA must be 'native' or 'default', got '", isa, "'");
    if (set && std::strcmp(isa, "default") == 0) return false;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return yes;
}

template <typename F>
__attribute__((target("avx2,fma"), flatten)) void run_tasks_avx2(const F& f, int64_t begin, int64_t end) {
  f(begin, end);
}
#else
inline bool cpu_has_avx2() { return false; }
#endif

// at::parallel_for over [0, tasks), one task at a time at least, each chunk
// f(begin, end) run by the copy of f for this CPU (above).
template <typename F>
void parallel_tasks(int64_t tasks, const F& f) {
  // Read here, not in the workers: a bad RESIZEOPS_CPU_ISA fails on the caller's thread.
  [[maybe_unused]] const bool avx2 = cpu_has_avx2();
  at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
#if defined(RESIZEOPS_CPU_AVX2_DISPATCH)
    if (avx2) return run_tasks_avx2(f, begin, end);
#endif
    f(begin, end);
  });
}

// A full block of channels as kVecs 32-byte GCC/Clang vector values (one
// 256-bit register each in the AVX2 copy of the tasks, a pair of SSE registers
// in the baseline one), for loops whose running sums must stay in registers.
// Loads and stores through memcpy (unaligned) and by reference (no vector
// passes a function's ABI).
#if defined(__GNUC__)
#define RESIZEOPS_CPU_BLOCK_VECTORS 1
template <typename T>
struct BlockVec {
  typedef T V __attribute__((vector_size(32)));
  static constexpr int kLanes = 32 / sizeof(T);
  static constexpr int kVecs = kChannelBlock / kLanes;
  V v[kVecs];

  void zero() {
    for (int q = 0; q < kVecs; ++q) v[q] = V{};
  }
  // One vector at a time (a memcpy of the whole array would take its
  // address and keep it in memory).
  static void at(V& t, const T* p, int q) { std::memcpy(&t, p + q * kLanes, sizeof t); }
  void load(const T* p) {
    for (int q = 0; q < kVecs; ++q) at(v[q], p, q);
  }
  void store(T* p) const {
    for (int q = 0; q < kVecs; ++q) {
      const V t = v[q];
      std::memcpy(p + q * kLanes, &t, sizeof t);
    }
  }
  // this += a * x[0, kChannelBlock)
  void fma(T a, const T* x) {
    for (int q = 0; q < kVecs; ++q) {
      V t;
      at(t, x, q);
      v[q] += a * t;
    }
  }
};
#endif

// f(cb) with cb a literal kChannelBlock for a full block of channels, else
// cb as given: the task bodies inline every row helper (parallel_tasks), so a
// full block's copy gets constant-length channel loops, unrolled into whole
// vector registers instead of a short loop with a remainder per pixel.
template <typename F>
inline void with_block(int64_t cb, const F& f) {
  if (cb == kChannelBlock) {
    f(kChannelBlock);
  } else {
    f(cb);
  }
}

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

// The transpose of one axis's taps: for each input index w, the output
// indices that read it and their weights, in the order a scatter over the
// outputs in ascending order adds them (tap 0 of an output before its tap 1).
template <typename acc_t>
struct TapsT {
  std::vector<int64_t> off;  // input w's entries: [off[w], off[w + 1])
  std::vector<int64_t> j;
  std::vector<acc_t> wt;
};

template <typename acc_t>
TapsT<acc_t> transpose_taps(const Taps<acc_t>& t, int64_t in_size) {
  const int64_t out = static_cast<int64_t>(t.i0.size());
  TapsT<acc_t> r;
  r.off.assign(in_size + 1, 0);
  for (int64_t j = 0; j < out; ++j) {
    ++r.off[t.i0[j] + 1];
    ++r.off[t.i1[j] + 1];
  }
  for (int64_t w = 0; w < in_size; ++w) r.off[w + 1] += r.off[w];
  r.j.resize(2 * out);
  r.wt.resize(2 * out);
  std::vector<int64_t> at(r.off.begin(), r.off.end() - 1);
  for (int64_t j = 0; j < out; ++j) {
    const int64_t k0 = at[t.i0[j]]++;
    r.j[k0] = j, r.wt[k0] = t.w0[j];
    const int64_t k1 = at[t.i1[j]]++;
    r.j[k1] = j, r.wt[k1] = t.w1[j];
  }
  return r;
}

// The resize of an H x W input to the output size: whether it passes through
// unchanged and (otherwise) its taps, and the column taps transposed (for the
// backward's gathers).
template <typename acc_t>
struct Resize {
  int64_t H, W;
  bool pass;
  Taps<acc_t> rows, cols;
  TapsT<acc_t> cols_t;
};

template <typename acc_t>
Resize<acc_t> make_resize(int64_t H, int64_t W, int64_t Ho, int64_t Wo, bool align_corners, const ScaleArg& scale) {
  Resize<acc_t> r;
  r.H = H, r.W = W;
  r.pass = !scale.has_value() && H == Ho && W == Wo;
  if (!r.pass) {
    std::optional<double> sh, sw;
    if (scale.has_value()) {
      sh = (*scale)[0];
      sw = (*scale)[1];
    }
    r.rows = make_taps<acc_t>(H, Ho, align_corners, sh);
    r.cols = make_taps<acc_t>(W, Wo, align_corners, sw);
    r.cols_t = transpose_taps(r.cols, W);
    // What the backward's row sweep (below) relies on: i0 never decreases,
    // and i1 is i0 or the row below it.
    for (int64_t i = 0; i < Ho; ++i) {
      TORCH_INTERNAL_ASSERT(i == 0 || r.rows.i0[i] >= r.rows.i0[i - 1]);
      TORCH_INTERNAL_ASSERT(r.rows.i1[i] == r.rows.i0[i] || r.rows.i1[i] == r.rows.i0[i] + 1);
    }
  }
  return r;
}

// One input tensor of a blend: its resize, its data and strides, its weight.
template <typename scalar_t, typename acc_t>
struct Branch : Resize<acc_t> {
  const scalar_t* x;
  int64_t sN, sC, sH, sW;
  acc_t weight;
};

template <typename scalar_t, typename acc_t>
Branch<scalar_t, acc_t> make_branch(const at::Tensor& x, const at::Tensor& w, int64_t Ho, int64_t Wo,
                                    bool align_corners, const ScaleArg& scale) {
  Branch<scalar_t, acc_t> b;
  static_cast<Resize<acc_t>&>(b) = make_resize<acc_t>(x.size(2), x.size(3), Ho, Wo, align_corners, scale);
  b.x = x.const_data_ptr<scalar_t>();
  b.sN = x.stride(0), b.sC = x.stride(1), b.sH = x.stride(2), b.sW = x.stride(3);
  // The reference casts the weight to the compute type first: w.to(cdt).
  b.weight = static_cast<acc_t>(w.item<double>());
  return b;
}

// float rows <-> [w][c] buffers with SSE, for the two layouts of the
// tensors. NCHW (unit stride along w): 4 channels x 4 columns at a time,
// transposed in registers; a scalar transpose does one load and one strided
// store per element and was the largest cost of the kernels on NCHW tensors.
// The 4-channel groups go outer, so only 4 channel rows stream at a time (16
// planes in lock step, 2^k bytes apart, would thrash the L1 sets).
// channels_last (unit stride along c): 4 channels at a time. Same results as
// the scalar loops in the baseline copy: the arithmetic (a blend, a scale) is
// theirs, and SSE2 has no FMA to contract it; in the AVX2 copy (parallel_tasks)
// GCC may contract either into FMAs, so they agree within rounding there.
namespace sse {

#if defined(__SSE2__)
constexpr bool kAvailable = true;

// channels_last: a pixel's block of channels is one cache line of a row
// strided by C channels, which the hardware prefetchers follow poorly (the
// loads of these copies were most of the backward's time); so the copies
// prefetch the pixel kPrefetchPixels ahead. Near a row's end that address is past
// the tensor: a prefetch never faults, and the address is formed as an integer so
// that no out-of-range pointer arithmetic happens either.
constexpr int64_t kPrefetchPixels = 8;
template <bool kWrite = false>
inline void prefetch_pixel(const float* base, int64_t offset) {
  const uintptr_t at = reinterpret_cast<uintptr_t>(base) + static_cast<uintptr_t>(offset) * sizeof(float);
  __builtin_prefetch(reinterpret_cast<const void*>(at), kWrite ? 1 : 0);
}

// dst[w][c] = ha * a[c, w] + hb * b[c, w] (kBlend) or a[c, w], where [c, w] is
// c * sC + w * sW; with kTie, a[c, w] itself where a[c, w] == b[c, w]
// (math::lerp_tie: DynOPool's queries). False (nothing done) unless sW or sC is 1.
template <bool kBlend, bool kTie = false>
inline bool rows_to_wc(const float* a, const float* b, float ha, float hb, int64_t sC, int64_t sW, int64_t cb,
                       int64_t W, float* __restrict dst) {
  static_assert(kBlend || !kTie, "the tie rule belongs to a blend");
  if (sW != 1 && sC != 1) return false;
  const int64_t c4 = cb & ~int64_t(3), w4 = W & ~int64_t(3);
  const __m128 va = _mm_set1_ps(ha), vb = _mm_set1_ps(hb);
  auto blend = [&](__m128 x, __m128 y) {
    const __m128 v = _mm_add_ps(_mm_mul_ps(va, x), _mm_mul_ps(vb, y));
    if (!kTie) return v;
    const __m128 same = _mm_cmpeq_ps(x, y);
    return _mm_or_ps(_mm_and_ps(same, x), _mm_andnot_ps(same, v));
  };
  auto load = [&](int64_t at) {
    const __m128 x = _mm_loadu_ps(a + at);
    if (!kBlend) return x;
    return blend(x, _mm_loadu_ps(b + at));
  };
  auto one = [&](int64_t c, int64_t w) {
    const int64_t at = c * sC + w * sW;
    dst[w * cb + c] = !kBlend ? a[at] : kTie ? math::lerp_tie(ha, a[at], hb, b[at]) : ha * a[at] + hb * b[at];
  };
  if (sW == 1) {
    for (int64_t c = 0; c < c4; c += 4) {
      for (int64_t w = 0; w < w4; w += 4) {
        __m128 r0 = load(c * sC + w), r1 = load((c + 1) * sC + w);
        __m128 r2 = load((c + 2) * sC + w), r3 = load((c + 3) * sC + w);
        _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
        _mm_storeu_ps(dst + w * cb + c, r0);
        _mm_storeu_ps(dst + (w + 1) * cb + c, r1);
        _mm_storeu_ps(dst + (w + 2) * cb + c, r2);
        _mm_storeu_ps(dst + (w + 3) * cb + c, r3);
      }
      // The last W % 4 columns of these 4 channels with the same vector
      // arithmetic as the others: a scalar w0 * a + w1 * b may be contracted
      // into an FMA where the vector one is not (the AVX2 copy), and a channel
      // whose columns round differently breaks DynOPool's exact ties.
      for (int64_t w = w4; w < W; ++w) {
        auto column = [&](const float* p) {
          const int64_t at = c * sC + w;
          return _mm_set_ps(p[at + 3 * sC], p[at + 2 * sC], p[at + sC], p[at]);
        };
        _mm_storeu_ps(dst + w * cb + c, kBlend ? blend(column(a), column(b)) : column(a));
      }
    }
  } else if (c4 == 16) {
    // A whole block unrolled: with a runtime channel count, GCC compiles the
    // copy (kBlend false) into a memcpy call per pixel, several times slower.
    for (int64_t w = 0; w < W; ++w) {
      float* d = dst + w * cb;
      const int64_t at = w * sW;
      prefetch_pixel(a, at + kPrefetchPixels * sW);
      if (kBlend) prefetch_pixel(b, at + kPrefetchPixels * sW);
      _mm_storeu_ps(d, load(at));
      _mm_storeu_ps(d + 4, load(at + 4));
      _mm_storeu_ps(d + 8, load(at + 8));
      _mm_storeu_ps(d + 12, load(at + 12));
    }
  } else {
    for (int64_t w = 0; w < W; ++w) {
      prefetch_pixel(a, (w + kPrefetchPixels) * sW);
      if (kBlend) prefetch_pixel(b, (w + kPrefetchPixels) * sW);
      for (int64_t c = 0; c < c4; c += 4) _mm_storeu_ps(dst + w * cb + c, load(c + w * sW));
    }
  }
  for (int64_t c = c4; c < cb; ++c)
    for (int64_t w = 0; w < W; ++w) one(c, w);
  return true;
}

// dst[c, w] (c * dC + w * dW) = scale * src[w][c]. False (nothing done)
// unless dW or dC is 1.
inline bool wc_to_rows(const float* __restrict src, float scale, int64_t cb, int64_t W, float* dst, int64_t dC,
                       int64_t dW) {
  if (dW != 1 && dC != 1) return false;
  const int64_t c4 = cb & ~int64_t(3), w4 = W & ~int64_t(3);
  const __m128 vs = _mm_set1_ps(scale);
  auto load = [&](int64_t at) { return _mm_mul_ps(vs, _mm_loadu_ps(src + at)); };
  auto one = [&](int64_t c, int64_t w) { dst[c * dC + w * dW] = scale * src[w * cb + c]; };
  if (dW == 1) {
    for (int64_t c = 0; c < c4; c += 4) {
      for (int64_t w = 0; w < w4; w += 4) {
        __m128 r0 = load(w * cb + c), r1 = load((w + 1) * cb + c);
        __m128 r2 = load((w + 2) * cb + c), r3 = load((w + 3) * cb + c);
        _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
        _mm_storeu_ps(dst + c * dC + w, r0);
        _mm_storeu_ps(dst + (c + 1) * dC + w, r1);
        _mm_storeu_ps(dst + (c + 2) * dC + w, r2);
        _mm_storeu_ps(dst + (c + 3) * dC + w, r3);
      }
      for (int64_t k = c; k < c + 4; ++k)
        for (int64_t w = w4; w < W; ++w) one(k, w);
    }
  } else {
    for (int64_t w = 0; w < W; ++w) {
      prefetch_pixel<true>(dst, (w + kPrefetchPixels) * dW);
      for (int64_t c = 0; c < c4; c += 4) _mm_storeu_ps(dst + c + w * dW, load(w * cb + c));
    }
  }
  for (int64_t c = c4; c < cb; ++c)
    for (int64_t w = 0; w < W; ++w) one(c, w);
  return true;
}
#else
constexpr bool kAvailable = false;
template <bool kBlend, bool kTie = false>
inline bool rows_to_wc(const float*, const float*, float, float, int64_t, int64_t, int64_t, int64_t, float*) {
  return false;
}
inline bool wc_to_rows(const float*, float, int64_t, int64_t, float*, int64_t, int64_t) { return false; }
#endif

// Whether the paths above apply: float data, float buffers.
template <typename scalar_t, typename acc_t>
constexpr bool applies_to() {
  return kAvailable && std::is_same_v<scalar_t, float> && std::is_same_v<acc_t, float>;
}

}  // namespace sse

// Row h of channels [0, cb) of a strided plane block p (p points at channel
// c0 of image n) into r as [w][c], in acc_t. The scalar loops follow the
// layout: along each channel's row for NCHW, along the channels for
// channels_last.
template <typename scalar_t, typename acc_t>
void load_row(const scalar_t* p, int64_t sC, int64_t sW, int64_t cb, int64_t W, acc_t* __restrict r) {
  if constexpr (sse::applies_to<scalar_t, acc_t>()) {
    if (sse::rows_to_wc<false>(p, nullptr, 0.f, 0.f, sC, sW, cb, W, r)) return;
  }
  if (sC <= sW) {
    for (int64_t w = 0; w < W; ++w)
      for (int64_t c = 0; c < cb; ++c) r[w * cb + c] = static_cast<acc_t>(p[c * sC + w * sW]);
  } else {
    for (int64_t c = 0; c < cb; ++c)
      for (int64_t w = 0; w < W; ++w) r[w * cb + c] = static_cast<acc_t>(p[c * sC + w * sW]);
  }
}

// The inverse: o[c, w] (o at channel c0, row h; strides oC, oW) = scale * r[w][c],
// rounded to scalar_t.
template <typename scalar_t, typename acc_t>
void store_wc(const acc_t* __restrict r, acc_t scale, int64_t cb, int64_t W, scalar_t* o, int64_t oC, int64_t oW) {
  if constexpr (sse::applies_to<scalar_t, acc_t>()) {
    if (sse::wc_to_rows(r, scale, cb, W, o, oC, oW)) return;
  }
  if (oC <= oW) {
    for (int64_t w = 0; w < W; ++w)
      for (int64_t c = 0; c < cb; ++c) o[c * oC + w * oW] = static_cast<scalar_t>(scale * r[w * cb + c]);
  } else {
    for (int64_t c = 0; c < cb; ++c)
      for (int64_t w = 0; w < W; ++w) o[c * oC + w * oW] = static_cast<scalar_t>(scale * r[w * cb + c]);
  }
}

// Horizontal pass: r[j][c] = the column taps of vrow ([w][c], the vertically
// interpolated row), j < Wo.
template <typename acc_t>
void resize_cols(const Taps<acc_t>& cols, int64_t cb, int64_t Wo, const acc_t* __restrict vrow,
                 acc_t* __restrict r) {
  for (int64_t j = 0; j < Wo; ++j) {
    const acc_t* a = vrow + cols.i0[j] * cb;
    const acc_t* z = vrow + cols.i1[j] * cb;
    const acc_t v0 = cols.w0[j], v1 = cols.w1[j];
    acc_t* __restrict o = r + j * cb;
    _Pragma("omp simd")
    for (int64_t c = 0; c < cb; ++c) o[c] = v0 * a[c] + v1 * z[c];
  }
}

// R(x) of output row i for channels [c0, c0 + cb) of image n, laid out
// [j][c] in r; vrow: scratch of W * cb.
template <typename scalar_t, typename acc_t>
void resize_row(const Branch<scalar_t, acc_t>& b, int64_t n, int64_t c0, int64_t cb, int64_t i, int64_t Wo,
                acc_t* __restrict vrow, acc_t* __restrict r) {
  const scalar_t* xn = b.x + n * b.sN + c0 * b.sC;
  if (b.pass) {
    load_row(xn + i * b.sH, b.sC, b.sW, cb, Wo, r);
    return;
  }
  const scalar_t* top = xn + b.rows.i0[i] * b.sH;
  const scalar_t* bot = xn + b.rows.i1[i] * b.sH;
  const acc_t h0 = b.rows.w0[i], h1 = b.rows.w1[i];
  bool done = false;
  if constexpr (sse::applies_to<scalar_t, acc_t>()) {
    done = sse::rows_to_wc<true>(top, bot, h0, h1, b.sC, b.sW, cb, b.W, vrow);
  }
  if (!done) {
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
  }
  resize_cols(b.cols, cb, Wo, vrow, r);
}

// Rᵀ(g) of one resize, swept over grad_out's rows in order (the backward
// kernels). Output row i (g, [j][c]) adds to input rows i0[i] and i1[i] only,
// and i0 never decreases (make_resize checks it), so before row i is added,
// every input row below ring_ready(b, i) is complete: the kernels consume
// those rows (a weight-gradient dot, grad_x stored) and clear them. The rows
// in flight are kept in a ring of K input rows ([w][c], cb channels each,
// zero when a row enters): K = 2 when complete rows are consumed at once, more
// when a kernel waits for a row of another resize (shape_adaptor_maxpool.cpp). Each
// input element first sums its column contributions in registers (the
// transposed taps), then adds them to the ring rows: the additions of a
// scatter of each output row onto a zeroed input-width row followed by the
// vertical adds, in their order, without read-modify-write chains through
// memory or a gradient slice of the whole input. A pass-through resize copies
// output row i to input row i.
template <typename acc_t>
struct RowRing {
  acc_t* buf;
  int64_t rows;  // K
  int64_t len;   // W * cb
  acc_t* row(int64_t h) const { return buf + (h % rows) * len; }
  void clear(int64_t h) const { std::fill(row(h), row(h) + len, acc_t(0)); }
  void clear_all() const { std::fill(buf, buf + rows * len, acc_t(0)); }
};

template <typename acc_t>
int64_t ring_ready(const Resize<acc_t>& b, int64_t i) {
  return b.pass ? i : b.rows.i0[i];
}

// top[w][c] += v0 * s[w][c] and bot[w][c] += v1 * s[w][c] (top first where
// they are the same row), s[w] = the sum over the transposed column taps of w
// of weight * g[j].
template <typename acc_t>
void gather_add_row(const TapsT<acc_t>& ct, int64_t cb, int64_t W, const acc_t* __restrict g, acc_t v0,
                    acc_t* top, acc_t v1, acc_t* bot) {
  const int64_t* off = ct.off.data();
  const int64_t* jj = ct.j.data();
  const acc_t* wt = ct.wt.data();
#if defined(RESIZEOPS_CPU_BLOCK_VECTORS)
  if (cb == kChannelBlock) {
    // The sums of a full block in registers (an array zeroed through memory
    // and reloaded wider stalled on store forwarding).
    for (int64_t w = 0; w < W; ++w) {
      BlockVec<acc_t> s;
      s.zero();
      for (int64_t k = off[w]; k < off[w + 1]; ++k) s.fma(wt[k], g + jj[k] * kChannelBlock);
      acc_t* t = top + w * kChannelBlock;
      acc_t* u = bot + w * kChannelBlock;
      BlockVec<acc_t> r;
      if (t != u) {
        r.load(t);
        for (int q = 0; q < r.kVecs; ++q) r.v[q] += v0 * s.v[q];
        r.store(t);
        r.load(u);
        for (int q = 0; q < r.kVecs; ++q) r.v[q] += v1 * s.v[q];
        r.store(u);
      } else {
        r.load(t);
        for (int q = 0; q < r.kVecs; ++q) r.v[q] = (r.v[q] + v0 * s.v[q]) + v1 * s.v[q];
        r.store(t);
      }
    }
    return;
  }
#endif
  acc_t s[kChannelBlock];
  auto sum = [&](int64_t w) {
    _Pragma("omp simd")
    for (int64_t c = 0; c < cb; ++c) s[c] = acc_t(0);
    for (int64_t k = off[w]; k < off[w + 1]; ++k) {
      const acc_t v = wt[k];
      const acc_t* __restrict gj = g + jj[k] * cb;
      _Pragma("omp simd")
      for (int64_t c = 0; c < cb; ++c) s[c] += v * gj[c];
    }
  };
  if (top != bot) {
    for (int64_t w = 0; w < W; ++w) {
      sum(w);
      acc_t* __restrict t = top + w * cb;
      acc_t* __restrict u = bot + w * cb;
      _Pragma("omp simd")
      for (int64_t c = 0; c < cb; ++c) {
        t[c] += v0 * s[c];
        u[c] += v1 * s[c];
      }
    }
  } else {
    for (int64_t w = 0; w < W; ++w) {
      sum(w);
      acc_t* __restrict t = top + w * cb;
      _Pragma("omp simd")
      for (int64_t c = 0; c < cb; ++c) t[c] = (t[c] + v0 * s[c]) + v1 * s[c];
    }
  }
}

template <typename acc_t>
void ring_add(const Resize<acc_t>& b, int64_t cb, int64_t i, const acc_t* __restrict g, const RowRing<acc_t>& ring) {
  if (b.pass) {
    std::copy(g, g + ring.len, ring.row(i));
    return;
  }
  gather_add_row(b.cols_t, cb, b.W, g, b.rows.w0[i], ring.row(b.rows.i0[i]), b.rows.w1[i], ring.row(b.rows.i1[i]));
}

// p if keep, else +0, as a mask on p's bits: under GCC's default
// -ftrapping-math, a select fed by a comparison keeps a loop from being
// vectorised, and these selects run once per element.
template <typename acc_t>
inline acc_t keep_if(bool keep, acc_t p) {
  using bits_t = std::conditional_t<sizeof(acc_t) == 4, uint32_t, uint64_t>;
  static_assert(sizeof(acc_t) == sizeof(bits_t), "float or double");
  bits_t b;
  std::memcpy(&b, &p, sizeof b);
  b &= bits_t(0) - bits_t(keep);
  std::memcpy(&p, &b, sizeof p);
  return p;
}

// p where a != 0, else +0 (a's bits are tested: +0 and -0 differ only in the sign bit).
template <typename acc_t>
inline acc_t keep_if_nonzero(acc_t p, acc_t a) {
  using bits_t = std::conditional_t<sizeof(acc_t) == 4, uint32_t, uint64_t>;
  bits_t b;
  std::memcpy(&b, &a, sizeof b);
  return keep_if((b << 1) != 0, p);
}

// <a, v> over len [w][c] entries of cb channels. kSkipZero (shape_adaptor_maxpool):
// skipping entries where a is 0 (a = Rᵀ(g): a pixel no output reads), so a
// non-finite value there does not reach a weight gradient. Without it
// (resize_blend) every entry counts, so that any non-finite pixel makes the sum
// non-finite and the kernel takes it again in the reference's form (see
// resize_blend.cpp). Per-channel lanes (independent
// sums: they vectorise; one running sum would be bound by the latency of its
// additions), then in double. A full block of channels keeps its lanes in
// registers; lanes in memory (any cb) chain every addition through a store
// and a load, which made this loop several times slower.
template <bool kSkipZero = true, typename acc_t>
double masked_dot(const acc_t* __restrict a, const acc_t* __restrict v, int64_t cb, int64_t len,
                  acc_t* __restrict lanes) {
  auto term = [](acc_t p, acc_t q) { return kSkipZero ? keep_if_nonzero(p * q, p) : p * q; };
  double s = 0.0;
  if (cb == kChannelBlock) {
    acc_t l[kChannelBlock] = {};
    for (int64_t w = 0; w < len; ++w) {
      const acc_t* aw = a + w * kChannelBlock;
      const acc_t* vw = v + w * kChannelBlock;
      _Pragma("omp simd")
      for (int64_t c = 0; c < kChannelBlock; ++c) l[c] += term(aw[c], vw[c]);
    }
    for (int64_t c = 0; c < kChannelBlock; ++c) s += static_cast<double>(l[c]);
    return s;
  }
  std::fill(lanes, lanes + cb, acc_t(0));
  for (int64_t w = 0; w < len; ++w) {
    const acc_t* aw = a + w * cb;
    const acc_t* vw = v + w * cb;
    _Pragma("omp simd")
    for (int64_t c = 0; c < cb; ++c) lanes[c] += term(aw[c], vw[c]);
  }
  for (int64_t c = 0; c < cb; ++c) s += static_cast<double>(lanes[c]);
  return s;
}

// Writes the output row r ([j][c]) of channels [0, cb) to o (channel c0 of image
// n) at row i, in the output's layout.
template <typename scalar_t, typename acc_t>
void store_row(scalar_t* o, int64_t oC, int64_t oH, int64_t oW, int64_t cb, int64_t i, int64_t Wo, const acc_t* r) {
  store_wc(r, acc_t(1), cb, Wo, o + i * oH, oC, oW);
}

}  // namespace cpu
}  // namespace resizeops
