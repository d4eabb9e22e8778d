// LayerNorm over the last axis for XLA:CPU (float32), registered with JAX through the XLA FFI.
//
// Why: XLA:CPU computes a LayerNorm's per-row mean and variance with reductions that run at
// well under a GB/s on rows of 256-512 floats, and autodiff's backward pass adds more of them:
// 6-8% of the paper's ViT-S MSM train step went to LayerNorm. Here one task per sample walks its
// rows; each row (at most a few KB) stays in L1 through all of its passes.
//
// Forward: y = (x - mean) * rstd * scale + bias, saving mean and rstd = 1 / sqrt(var + eps) per
// row (the variance from the centred values, not E[x^2] - E[x]^2, so no cancellation).
// Backward, with xhat = (x - mean) * rstd and g = dy * scale:
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),
//   dscale = sum over rows of dy * xhat,  dbias = sum over rows of dy,
// the last two summed per sample here (B, D) and over samples by the caller, so that a batch
// sharded over devices reduces with XLA's own collectives.
//
// x is (B, N, D) row-major float32 with D a multiple of 16.
#include <cmath>
#include <cstdint>

#include "cpu_common.h"

namespace {

using namespace msm_jax;  // NOLINT: the shared vector type and helpers

void ForwardSample(const float* x, const float* scale, const float* bias, float eps, int64_t n,
                   int d, float* y, float* mean, float* rstd) {
  for (int64_t r = 0; r < n; ++r, x += d, y += d) {
    Vec sum = {};
    for (int c = 0; c < d; c += kWidth) sum += Load(x + c);
    const float m = Sum(sum) / d;
    Vec squares = {};
    for (int c = 0; c < d; c += kWidth) {
      const Vec centred = Load(x + c) - m;
      squares += centred * centred;
    }
    const float rs = 1.0f / std::sqrt(Sum(squares) / d + eps);
    for (int c = 0; c < d; c += kWidth)
      Store(y + c, (Load(x + c) - m) * rs * Load(scale + c) + Load(bias + c));
    mean[r] = m;
    rstd[r] = rs;
  }
}

void BackwardSample(const float* x, const float* scale, const float* mean, const float* rstd,
                    const float* dy, int64_t n, int d, float* dx, float* dscale, float* dbias) {
  for (int c = 0; c < d; ++c) dscale[c] = dbias[c] = 0.0f;
  for (int64_t r = 0; r < n; ++r, x += d, dy += d, dx += d) {
    const float m = mean[r], rs = rstd[r];
    Vec g_sum = {}, gx_sum = {};
    for (int c = 0; c < d; c += kWidth) {
      const Vec xhat = (Load(x + c) - m) * rs, grad = Load(dy + c);
      const Vec g = grad * Load(scale + c);
      g_sum += g;
      gx_sum += g * xhat;
      Store(dscale + c, Load(dscale + c) + grad * xhat);
      Store(dbias + c, Load(dbias + c) + grad);
    }
    const float g_mean = Sum(g_sum) / d, gx_mean = Sum(gx_sum) / d;
    for (int c = 0; c < d; c += kWidth) {
      const Vec xhat = (Load(x + c) - m) * rs;
      Store(dx + c, (Load(dy + c) * Load(scale + c) - g_mean - xhat * gx_mean) * rs);
    }
  }
}

ffi::Error CheckShapes(const F32& x, const F32& scale) {
  const auto dims = x.dimensions();
  if (dims.size() != 3 || dims[2] % kWidth)
    return ffi::Error::InvalidArgument(
        "msm_layer_norm: x must be (batch, tokens, width) with width a multiple of 16");
  if (scale.dimensions().size() != 1 || scale.dimensions()[0] != dims[2])
    return ffi::Error::InvalidArgument("msm_layer_norm: scale must be (width,)");
  return ffi::Error::Success();
}

ffi::Error Forward(ffi::ThreadPool pool, F32 x, F32 scale, F32 bias, F32Out y, F32Out mean,
                   F32Out rstd, float eps) {
  if (ffi::Error e = CheckShapes(x, scale); e.failure()) return e;
  const auto dims = x.dimensions();
  const int64_t n = dims[1];
  const int d = static_cast<int>(dims[2]);
  ParallelFor(pool, dims[0], [&](int64_t b) {
    ForwardSample(x.typed_data() + b * n * d, scale.typed_data(), bias.typed_data(), eps, n, d,
                  y->typed_data() + b * n * d, mean->typed_data() + b * n,
                  rstd->typed_data() + b * n);
  });
  return ffi::Error::Success();
}

ffi::Error Backward(ffi::ThreadPool pool, F32 x, F32 scale, F32 mean, F32 rstd, F32 dy,
                    F32Out dx, F32Out dscale, F32Out dbias) {
  if (ffi::Error e = CheckShapes(x, scale); e.failure()) return e;
  const auto dims = x.dimensions();
  const int64_t n = dims[1];
  const int d = static_cast<int>(dims[2]);
  ParallelFor(pool, dims[0], [&](int64_t b) {
    BackwardSample(x.typed_data() + b * n * d, scale.typed_data(), mean.typed_data() + b * n,
                   rstd.typed_data() + b * n, dy.typed_data() + b * n * d, n, d,
                   dx->typed_data() + b * n * d, dscale->typed_data() + b * d,
                   dbias->typed_data() + b * d);
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(MsmLayerNormForward, Forward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<F32>()  // x (B, N, D)
                                  .Arg<F32>()  // scale (D,)
                                  .Arg<F32>()  // bias (D,)
                                  .Ret<F32>()  // y (B, N, D)
                                  .Ret<F32>()  // mean (B, N)
                                  .Ret<F32>()  // rstd (B, N)
                                  .Attr<float>("eps"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(MsmLayerNormBackward, Backward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<F32>()  // x
                                  .Arg<F32>()  // scale
                                  .Arg<F32>()  // mean
                                  .Arg<F32>()  // rstd
                                  .Arg<F32>()  // dy
                                  .Ret<F32>()  // dx (B, N, D)
                                  .Ret<F32>()  // dscale per sample (B, D)
                                  .Ret<F32>());  // dbias per sample (B, D)
