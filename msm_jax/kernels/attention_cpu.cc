// Fused softmax attention for XLA:CPU (float32), registered with JAX through the XLA FFI.
//
// Why: on CPU, XLA materialises the (N, N) attention weights and runs the products that touch
// them through generic matmul kernels; with narrow heads (the paper's decoder: 16 heads of 16)
// those products run at a fraction of the matmul peak and the weights cost 40 MB of memory
// traffic per layer. Here each (batch, head) pair is one task: its keys and values stay in L1/L2,
// the weights exist one block of query rows at a time, and the backward pass recomputes them
// from the saved log-sum-exp (flash-attention style) instead of storing them.
//
// Inputs are row-major float32; the head width D is a multiple of 16 (the vector width used here).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "cpu_common.h"

namespace {

using namespace msm_jax;  // NOLINT: the shared vector type and helpers

// Query rows processed together, sharing each key/value load: as many as the accumulators of
// the (rows x D) products leave registers for.
template <int D>
constexpr int Rows() { return D <= 32 ? 8 : 4; }
int Padded(int n) { return (n + kWidth - 1) / kWidth * kWidth; }

// dst[d * np + j] = src[j * D + d], zero for j >= n.
template <int D>
void Transpose(const float* src, int n, int np, float* dst) {
  std::fill(dst, dst + D * np, 0.0f);
  for (int j = 0; j < n; ++j)
    for (int d = 0; d < D; ++d) dst[d * np + j] = src[j * D + d];
}

// Column vectors of the (rows x columns) blocks of RowsTimesTransposed: 16 accumulators, so
// that each broadcast of an `a` value feeds two or four FMAs (~1.4x faster than one column).
template <int D>
constexpr int Columns() { return 16 / Rows<D>(); }

// out[r * np + j] = sum_d a[row_r * D + d] * bt[d * np + j] for Rows<D>() rows of a starting at i0
// (rows past n repeat the last one; callers ignore them).
template <int D>
void RowsTimesTransposed(const float* a, int i0, int n, const float* bt, int np, float* out) {
  constexpr int R = Rows<D>();
  const float* rows[R];
  for (int r = 0; r < R; ++r) rows[r] = a + std::min(i0 + r, n - 1) * D;
  auto block = [&](int c, auto columns) {  // columns: std::integral_constant, 1 for the tail
    constexpr int C = decltype(columns)::value;
    Vec acc[R][C] = {};
#pragma GCC unroll 4
    for (int d = 0; d < D; ++d) {
      Vec b[C];
      for (int u = 0; u < C; ++u) b[u] = Load(bt + d * np + c + u * kWidth);
      for (int r = 0; r < R; ++r)
        for (int u = 0; u < C; ++u) acc[r][u] += rows[r][d] * b[u];
    }
    for (int r = 0; r < R; ++r)
      for (int u = 0; u < C; ++u) Store(out + r * np + c + u * kWidth, acc[r][u]);
  };
  constexpr int kBlock = Columns<D>() * kWidth;
  int c = 0;
  for (; c + kBlock <= np; c += kBlock) block(c, std::integral_constant<int, Columns<D>()>());
  for (; c < np; c += kWidth) block(c, std::integral_constant<int, 1>());
}

// One head's forward pass on contiguous (n, D) arrays; scratch holds (D + Rows<D>()) * Padded(n).
template <int D>
void ForwardHead(const float* q, const float* k, const float* v, float* out, float* lse, int n,
                 float* scratch) {
  const int np = Padded(n);
  float* kt = scratch;
  float* s = kt + D * np;
  Transpose<D>(k, n, np, kt);
  for (int i0 = 0; i0 < n; i0 += Rows<D>()) {
    RowsTimesTransposed<D>(q, i0, n, kt, np, s);
    float row_max[Rows<D>()], row_sum[Rows<D>()];
    for (int r = 0; r < Rows<D>(); ++r) {
      float* sr = s + r * np;
      std::fill(sr + n, sr + np, -std::numeric_limits<float>::infinity());
      Vec m = Load(sr);
      for (int c = kWidth; c < np; c += kWidth) {
        const Vec x = Load(sr + c);
        m = x > m ? x : m;
      }
      row_max[r] = Max(m);
      Vec total = {};
      for (int c = 0; c < np; c += kWidth) {
        const Vec w = Exp(Load(sr + c) - row_max[r]);
        Store(sr + c, w);
        total += w;
      }
      row_sum[r] = Sum(total);  // the pad's weights, exp(-87) each, are negligible here...
      std::fill(sr + n, sr + np, 0.0f);  // ...and dropped before the product with v
    }
    Vec acc[Rows<D>()][D / kWidth] = {};
    for (int j = 0; j < n; ++j)
      for (int c = 0; c < D / kWidth; ++c) {
        const Vec x = Load(v + j * D + c * kWidth);
        for (int r = 0; r < Rows<D>(); ++r) acc[r][c] += s[r * np + j] * x;
      }
    for (int r = 0; r < Rows<D>() && i0 + r < n; ++r) {
      const float inv = 1.0f / row_sum[r];
      for (int c = 0; c < D / kWidth; ++c) Store(out + (i0 + r) * D + c * kWidth, acc[r][c] * inv);
      lse[i0 + r] = row_max[r] + std::log(row_sum[r]);
    }
  }
}

// One head's backward pass on contiguous (n, D) arrays; scratch holds (2 D + 2 Rows<D>()) * Padded(n).
template <int D>
void BackwardHead(const float* q, const float* k, const float* v, const float* out,
                  const float* lse, const float* d_out, float* dq, float* dk, float* dv, int n,
                  float* scratch) {
  const int np = Padded(n);
  float* kt = scratch;
  float* vt = kt + D * np;
  float* p = vt + D * np;
  float* ds = p + Rows<D>() * np;
  Transpose<D>(k, n, np, kt);
  Transpose<D>(v, n, np, vt);
  std::fill(dk, dk + n * D, 0.0f);
  std::fill(dv, dv + n * D, 0.0f);
  for (int i0 = 0; i0 < n; i0 += Rows<D>()) {
    RowsTimesTransposed<D>(q, i0, n, kt, np, p);       // logits
    RowsTimesTransposed<D>(d_out, i0, n, vt, np, ds);  // d p = d_out v^T
    for (int r = 0; r < Rows<D>(); ++r) {
      float* pr = p + r * np;
      float* dsr = ds + r * np;
      if (i0 + r >= n) {  // a row past the end: contributes nothing
        std::fill(pr, pr + np, 0.0f);
        std::fill(dsr, dsr + np, 0.0f);
        continue;
      }
      const int i = i0 + r;
      Vec dot = {};
      for (int c = 0; c < D; c += kWidth) dot += Load(d_out + i * D + c) * Load(out + i * D + c);
      const float delta = Sum(dot);  // rowsum(d_out * out) = sum_j p_j d p_j
      for (int c = 0; c < np; c += kWidth) {
        const Vec w = Exp(Load(pr + c) - lse[i]);
        Store(pr + c, w);
        Store(dsr + c, w * (Load(dsr + c) - delta));
      }
      std::fill(pr + n, pr + np, 0.0f);
      std::fill(dsr + n, dsr + np, 0.0f);
    }
    Vec acc[Rows<D>()][D / kWidth] = {};
    Vec qr[Rows<D>()][D / kWidth], gr[Rows<D>()][D / kWidth];
    for (int r = 0; r < Rows<D>(); ++r)
      for (int c = 0; c < D / kWidth; ++c) {
        const int row = std::min(i0 + r, n - 1);
        qr[r][c] = Load(q + row * D + c * kWidth);
        gr[r][c] = Load(d_out + row * D + c * kWidth);
      }
    for (int j = 0; j < n; ++j)
      for (int c = 0; c < D / kWidth; ++c) {
        const Vec kj = Load(k + j * D + c * kWidth);
        Vec dkj = Load(dk + j * D + c * kWidth), dvj = Load(dv + j * D + c * kWidth);
        for (int r = 0; r < Rows<D>(); ++r) {
          const float dsv = ds[r * np + j];
          acc[r][c] += dsv * kj;
          dkj += dsv * qr[r][c];
          dvj += p[r * np + j] * gr[r][c];
        }
        Store(dk + j * D + c * kWidth, dkj);
        Store(dv + j * D + c * kWidth, dvj);
      }
    for (int r = 0; r < Rows<D>() && i0 + r < n; ++r)
      for (int c = 0; c < D / kWidth; ++c) Store(dq + (i0 + r) * D + c * kWidth, acc[r][c]);
  }
}

// The fused projection's layout: qkv is (B, N, 3, H, D) before its bias (3, H, D) is added, out
// and d_out are (B, N, H, D), lse is (B, H, N). One task per (batch, head) gathers its rows into
// contiguous (N, D) arrays, adding the bias (q also times the softmax scale), runs the head, and
// scatters the results back: neither the bias add's pass over qkv nor the heads-major transposes
// XLA would otherwise make around the attention are materialised.
struct Layout {
  int64_t batch, n, heads;
  int d;
  int64_t Tasks() const { return batch * heads; }
  // Offsets of row 0 of (b, part, h) in qkv and of (b, h) in out, with their row strides.
  int64_t QkvBase(int64_t task, int part) const {
    return (task / heads) * n * 3 * heads * d + (part * heads + task % heads) * d;
  }
  int64_t QkvStride() const { return 3 * heads * d; }
  // Offset of (part, h) in the projection's bias (3, H, D).
  int64_t BiasBase(int64_t task, int part) const { return (part * heads + task % heads) * d; }
  int64_t OutBase(int64_t task) const { return (task / heads) * n * heads * d + (task % heads) * d; }
  int64_t OutStride() const { return heads * d; }
};

// dst row i = (src row i + bias) * scale; bias is null for rows that have none (out, d_out).
template <int D>
void Gather(const float* src, int64_t stride, int n, const float* bias, float scale, float* dst) {
  Vec b[D / kWidth] = {};
  if (bias)
    for (int c = 0; c < D / kWidth; ++c) b[c] = Load(bias + c * kWidth);
  for (int i = 0; i < n; ++i)
    for (int c = 0; c < D / kWidth; ++c)
      Store(dst + i * D + c * kWidth, (Load(src + i * stride + c * kWidth) + b[c]) * scale);
}

template <int D>
void Scatter(const float* src, int n, float scale, float* dst, int64_t stride) {
  for (int i = 0; i < n; ++i)
    for (int c = 0; c < D; c += kWidth) Store(dst + i * stride + c, Load(src + i * D + c) * scale);
}

template <int D>
struct ForwardKernel {
  static void Run(ffi::ThreadPool* pool, Layout l, float scale, const float* qkv,
                  const float* bias, float* out, float* lse) {
    const int n = static_cast<int>(l.n);
    ParallelFor(*pool, l.Tasks(), [&](int64_t task) {
      float* q = Scratch(static_cast<size_t>(4 * D + D + Rows<D>()) * Padded(n));
      float *k = q + n * D, *v = k + n * D, *o = v + n * D;
      Gather<D>(qkv + l.QkvBase(task, 0), l.QkvStride(), n, bias + l.BiasBase(task, 0), scale, q);
      Gather<D>(qkv + l.QkvBase(task, 1), l.QkvStride(), n, bias + l.BiasBase(task, 1), 1.0f, k);
      Gather<D>(qkv + l.QkvBase(task, 2), l.QkvStride(), n, bias + l.BiasBase(task, 2), 1.0f, v);
      ForwardHead<D>(q, k, v, o, lse + task * n, n, o + n * D);
      Scatter<D>(o, n, 1.0f, out + l.OutBase(task), l.OutStride());
    });
  }
};

template <int D>
struct BackwardKernel {
  static void Run(ffi::ThreadPool* pool, Layout l, float scale, const float* qkv,
                  const float* bias, const float* out, const float* lse, const float* d_out,
                  float* d_qkv) {
    const int n = static_cast<int>(l.n);
    ParallelFor(*pool, l.Tasks(), [&](int64_t task) {
      float* q = Scratch(static_cast<size_t>(8 * D + 2 * D + 2 * Rows<D>()) * Padded(n));
      float *k = q + n * D, *v = k + n * D, *o = v + n * D, *g = o + n * D;
      float *dq = g + n * D, *dk = dq + n * D, *dv = dk + n * D;
      Gather<D>(qkv + l.QkvBase(task, 0), l.QkvStride(), n, bias + l.BiasBase(task, 0), scale, q);
      Gather<D>(qkv + l.QkvBase(task, 1), l.QkvStride(), n, bias + l.BiasBase(task, 1), 1.0f, k);
      Gather<D>(qkv + l.QkvBase(task, 2), l.QkvStride(), n, bias + l.BiasBase(task, 2), 1.0f, v);
      Gather<D>(out + l.OutBase(task), l.OutStride(), n, nullptr, 1.0f, o);
      Gather<D>(d_out + l.OutBase(task), l.OutStride(), n, nullptr, 1.0f, g);
      BackwardHead<D>(q, k, v, o, lse + task * n, g, dq, dk, dv, n, dv + n * D);
      Scatter<D>(dq, n, scale, d_qkv + l.QkvBase(task, 0), l.QkvStride());
      Scatter<D>(dk, n, 1.0f, d_qkv + l.QkvBase(task, 1), l.QkvStride());
      Scatter<D>(dv, n, 1.0f, d_qkv + l.QkvBase(task, 2), l.QkvStride());
    });
  }
};

template <template <int> class Kernel, typename... Args>
ffi::Error Dispatch(int d, Args... args) {
  switch (d) {
    case 16: Kernel<16>::Run(args...); return ffi::Error::Success();
    case 32: Kernel<32>::Run(args...); return ffi::Error::Success();
    case 48: Kernel<48>::Run(args...); return ffi::Error::Success();
    case 64: Kernel<64>::Run(args...); return ffi::Error::Success();
    case 80: Kernel<80>::Run(args...); return ffi::Error::Success();
    case 96: Kernel<96>::Run(args...); return ffi::Error::Success();
    case 128: Kernel<128>::Run(args...); return ffi::Error::Success();
  }
  return ffi::Error::InvalidArgument(
      "msm_attention: head width must be one of 16, 32, 48, 64, 80, 96, 128");
}

ffi::Error LayoutOf(const F32& qkv, const F32& bias, Layout* l) {
  const auto dims = qkv.dimensions();
  if (dims.size() != 5 || dims[2] != 3)
    return ffi::Error::InvalidArgument("msm_attention: qkv must be (batch, tokens, 3, heads, width)");
  const auto b = bias.dimensions();
  if (b.size() != 3 || b[0] != 3 || b[1] != dims[3] || b[2] != dims[4])
    return ffi::Error::InvalidArgument("msm_attention: bias must be (3, heads, width)");
  *l = Layout{dims[0], dims[1], dims[3], static_cast<int>(dims[4])};
  return ffi::Error::Success();
}

ffi::Error Forward(ffi::ThreadPool pool, F32 qkv, F32 bias, F32Out out, F32Out lse,
                   float scale) {
  Layout l;
  if (ffi::Error e = LayoutOf(qkv, bias, &l); e.failure()) return e;
  return Dispatch<ForwardKernel>(l.d, &pool, l, scale, qkv.typed_data(), bias.typed_data(),
                                 out->typed_data(), lse->typed_data());
}

ffi::Error Backward(ffi::ThreadPool pool, F32 qkv, F32 bias, F32 out, F32 lse, F32 d_out,
                    F32Out d_qkv, float scale) {
  Layout l;
  if (ffi::Error e = LayoutOf(qkv, bias, &l); e.failure()) return e;
  return Dispatch<BackwardKernel>(l.d, &pool, l, scale, qkv.typed_data(), bias.typed_data(),
                                  out.typed_data(), lse.typed_data(), d_out.typed_data(),
                                  d_qkv->typed_data());
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(MsmAttentionForward, Forward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<F32>()  // qkv (B, N, 3, H, D): the projection's x @ kernel
                                  .Arg<F32>()  // its bias (3, H, D)
                                  .Ret<F32>()  // out (B, N, H, D)
                                  .Ret<F32>()  // lse (B, H, N)
                                  .Attr<float>("scale"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(MsmAttentionBackward, Backward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<F32>()  // qkv
                                  .Arg<F32>()  // bias
                                  .Arg<F32>()  // out
                                  .Arg<F32>()  // lse
                                  .Arg<F32>()  // d_out
                                  .Ret<F32>()  // d_qkv (B, N, 3, H, D), also the bias's per row
                                  .Attr<float>("scale"));
