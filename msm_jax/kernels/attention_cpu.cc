// Fused softmax attention for XLA:CPU (float32), registered with JAX through the XLA FFI.
//
// Why: on CPU, XLA materialises the (N, N) attention weights and runs the products that touch
// them through generic matmul kernels; with narrow heads (the paper's decoder: 16 heads of 16)
// those products run at a fraction of the matmul peak and the weights cost 40 MB of memory
// traffic per layer. Here each (batch, head) pair is one task: its keys and values stay in L1/L2,
// the weights exist one block of 48 queries (forward) or keys (backward) at a time, and the
// backward pass recomputes them from the saved log-sum-exp (flash-attention style) instead of
// storing them.
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

// Every product below is a block of out = A B with B's rows read as vectors and A's entries
// broadcast, R x C vectors at a time: each step loads R scalars and C vectors and does R * C
// FMAs. On the VM we measured, 512-bit loads ran at about one per cycle (broadcasts slower), so
// the blocks are as wide as the registers allow (fewest loads per FMA) and every operand layout is
// chosen so that the reduction runs down B's rows: the weights are computed transposed (keys x
// queries) for the query-side products and untransposed (queries x keys) for the key side.
constexpr int kRows = 8;  // R: with C = 3 vectors, 24 accumulators of the 32 registers
constexpr int kBlock = 3;  // C: queries (or keys) per block, in vectors
constexpr int kBlockWidth = kBlock * kWidth;

int Padded(int n) { return (n + kWidth - 1) / kWidth * kWidth; }

// out[r * out_stride + u * kWidth + l] (plus its value before, if `accumulate`) = sum over
// t < count of a[r * AR + t * AT] * b[t * B + u * kWidth + l] for r < R, u < C, lanes l, where
// A's row and step strides AR, AT and B's row stride are compile-time constants or `b_stride`
// (B == 0).
template <int R, int C, int AR, int AT, int B = 0>
inline void Product(const float* a, const float* b, int b_stride, int count, float* out,
                    int out_stride, bool accumulate = false) {
  const int stride = B ? B : b_stride;
  Vec acc[R][C] = {};
  if (accumulate)
    for (int r = 0; r < R; ++r)
      for (int u = 0; u < C; ++u) acc[r][u] = Load(out + r * out_stride + u * kWidth);
  for (int t = 0; t < count; ++t) {
    Vec bv[C];
    for (int u = 0; u < C; ++u) bv[u] = Load(b + t * stride + u * kWidth);
    for (int r = 0; r < R; ++r)
      for (int u = 0; u < C; ++u) acc[r][u] += a[r * AR + t * AT] * bv[u];
  }
  for (int r = 0; r < R; ++r)
    for (int u = 0; u < C; ++u) Store(out + r * out_stride + u * kWidth, acc[r][u]);
}

// The rows x C-vector block (row stride C vectors) of a (rows, D) row-major times bt (D, ...) with
// row stride `bt_stride`: logits of keys x queries (a = k, bt = q^T) or queries x keys (a = q,
// bt = k^T), and the weights' gradient d_out v^T.
template <int D, int C>
void RowsTimesTransposed(const float* a, int rows, const float* bt, int bt_stride, float* out) {
  constexpr int W = C * kWidth;
  int r = 0;
  for (; r + kRows <= rows; r += kRows)
    Product<kRows, C, D, 1>(a + r * D, bt, bt_stride, D, out + r * W, W);
  for (; r < rows; ++r) Product<1, C, D, 1>(a + r * D, bt, bt_stride, D, out + r * W, W);
}

// out_t (D, C vectors; row stride out_stride) = x^T w (plus out_t, if `accumulate`) for x (rows, D)
// row-major and w (rows, C vectors; row stride w_stride): the products that reduce over the
// weights' rows (p v and the gradients of q, k and v), D / 8 passes over w.
template <int D, int C>
void TransposedTimes(const float* x, int rows, const float* w, int w_stride, float* out_t,
                     int out_stride, bool accumulate = false) {
  for (int d = 0; d < D; d += kRows)
    Product<kRows, C, 1, D>(x + d, w, w_stride, rows, out_t + d * out_stride, out_stride,
                            accumulate);
}

// dst[j * dst_stride + i] = src[i * src_stride + j] for j < dst_rows (at most `columns`, a
// multiple of 16) and i < Padded(rows), by register tiles (TransposeTile); columns i >= rows of
// dst get copies of src's last row.
void TransposeTiles(const float* src, int src_stride, int rows, int columns, float* dst,
                    int dst_stride, int dst_rows) {
  for (int i0 = 0; i0 < rows; i0 += kWidth)
    for (int j0 = 0; j0 < std::min(columns, dst_rows); j0 += kWidth) {
      Vec tile[kWidth];
      for (int r = 0; r < kWidth; ++r)
        tile[r] = Load(src + std::min(i0 + r, rows - 1) * src_stride + j0);
      TransposeTile(tile);
      for (int r = 0; r < kWidth && j0 + r < dst_rows; ++r)
        Store(dst + (j0 + r) * dst_stride + i0, tile[r]);
    }
}

// Calls fn(first, std::integral_constant<int, C>) for blocks of kBlock vectors covering np
// columns, the last block narrower.
template <typename Fn>
void ForEachBlock(int np, const Fn& fn) {
  int c = 0;
  for (; c + kBlockWidth <= np; c += kBlockWidth) fn(c, std::integral_constant<int, kBlock>());
  if (np - c == 2 * kWidth) fn(c, std::integral_constant<int, 2>());
  if (np - c == kWidth) fn(c, std::integral_constant<int, 1>());
  static_assert(kBlock == 3, "the tail cases above cover 1 and 2 vectors");
}

// One head's forward pass on contiguous (n, D) arrays, a block of queries at a time (their
// columns vectors): s_t = k q^T (keys x queries), the softmax down each column, out^T = v^T s_t.
// scratch holds D Padded(n) + (n + D) kBlockWidth floats.
template <int D>
void ForwardHead(const float* q, const float* k, const float* v, float* out, float* lse, int n,
                 float* scratch) {
  const int np = Padded(n);
  float* qt = scratch;
  float* s = qt + D * np;
  float* out_t = s + n * kBlockWidth;
  TransposeTiles(q, D, n, D, qt, np, D);
  ForEachBlock(np, [&](int i0, auto columns) {
    constexpr int C = decltype(columns)::value, W = C * kWidth;
    RowsTimesTransposed<D, C>(k, n, qt + i0, np, s);
    Vec top[C], total[C] = {};
    for (int u = 0; u < C; ++u) top[u] = Load(s + u * kWidth);
    for (int j = 1; j < n; ++j)
      for (int u = 0; u < C; ++u) {
        const Vec x = Load(s + j * W + u * kWidth);
        top[u] = x > top[u] ? x : top[u];
      }
    for (int j = 0; j < n; ++j)
      for (int u = 0; u < C; ++u) {  // C independent exps per step: see Exp
        const Vec w = Exp(Load(s + j * W + u * kWidth) - top[u]);
        Store(s + j * W + u * kWidth, w);
        total[u] += w;
      }
    TransposedTimes<D, C>(v, n, s, W, out_t, W);
    const int count = std::min(W, n - i0);  // queries in the block; the rest are padding
    float log_total[W];
    for (int u = 0; u < C; ++u) {
      const Vec inv = 1.0f / total[u];
      for (int d = 0; d < D; ++d)
        Store(out_t + d * W + u * kWidth, Load(out_t + d * W + u * kWidth) * inv);
      for (int l = 0; l < kWidth; ++l)
        log_total[u * kWidth + l] = top[u][l] + std::log(total[u][l]);
    }
    std::copy(log_total, log_total + count, lse + i0);
    TransposeTiles(out_t, W, D, W, out + i0 * D, D, count);
  });
}

// One head's backward pass on contiguous (n, D) arrays, a block of keys at a time: p and d_s
// (queries x the block's keys, recomputed from lse) give d_v^T = d_out^T p and d_k^T = q^T d_s
// down their rows; d_q^T = k^T d_s^T accumulates over the blocks from d_s transposed, which costs
// a transpose but saves recomputing the weights in the other layout. scratch holds
// (3 D + 1 + kBlockWidth) Padded(n) + (2 n + 2 D) kBlockWidth floats.
template <int D>
void BackwardHead(const float* q, const float* k, const float* v, const float* out,
                  const float* lse, const float* d_out, float* dq, float* dk, float* dv, int n,
                  float* scratch) {
  const int np = Padded(n);
  float *kt = scratch, *vt = kt + D * np, *dq_t = vt + D * np;
  float* delta = dq_t + D * np;  // rowsum(d_out * out) = sum_j p_j d p_j
  float* p = delta + np;
  float* ds = p + n * kBlockWidth;
  float* ds_t = ds + n * kBlockWidth;  // (kBlockWidth, np)
  float* result_t = ds_t + kBlockWidth * np;  // (2 D, kBlockWidth): d_k^T and d_v^T
  TransposeTiles(k, D, n, D, kt, np, D);
  TransposeTiles(v, D, n, D, vt, np, D);
  std::fill(dq_t, dq_t + D * np, 0.0f);
  for (int i = 0; i < n; ++i) {
    Vec dot = {};
    for (int c = 0; c < D; c += kWidth) dot += Load(d_out + i * D + c) * Load(out + i * D + c);
    delta[i] = Sum(dot);
  }
  ForEachBlock(np, [&](int j0, auto columns) {
    constexpr int C = decltype(columns)::value, W = C * kWidth;
    const int count = std::min(W, n - j0);  // keys in the block; the rest are padding
    RowsTimesTransposed<D, C>(q, n, kt + j0, np, p);
    RowsTimesTransposed<D, C>(d_out, n, vt + j0, np, ds);  // d p
    for (int i = 0; i < n; ++i)
      for (int u = 0; u < C; ++u) {  // C independent exps per step: see Exp
        const int c = i * W + u * kWidth;
        const Vec w = Exp(Load(p + c) - lse[i]);
        Store(p + c, w);
        Store(ds + c, w * (Load(ds + c) - delta[i]));
      }
    TransposedTimes<D, C>(q, n, ds, W, result_t, W);
    TransposedTimes<D, C>(d_out, n, p, W, result_t + D * W, W);
    TransposeTiles(result_t, W, D, W, dk + j0 * D, D, count);
    TransposeTiles(result_t + D * W, W, D, W, dv + j0 * D, D, count);
    TransposeTiles(ds, W, n, W, ds_t, np, count);
    ForEachBlock(np, [&](int i0, auto query_columns) {
      constexpr int Q = decltype(query_columns)::value;
      TransposedTimes<D, Q>(k + j0 * D, count, ds_t + i0, np, dq_t + i0, np, true);
    });
  });
  TransposeTiles(dq_t, np, D, np, dq, D, n);
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
  // Offset of (part, h) in the projection's bias (3, H, D), and of (b, part, h) in the per-sample
  // shares of its gradient (B, 3, H, D).
  int64_t BiasBase(int64_t task, int part) const { return (part * heads + task % heads) * d; }
  int64_t BiasShareBase(int64_t task, int part) const {
    return (task / heads) * 3 * heads * d + BiasBase(task, part);
  }
  int64_t OutBase(int64_t task) const { return (task / heads) * n * heads * d + (task % heads) * d; }
  int64_t OutStride() const { return heads * d; }
};

// A head's rows are D floats (one to eight cache lines) a whole token's projection apart
// (kilobytes), a pattern the hardware prefetchers do not follow: each row would be a cache miss
// waited for in turn. Gather and Scatter ask for the row kPrefetchRows ahead (in a single-thread
// driver, the encoder's gathers took ~30 % less time).
constexpr int kPrefetchRows = 8;

template <int D>
inline void PrefetchRow(const float* row, bool write) {
  for (int c = 0; c < D; c += kWidth)
    write ? __builtin_prefetch(row + c, 1) : __builtin_prefetch(row + c);
}

// dst row i = (src row i + bias) * scale; bias is null for rows that have none (out, d_out).
template <int D>
void Gather(const float* src, int64_t stride, int n, const float* bias, float scale, float* dst) {
  Vec b[D / kWidth] = {};
  if (bias)
    for (int c = 0; c < D / kWidth; ++c) b[c] = Load(bias + c * kWidth);
  for (int i = 0; i < std::min(n, kPrefetchRows); ++i) PrefetchRow<D>(src + i * stride, false);
  for (int i = 0; i < n; ++i) {
    if (i + kPrefetchRows < n) PrefetchRow<D>(src + (i + kPrefetchRows) * stride, false);
    for (int c = 0; c < D / kWidth; ++c)
      Store(dst + i * D + c * kWidth, (Load(src + i * stride + c * kWidth) + b[c]) * scale);
  }
}

template <int D>
void Scatter(const float* src, int n, float scale, float* dst, int64_t stride) {
  for (int i = 0; i < std::min(n, kPrefetchRows); ++i) PrefetchRow<D>(dst + i * stride, true);
  for (int i = 0; i < n; ++i) {
    if (i + kPrefetchRows < n) PrefetchRow<D>(dst + (i + kPrefetchRows) * stride, true);
    for (int c = 0; c < D; c += kWidth) Store(dst + i * stride + c, Load(src + i * D + c) * scale);
  }
}

template <int D>
struct ForwardKernel {
  static void Run(ffi::ThreadPool* pool, Layout l, float scale, const float* qkv,
                  const float* bias, float* out, float* lse) {
    const int n = static_cast<int>(l.n);
    ParallelFor(*pool, l.Tasks(), [&](int64_t task) {
      float* q = Scratch(static_cast<size_t>(5 * D) * Padded(n) + (n + D) * kBlockWidth);
      float *k = q + n * D, *v = k + n * D, *o = v + n * D;
      Gather<D>(qkv + l.QkvBase(task, 0), l.QkvStride(), n, bias + l.BiasBase(task, 0), scale, q);
      Gather<D>(qkv + l.QkvBase(task, 1), l.QkvStride(), n, bias + l.BiasBase(task, 1), 1.0f, k);
      Gather<D>(qkv + l.QkvBase(task, 2), l.QkvStride(), n, bias + l.BiasBase(task, 2), 1.0f, v);
      ForwardHead<D>(q, k, v, o, lse + task * n, n, o + n * D);
      Scatter<D>(o, n, 1.0f, out + l.OutBase(task), l.OutStride());
    });
  }
};

// out[c] = scale * sum over rows i < n of src[i * D + c].
template <int D>
void SumRows(const float* src, int n, float scale, float* out) {
  Vec sum[D / kWidth] = {};
  for (int i = 0; i < n; ++i)
    for (int c = 0; c < D / kWidth; ++c) sum[c] += Load(src + i * D + c * kWidth);
  for (int c = 0; c < D / kWidth; ++c) Store(out + c * kWidth, sum[c] * scale);
}

template <int D>
struct BackwardKernel {
  static void Run(ffi::ThreadPool* pool, Layout l, float scale, const float* qkv,
                  const float* bias, const float* out, const float* lse, const float* d_out,
                  float* d_qkv, float* d_bias) {
    const int n = static_cast<int>(l.n);
    ParallelFor(*pool, l.Tasks(), [&](int64_t task) {
      float* q = Scratch(static_cast<size_t>(8 * D + 3 * D + 1 + kBlockWidth) * Padded(n) +
                         (2 * n + 2 * D) * kBlockWidth);
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
      // The bias's gradient, this sample's share, from the rows while they are in cache (a
      // separate reduction over d_qkv would read it all back from memory).
      SumRows<D>(dq, n, scale, d_bias + l.BiasShareBase(task, 0));
      SumRows<D>(dk, n, 1.0f, d_bias + l.BiasShareBase(task, 1));
      SumRows<D>(dv, n, 1.0f, d_bias + l.BiasShareBase(task, 2));
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
                    F32Out d_qkv, F32Out d_bias, float scale) {
  Layout l;
  if (ffi::Error e = LayoutOf(qkv, bias, &l); e.failure()) return e;
  return Dispatch<BackwardKernel>(l.d, &pool, l, scale, qkv.typed_data(), bias.typed_data(),
                                  out.typed_data(), lse.typed_data(), d_out.typed_data(),
                                  d_qkv->typed_data(), d_bias->typed_data());
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
                                  .Ret<F32>()  // the bias's, summed per sample (B, 3, H, D)
                                  .Attr<float>("scale"));
