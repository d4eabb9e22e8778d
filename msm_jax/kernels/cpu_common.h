// What msm_jax's CPU kernels share: 16-float vectors (GCC/Clang vector extensions, so the
// compiler emits the machine's own SIMD under -march=native), a vector exp, per-thread scratch
// memory, and a parallel loop on XLA's intra-op thread pool.
#ifndef MSM_JAX_KERNELS_CPU_COMMON_H_
#define MSM_JAX_KERNELS_CPU_COMMON_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace msm_jax {

namespace ffi = xla::ffi;

constexpr int kWidth = 16;  // floats per vector (one AVX-512 register, two AVX2 ones)
typedef float Vec __attribute__((vector_size(kWidth * sizeof(float))));
typedef float VecUnaligned __attribute__((vector_size(kWidth * sizeof(float)), aligned(4)));

using F32 = ffi::Buffer<ffi::F32>;  // the kernels' arguments and results
using F32Out = ffi::ResultBuffer<ffi::F32>;

inline Vec Load(const float* p) { return *reinterpret_cast<const VecUnaligned*>(p); }
inline void Store(float* p, Vec x) { *reinterpret_cast<VecUnaligned*>(p) = x; }
inline Vec Splat(float x) { return Vec{} + x; }

inline float Sum(Vec x) {
  float s = 0;
  for (int i = 0; i < kWidth; ++i) s += x[i];
  return s;
}

inline float Max(Vec x) {
  float m = x[0];
  for (int i = 1; i < kWidth; ++i) m = std::max(m, x[i]);
  return m;
}

typedef int32_t IVec __attribute__((vector_size(kWidth * sizeof(int32_t))));

// exp(x) for x <= 88 (what every caller passes: softmax logits minus their maximum or
// log-sum-exp, minus squares), to 2.5 ulp, 0 below -87.3 where float's normal range ends (and for
// -inf; NaN stays NaN). x = n ln2 + f with n an integer and |f| <= ln2 / 2 (ln2 in two parts,
// Cody & Waite, so that f is exact); 2^n goes into the exponent bits, e^f is a degree-5
// polynomial (relative error 1.0e-7, fitted in float64 for the least maximum relative error
// with the constant term fixed at 1, so that exp(0) = 1).
//
// Why this form: loops of exps here are limited by the vector ALU ports and by this dependency
// chain (the out-of-order window holds only a few iterations), so it is written for few
// operations and a short chain: Estrin's scheme, n's bits taken from the rounding sum directly,
// the range handled by one select at the end. Callers keep a few exps independent per
// iteration. Vector operations, so that it compiles to straight SIMD code whatever the libm.
inline Vec Exp(Vec x) {
  const Vec magic = Splat(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer...
  const Vec shifted = x * 1.44269504088896341f + magic;  // ...n, in its low mantissa bits
  const Vec n = shifted - magic;
  Vec f = x - n * 0.693145751953125f;  // ln2's leading 16 bits: n times them is exact
  f = f - n * 1.42860682028622677e-6f;  // the rest of ln2
  const Vec f2 = f * f;
  const Vec p = ((f * 8.317875675857067e-3f + 4.189794510602951e-2f) * f2 +
                 (f * 0.16667181253433228f + 0.4999915063381195f)) * f2 +
                (f * 0.9999998807907104f + 1.0f);
  IVec bits;
  std::memcpy(&bits, &shifted, sizeof(bits));
  bits = (bits + (127 - 0x4B400000)) << 23;  // (n + 127) << 23: the float 2^n
  Vec scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return x < -87.3f ? Vec{} : p * scale;
}

// Lane masks for __builtin_shuffle(a, b, mask) that swap the off-diagonal S x S blocks of every
// 2S x 2S block of the 16 x 16 matrix whose rows i and i + S are a and b (the high half gives b).
template <int S>
inline IVec SwapMask(bool high) {
  IVec m;
  for (int l = 0; l < kWidth; ++l)
    m[l] = (l & S) ? kWidth + l - (high ? 0 : S) : l + (high ? S : 0);
  return m;
}

template <int S>
[[gnu::always_inline]] inline void SwapBlocks(Vec (&rows)[kWidth]) {  // else GCC spills the tile
  const IVec low = SwapMask<S>(false), high = SwapMask<S>(true);
  for (int i = 0; i < kWidth; ++i)
    if (!(i & S)) {
      const Vec a = rows[i], b = rows[i + S];
      rows[i] = __builtin_shuffle(a, b, low);
      rows[i + S] = __builtin_shuffle(a, b, high);
    }
}

// Transposes the 16 x 16 tile rows[0..15] in registers: 64 two-vector shuffles.
[[gnu::always_inline]] inline void TransposeTile(Vec (&rows)[kWidth]) {
  SwapBlocks<8>(rows);
  SwapBlocks<4>(rows);
  SwapBlocks<2>(rows);
  SwapBlocks<1>(rows);
}

// Per-thread scratch, grown on demand and reused across calls, aligned to a cache line: a vector
// that straddles two lines costs two accesses, and the kernels' arrays in it are whole lines.
// (Unaligned, the attention kernel ran ~20 % slower.)
inline float* Scratch(size_t floats) {
  constexpr size_t kLine = 64;
  thread_local std::vector<float> buffer;
  if (buffer.size() < floats + kLine / sizeof(float)) buffer.resize(floats + kLine / sizeof(float));
  const uintptr_t address = reinterpret_cast<uintptr_t>(buffer.data());
  return reinterpret_cast<float*>((address + kLine - 1) / kLine * kLine);
}

// Runs fn(0 .. count-1) on the caller and up to pool.num_threads() - 1 pool tasks, which take
// indices from a shared counter. The caller returns once every index has run; a task that starts
// after that finds no index left and touches nothing but the shared state it co-owns.
template <typename Fn>
void ParallelFor(ffi::ThreadPool& pool, int64_t count, const Fn& fn) {
  struct State {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
  };
  auto state = std::make_shared<State>();
  auto work = [state, count, &fn]() {
    for (int64_t i; (i = state->next.fetch_add(1)) < count;) {
      fn(i);
      state->done.fetch_add(1, std::memory_order_release);
    }
  };
  const int64_t helpers = std::min<int64_t>(pool.num_threads(), count) - 1;
  for (int64_t t = 0; t < helpers; ++t) pool.Schedule([work]() { work(); });
  work();
  while (state->done.load(std::memory_order_acquire) < count) std::this_thread::yield();
}

}  // namespace msm_jax

#endif  // MSM_JAX_KERNELS_CPU_COMMON_H_
