"""Multi-head self-attention on CPU by the fused C++ kernel in attention_cpu.cc (float32).

The kernel saves only the output and each query's log-sum-exp; its backward pass recomputes
the weights block by block. On the paper's ViT-S decoder attention (16 heads of 16, 197 tokens,
batch 16) forward + backward takes ~30 ms against ~85 ms for the XLA formula in
msm_jax/models/attention.py and ~35 ms for PyTorch's fused CPU kernel (docs/performance.md;
benchmarks/attention_cpu.py times it against another checkout's).

It reads the fused QKV projection (B, N, 3, H, D) before its bias, adding the bias as it gathers
each head's rows, and writes (B, N, H, D) directly, so neither the bias add's pass over the
projection nor the heads-major transposes around the attention are materialised. Under jit over
a device mesh each device runs the kernel on its own (batch, head) slices: the custom
partitioning below keeps the batch and head axes' sharding and the token and width axes whole.
"""
import jax
import jax.numpy as jnp
import numpy as np

from msm_jax.kernels import native, partitioning

HEAD_WIDTHS = (16, 32, 48, 64, 80, 96, 128)  # the widths attention_cpu.cc is instantiated for
_FORWARD, _BACKWARD = "msm_attention_forward", "msm_attention_backward"
_SOURCE = "attention_cpu.cc"
_HANDLERS = {_FORWARD: "MsmAttentionForward", _BACKWARD: "MsmAttentionBackward"}  # target: symbol


def _registered() -> bool:
  return native.register(_SOURCE, **_HANDLERS)


def supports(qkv) -> bool:
  """Whether the kernel takes qkv (float32, a head width it is built for) and could be built."""
  return qkv.dtype == jnp.float32 and qkv.shape[-1] in HEAD_WIDTHS and _registered()


def _layouts(qkv_sharding):
  """Shardings of (qkv, out, lse, bias, the bias gradient's per-sample shares) that keep qkv's
  batch and head axes and the rest whole."""
  spec = partitioning.spec_of(qkv_sharding, 5)
  batch, heads = spec[0], spec[3]
  return (partitioning.named(qkv_sharding, batch, None, None, heads, None),
          partitioning.named(qkv_sharding, batch, None, heads, None),
          partitioning.named(qkv_sharding, batch, heads, None),
          partitioning.named(qkv_sharding, None, heads, None),
          partitioning.named(qkv_sharding, batch, None, heads, None))


def _scale(qkv):
  return np.float32(qkv.shape[-1]**-0.5)


def _forward_call(qkv, bias):
  native.require(_SOURCE, **_HANDLERS)
  b, n, _, h, d = qkv.shape
  shapes = (jax.ShapeDtypeStruct((b, n, h, d), qkv.dtype), jax.ShapeDtypeStruct((b, h, n), qkv.dtype))
  return tuple(jax.ffi.ffi_call(_FORWARD, shapes)(qkv, bias, scale=_scale(qkv)))


def _backward_call(qkv, bias, out, lse, d_out):
  native.require(_SOURCE, **_HANDLERS)
  b, _, _, h, d = qkv.shape
  shapes = (jax.ShapeDtypeStruct(qkv.shape, qkv.dtype),  # d_qkv
            jax.ShapeDtypeStruct((b, 3, h, d), qkv.dtype))  # the bias gradient, per sample
  return tuple(jax.ffi.ffi_call(_BACKWARD, shapes)(qkv, bias, out, lse, d_out, scale=_scale(qkv)))


_QKV, _OUT, _LSE, _BIAS, _BIAS_SHARES = range(5)
_WHOLE = ("n", "t", "d")  # tokens, the q/k/v axis and the head width
_forward = partitioning.partitioned(_forward_call, _layouts, (_QKV, _BIAS), (_OUT, _LSE),
                                    "b n t h d, t h d -> b n h d, b h n", _WHOLE)
_backward = partitioning.partitioned(
    _backward_call, _layouts, (_QKV, _BIAS, _OUT, _LSE, _OUT), (_QKV, _BIAS_SHARES),
    "b n t h d, t h d, b n h d, b h n, b n h d -> b n t h d, b t h d", _WHOLE)


@jax.custom_vjp
def self_attention(qkv, bias):
  """softmax(q k^T / sqrt(D)) v per head, from the fused projection before its bias, qkv
  (B, N, 3, H, D) float32, and the bias (3, H, D), to the heads' outputs (B, N, H, D)."""
  return _forward(qkv, bias)[0]


def _vjp_forward(qkv, bias):
  out, lse = _forward(qkv, bias)
  return out, (qkv, bias, out, lse)


def _vjp_backward(residuals, d_out):
  d_qkv, d_bias_shares = _backward(*residuals, d_out)
  return d_qkv, d_bias_shares.sum(0)  # over samples (and devices, by XLA's collectives)


self_attention.defvjp(_vjp_forward, _vjp_backward)
