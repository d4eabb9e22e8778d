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

// exp(x) to ~2 ulp for x in [-87, 88]: 2^n by the exponent bits, 2^f (|f| <= 1/2) by its
// degree-7 Taylor polynomial (truncation error 5e-9). Written with vector operations so that
// it compiles to straight SIMD code whatever the libm.
inline Vec Exp(Vec x) {
  const Vec lo = Splat(-87.0f), hi = Splat(88.0f);
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  const Vec t = x * 1.44269504088896341f;
  const Vec magic = Splat(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  const Vec n = (t + magic) - magic;
  const Vec f = (t - n) * 0.693147180559945309f;
  Vec p = Splat(1.0f / 5040);
  p = p * f + 1.0f / 720;
  p = p * f + 1.0f / 120;
  p = p * f + 1.0f / 24;
  p = p * f + 1.0f / 6;
  p = p * f + 0.5f;
  p = p * f + 1.0f;
  p = p * f + 1.0f;
  const IVec bits = (__builtin_convertvector(n, IVec) + 127) << 23;
  Vec scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

// Per-thread scratch, grown on demand and reused across calls.
inline float* Scratch(size_t floats) {
  thread_local std::vector<float> buffer;
  if (buffer.size() < floats) buffer.resize(floats);
  return buffer.data();
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
