"""Multi-head softmax attention, by the fastest path the platform has:
  - CPU, float32, with msm_jax.cpu_kernels' switch on (the default there): msm_jax/kernels'
    fused C++ kernel (`self_attention`), built on first use with the machine's compiler; it takes
    the fused QKV projection directly and never stores the (N, N) weights (flash-attention
    style). ~2x faster forward + backward than the formula below on the paper's decoder heads,
    on par with PyTorch's fused CPU kernel.
  - NVIDIA GPU, bfloat16/float16: cuDNN's flash kernel through jax.nn.dot_product_attention
    (`attention`): the paper's ViT-S MSM step ~1.5x faster on an H100 (docs/performance.md).
    The kernel wants an even token count when training, and MSM's are odd (196 patches + CLS):
    one zero query/key is appended and masked out by length.
  - Everything else (TPU, CPU without a C++ compiler or with the switch off, bfloat16 on CPU):
    the formula `softmax_attention` on heads-major (B, H, N, Dh) arrays, with a hand-written
    backward pass.

Why not let autodiff do it: differentiating softmax(q k^T) v contracts the (N, N) weight matrix
over its *query* axis twice (for dk and dv). XLA:CPU sends such a product, whose large operand
is contracted along its major axis and comes out transposed, to a generic kernel that runs
several times slower than the rest; autodiff also keeps more (N, N) temporaries alive. Here the
backward pass
  - keeps the forward's unnormalised weights w = exp(logits - max) and their row sums s, so
    nothing is recomputed (the probabilities are w / s);
  - folds 1 / s into the (N, Dh) operands instead of touching the (N, N) arrays again;
  - writes both query-axis contractions as (Dh x N) @ (N x N) products whose result stays in
    that layout (an optimization barrier stops XLA from turning it back into the slow form).
On the paper's ViT-S decoder (197 tokens, 16 heads of 16) forward + backward of the attention
takes ~35% less time on CPU than autodiff's; values and gradients equal the textbook formula's
to float rounding (tests/test_models.py).

Logits, softmax statistics and accumulation are float32 whatever the compute dtype; the weights
enter the products with v in the compute dtype, as in the forward pass.
"""
import jax
import jax.numpy as jnp

from msm_jax import cpu_kernels

_F32 = jnp.float32


def _dot(spec: str, a, b):
  return jnp.einsum(spec, a, b, preferred_element_type=_F32)


def _query_contraction(small, big):
  """sum_q small[..., q, d] * big[..., q, k] -> [..., k, d], computed as (d x q) @ (q x k)."""
  out = _dot("...dq,...qk->...dk", jnp.swapaxes(small, -1, -2), big)
  return jnp.swapaxes(jax.lax.optimization_barrier(out), -1, -2)


def _forward(q, k, v):
  logits = _dot("...qd,...kd->...qk", q, k)
  weights = jnp.exp(logits - logits.max(axis=-1, keepdims=True))
  sums = weights.sum(axis=-1, keepdims=True)
  weights = weights.astype(q.dtype)
  out = (_dot("...qk,...kd->...qd", weights, v) / sums).astype(q.dtype)
  return out, (q, k, v, weights, sums, out)


def _backward(residuals, d_out):
  q, k, v, weights, sums, out = residuals
  dtype = q.dtype
  d_scaled = d_out.astype(_F32) / sums  # d_out / s: the softmax's 1/s applied on (N, Dh)
  # d logits = p * (d p - rowsum(d_out * out)), with p = w / s and d p = d_out v^T.
  row = jnp.sum(d_scaled * out.astype(_F32), axis=-1, keepdims=True)
  d_scaled = d_scaled.astype(dtype)
  d_logits = (weights * (_dot("...qd,...kd->...qk", d_scaled, v) - row)).astype(dtype)
  dq = _dot("...qk,...kd->...qd", d_logits, k)
  dk = _query_contraction(q, d_logits)
  dv = _query_contraction(d_scaled, weights)
  return dq.astype(dtype), dk.astype(dtype), dv.astype(dtype)


@jax.custom_vjp
def softmax_attention(q, k, v):
  """softmax(q k^T) v over the last two axes; q already carries the 1/sqrt(Dh) scale."""
  return _forward(q, k, v)[0]


softmax_attention.defvjp(_forward, _backward)


def fused_attention(q, k, v, implementation: str):
  """softmax(q k^T) v by jax.nn.dot_product_attention ("cudnn" or "xla"), on heads-major arrays;
  an odd token count is padded to an even one and the pad masked out by sequence length."""
  n = q.shape[-2]
  pad = n % 2
  to_tokens_major = lambda x: jnp.swapaxes(jnp.pad(x, ((0, 0), (0, 0), (0, pad), (0, 0))), 1, 2)
  lengths = jnp.full(q.shape[:1], n, jnp.int32) if pad else None
  out = jax.nn.dot_product_attention(
      *map(to_tokens_major, (q, k, v)), scale=1.0, query_seq_lengths=lengths,
      key_value_seq_lengths=lengths, implementation=implementation)
  return jnp.swapaxes(out, 1, 2)[:, :, :n]


def uses_cudnn(q) -> bool:
  """Whether cuDNN's flash attention takes q: half precision, a head width divisible by 8 and at
  most 128, on an NVIDIA GPU of compute capability 8.0 (Ampere) or later."""
  device = jax.devices()[0]
  try:  # CUDA devices report e.g. "9.0"; other platforms have no such attribute
    capability = float(getattr(device, "compute_capability", "0"))
  except ValueError:
    capability = 0.0
  head_dim = q.shape[-1]
  return (device.platform == "gpu" and capability >= 8.0
          and q.dtype in (jnp.bfloat16, jnp.float16) and head_dim % 8 == 0 and head_dim <= 128)


def attention(q, k, v):
  """softmax(q k^T) v over (B, H, N, Dh) arrays; q already carries the 1/sqrt(Dh) scale."""
  if uses_cudnn(q):
    return fused_attention(q, k, v, "cudnn")
  return softmax_attention(q, k, v)


def uses_cpu_kernel(qkv) -> bool:
  """Whether msm_jax/kernels' fused C++ kernel takes qkv: the CPU kernels switched on, float32, a
  head width it is built for, and a C++ compiler on this machine."""
  return cpu_kernels.supports("attention", qkv)


def self_attention(qkv, bias):
  """Multi-head self-attention from the fused projection before its bias, qkv (B, N, 3, H, Dh),
  and that bias (3, H, Dh), to the heads' outputs (B, N, H, Dh): the C++ kernel on CPU where it
  runs (it adds the bias as it reads qkv), else `attention` on heads-major arrays."""
  if uses_cpu_kernel(qkv):
    return cpu_kernels.kernel("attention").self_attention(qkv, bias)
  qkv = qkv + bias
  head_dim = qkv.shape[-1]
  q, k, v = (jnp.swapaxes(qkv[:, :, i], 1, 2) for i in range(3))
  out = attention(q * jnp.asarray(head_dim**-0.5, qkv.dtype), k, v)
  return jnp.swapaxes(out, 1, 2)
