// AdamW's update of one float32 parameter array in one pass, for XLA:CPU, registered with JAX
// through the XLA FFI. The parameter and both moments are updated in place (the Python side
// aliases them to the results).
//
// Why: optax's AdamW, compiled by XLA:CPU, makes separate passes for the first moment, the second
// moment (after one more that writes g^2 where the gradient norm shares it) and the parameter,
// reading the gradient three times: ~12 passes over every parameter's memory per step, ~170 ms of
// a 3 s ViT-S step on a 2-core VM. Here each element is read once (parameter, gradient, moments)
// and written once (parameter, moments): 7 passes.
//
// The update is optax.adamw's (scale_by_adam with eps_root = 0, add_decayed_weights,
// scale_by_learning_rate), element by element:
//   mu = (1 - b1) g + b1 mu,  nu = (1 - b2) g^2 + b2 nu,
//   u = (mu / (1 - b1^t)) / (sqrt(nu / (1 - b2^t)) + eps) + weight_decay * p,
//   p = p - lr u,
// with g first scaled by optax.clip_by_global_norm's factor (1 without clipping). The caller
// passes `scalars` = (-lr, 1 / (1 - b1^t), 1 / (1 - b2^t), that factor), from the step count and
// the gradients' global norm (multiplying by reciprocals instead of dividing: within an ulp of
// optax's values).
#include <cmath>
#include <cstdint>

#include "cpu_common.h"

namespace {

using namespace msm_jax;  // NOLINT: the shared vector type and helpers

constexpr int64_t kChunk = 16384;  // floats per task: 64 KB of each of the 4 arrays

struct Hyper {
  // 1 - b1 and 1 - b2 come rounded from double, as optax's do: 1.0f - 0.9f is 3 ulp off 0.1f.
  float b1, one_minus_b1, b2, one_minus_b2, eps, weight_decay, neg_lr, inv_bc1, inv_bc2,
      grad_scale;
};

inline float Sqrt(float x) { return std::sqrt(x); }

inline Vec Sqrt(Vec x) {
  for (int i = 0; i < kWidth; ++i) x[i] = std::sqrt(x[i]);  // vector sqrts under -O3
  return x;
}

// One element (T = float) or one vector of them (T = Vec), in place.
template <typename T>
inline void Update(const Hyper& h, T g, T& p, T& mu, T& nu) {
  g = g * h.grad_scale;
  mu = h.one_minus_b1 * g + h.b1 * mu;
  nu = h.one_minus_b2 * (g * g) + h.b2 * nu;
  const T u = mu * h.inv_bc1 / (Sqrt(nu * h.inv_bc2) + h.eps) + h.weight_decay * p;
  p = p + h.neg_lr * u;
}

ffi::Error Apply(ffi::ThreadPool pool, F32 param, F32 grad, F32 mu, F32 nu, F32 scalars,
                 F32Out param_out, F32Out mu_out, F32Out nu_out, float b1, float one_minus_b1,
                 float b2, float one_minus_b2, float eps, float weight_decay) {
  const int64_t n = param.element_count();
  if (grad.element_count() != n || mu.element_count() != n || nu.element_count() != n)
    return ffi::Error::InvalidArgument(
        "msm_adamw: the parameter, its gradient and both moments must have the same size");
  if (scalars.element_count() != 4)
    return ffi::Error::InvalidArgument(
        "msm_adamw: scalars must be (-lr, 1/(1-b1^t), 1/(1-b2^t), gradient scale)");
  const float* s = scalars.typed_data();
  const Hyper h{b1, one_minus_b1, b2, one_minus_b2, eps, weight_decay, s[0], s[1], s[2], s[3]};
  const float *p_in = param.typed_data(), *g_in = grad.typed_data();
  const float *mu_in = mu.typed_data(), *nu_in = nu.typed_data();
  float *p_out = param_out->typed_data(), *mu_o = mu_out->typed_data();
  float *nu_o = nu_out->typed_data();
  ParallelFor(pool, (n + kChunk - 1) / kChunk, [&](int64_t chunk) {
    const int64_t first = chunk * kChunk, last = std::min(n, first + kChunk);
    int64_t i = first;
    for (; i + kWidth <= last; i += kWidth) {
      Vec p = Load(p_in + i), m = Load(mu_in + i), v = Load(nu_in + i);
      Update(h, Load(g_in + i), p, m, v);
      Store(p_out + i, p);
      Store(mu_o + i, m);
      Store(nu_o + i, v);
    }
    for (; i < last; ++i) {  // the array's last few elements
      float p = p_in[i], m = mu_in[i], v = nu_in[i];
      Update(h, g_in[i], p, m, v);
      p_out[i] = p;
      mu_o[i] = m;
      nu_o[i] = v;
    }
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(MsmAdamwUpdate, Apply,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<F32>()  // parameter, any shape
                                  .Arg<F32>()  // its gradient
                                  .Arg<F32>()  // first moment
                                  .Arg<F32>()  // second moment
                                  .Arg<F32>()  // scalars (4,), see Hyper
                                  .Ret<F32>()  // parameter (aliases the parameter)
                                  .Ret<F32>()  // first moment (aliases it)
                                  .Ret<F32>()  // second moment (aliases it)
                                  .Attr<float>("b1")
                                  .Attr<float>("one_minus_b1")
                                  .Attr<float>("b2")
                                  .Attr<float>("one_minus_b2")
                                  .Attr<float>("eps")
                                  .Attr<float>("weight_decay"));
