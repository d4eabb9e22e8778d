// Exact (erf) GELU of a Dense layer's output plus its bias, for XLA:CPU (float32), registered
// with JAX through the XLA FFI.
//
// Why: autodiff has XLA:CPU make three passes over the MLP's (tokens, 4 x width) activations for
// the bias add + GELU (erf of h + bias, saved for the backward pass; the product; the backward
// pass reading both back) and a fourth for the bias gradient's reduction. Here the forward pass
// is one read and one write, and the backward pass recomputes erf from the saved input (one exp
// serves both erf and the Gaussian density in GELU's derivative) and sums the bias gradient on
// the way.
//
// With x = h + bias and u = x / sqrt(2):
//   y = x * (1 + erf(u)) / 2,
//   dh = dy * ((1 + erf(u)) / 2 + x * exp(-u^2) / sqrt(2 pi)),   dbias = sum over rows of dh,
// the bias gradient summed per sample here (B, D) and over samples by the caller, as for
// LayerNorm. erf is a rational function in the forward pass (Erf) and Abramowitz & Stegun 7.1.26
// in the backward pass (ErfAndGaussian); both are within 2e-7 of it.
//
// h is (B, N, D) row-major float32 with D a multiple of 16.
#include <algorithm>
#include <cstdint>

#include "cpu_common.h"

namespace {

using namespace msm_jax;  // NOLINT: the shared vector type and helpers

// Tasks walk whole rows where they can: a task that takes a block of columns reads a few
// hundred bytes per row and then jumps a row ahead, which the hardware prefetchers follow
// poorly: on the ViT-S MLPs both passes ran 1.6-2x slower on blocks of 256 columns.
constexpr int64_t kTaskFloats = 16384;  // forward: ~64 KB of whole rows per task
constexpr int kTasksPerThread = 4;  // backward: enough tasks to balance the threads

// erf(u) alone, for the forward pass: a rational function of u^2 (the approximation Eigen and
// XLA use for float32, a few ulp), no exp.
inline Vec Erf(Vec u) {
  const Vec lo = Splat(-4.0f), hi = Splat(4.0f);
  u = u < lo ? lo : u;
  u = u > hi ? hi : u;
  const Vec u2 = u * u;
  Vec p = Splat(-2.72614225801306e-10f);
  p = p * u2 + 2.77068142495902e-08f;
  p = p * u2 - 2.10102402082508e-06f;
  p = p * u2 - 5.69250639462346e-05f;
  p = p * u2 - 7.34990630326855e-04f;
  p = p * u2 - 2.95459980854025e-03f;
  p = p * u2 - 1.60960333262415e-02f;
  Vec q = Splat(-1.45660718464996e-05f);
  q = q * u2 - 2.13374055278905e-04f;
  q = q * u2 - 1.68282697438203e-03f;
  q = q * u2 - 7.37332916720468e-03f;
  q = q * u2 - 1.42647390514189e-02f;
  return u * p / q;
}

// erf(u) and exp(-u^2) together, for the backward pass, which needs both: Abramowitz & Stegun
// 7.1.26, erf(|u|) = 1 - t P(t) exp(-u^2) with t = 1 / (1 + 0.3275911 |u|), absolute error 1.5e-7.
inline void ErfAndGaussian(Vec u, Vec& erf, Vec& gaussian) {
  const Vec a = u < 0 ? -u : u;
  const Vec t = 1.0f / (1.0f + 0.3275911f * a);
  Vec p = Splat(1.061405429f);
  p = p * t - 1.453152027f;
  p = p * t + 1.421413741f;
  p = p * t - 0.284496736f;
  p = p * t + 0.254829592f;
  gaussian = Exp(-u * u);
  const Vec erf_abs = 1.0f - p * t * gaussian;
  erf = u < 0 ? -erf_abs : erf_abs;
}

constexpr float kHalfSqrt2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;

ffi::Error CheckShapes(const F32& h, const F32& bias) {
  const auto dims = h.dimensions();
  if (dims.size() != 3 || dims[2] % kWidth)
    return ffi::Error::InvalidArgument(
        "msm_gelu: h must be (batch, tokens, width) with width a multiple of 16");
  if (bias.dimensions().size() != 1 || bias.dimensions()[0] != dims[2])
    return ffi::Error::InvalidArgument("msm_gelu: bias must be (width,)");
  return ffi::Error::Success();
}

// Runs fn(sample, first column, column count) over every sample x block of columns of h, whose
// shapes CheckShapes has accepted: whole rows (one block per sample) when the batch gives each
// thread kTasksPerThread samples, else as many blocks per sample as that takes.
template <typename Fn>
void ForEachBlock(ffi::ThreadPool& pool, const F32& h, const Fn& fn) {
  const int64_t b = h.dimensions()[0], d = h.dimensions()[2];
  const int64_t wanted = (kTasksPerThread * pool.num_threads() + b - 1) / b;
  const int64_t blocks = std::clamp<int64_t>(wanted, 1, d / kWidth);
  const int64_t columns = (d / kWidth + blocks - 1) / blocks * kWidth;
  ParallelFor(pool, b * blocks, [&](int64_t task) {
    const int64_t first = task % blocks * columns;
    if (first < d) fn(task / blocks, first, std::min<int64_t>(columns, d - first));
  });
}

ffi::Error Forward(ffi::ThreadPool pool, F32 h, F32 bias, F32Out y) {
  if (ffi::Error e = CheckShapes(h, bias); e.failure()) return e;
  const int64_t d = h.dimensions()[2], rows = h.dimensions()[0] * h.dimensions()[1];
  const int64_t per_task = std::max<int64_t>(1, kTaskFloats / d);
  ParallelFor(pool, (rows + per_task - 1) / per_task, [&](int64_t task) {
    const int64_t first = task * per_task, last = std::min(rows, first + per_task);
    const float* in = h.typed_data() + first * d;
    float* out = y->typed_data() + first * d;
    for (int64_t r = first; r < last; ++r, in += d, out += d)
      for (int64_t c = 0; c < d; c += kWidth) {
        const Vec x = Load(in + c) + Load(bias.typed_data() + c);
        Store(out + c, 0.5f * x * (1.0f + Erf(x * kHalfSqrt2)));
      }
  });
  return ffi::Error::Success();
}

ffi::Error Backward(ffi::ThreadPool pool, F32 h, F32 bias, F32 dy, F32Out dh, F32Out dbias) {
  if (ffi::Error e = CheckShapes(h, bias); e.failure()) return e;
  const int64_t n = h.dimensions()[1], d = h.dimensions()[2];
  ForEachBlock(pool, h, [&](int64_t b, int64_t first, int64_t count) {
    const float* in = h.typed_data() + b * n * d + first;
    const float* grad = dy.typed_data() + b * n * d + first;
    float* out = dh->typed_data() + b * n * d + first;
    float* sums = dbias->typed_data() + b * d + first;
    const float* bias_ = bias.typed_data() + first;
    std::fill(sums, sums + count, 0.0f);
    for (int64_t r = 0; r < n; ++r, in += d, grad += d, out += d)
      for (int64_t c = 0; c < count; c += kWidth) {
        const Vec x = Load(in + c) + Load(bias_ + c);
        Vec erf, gaussian;
        ErfAndGaussian(x * kHalfSqrt2, erf, gaussian);
        const Vec g = Load(grad + c) * (0.5f * (1.0f + erf) + x * gaussian * kInvSqrt2Pi);
        Store(out + c, g);
        Store(sums + c, Load(sums + c) + g);
      }
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(MsmGeluForward, Forward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<F32>()  // h (B, N, D): the Dense layer's x @ kernel
                                  .Arg<F32>()  // bias (D,)
                                  .Ret<F32>());  // y (B, N, D)

XLA_FFI_DEFINE_HANDLER_SYMBOL(MsmGeluBackward, Backward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<F32>()  // h
                                  .Arg<F32>()  // bias
                                  .Arg<F32>()  // dy
                                  .Ret<F32>()  // dh (B, N, D)
                                  .Ret<F32>());  // dbias per sample (B, D)
