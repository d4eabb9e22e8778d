"""Transformer building blocks shared by the MSM encoder, its decoder and the finetuning heads.

Compute dtype is a module field (float32 or bfloat16); parameters are always float32, LayerNorm
statistics are computed in float32 by flax, and attention logits/softmax are float32.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from msm_jax.models.attention import self_attention
from msm_jax.models.dense import Dense, bias_gelu
from msm_jax.models.norm import LayerNorm

Dtype = Any

# Same initialisers as the MAE/ViT reference: xavier-uniform Dense kernels, zero biases.
dense_init = nn.initializers.xavier_uniform()


class Attention(nn.Module):
  """Multi-head self-attention with one fused QKV projection (one large matmul is faster)."""
  num_heads: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    b, n, d = x.shape
    if d % self.num_heads:
      raise ValueError(f"width {d} is not divisible by num_heads {self.num_heads}")
    head_dim = d // self.num_heads
    split = lambda t: t.reshape(*t.shape[:-1], 3, self.num_heads, head_dim)
    attend = lambda qkv, bias: self_attention(split(qkv), split(bias))  # adds the bias itself
    out = Dense(3 * d, dtype=self.dtype, kernel_init=dense_init, epilogue=attend, name="qkv")(x)
    return Dense(d, dtype=self.dtype, kernel_init=dense_init, name="out")(out.reshape(b, n, d))


class Mlp(nn.Module):
  hidden: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    d = x.shape[-1]
    x = Dense(self.hidden, dtype=self.dtype, kernel_init=dense_init, epilogue=bias_gelu,
              name="fc1")(x)
    return Dense(d, dtype=self.dtype, kernel_init=dense_init, name="fc2")(x)


class DropPath(nn.Module):
  """Stochastic depth: drops the whole residual branch per sample (finetuning regulariser)."""
  rate: float

  @nn.compact
  def __call__(self, x, deterministic: bool):
    if deterministic or self.rate == 0.0:
      return x
    keep = 1.0 - self.rate
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    mask = jax.random.bernoulli(self.make_rng("dropout"), keep, shape)
    return jnp.where(mask, x / keep, jnp.zeros_like(x))


class Block(nn.Module):
  """Pre-norm transformer block."""
  num_heads: int
  mlp_dim: int
  drop_path: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, deterministic: bool = True):
    norm = lambda name: LayerNorm(epsilon=1e-6, dtype=self.dtype, name=name)
    y = Attention(self.num_heads, dtype=self.dtype, name="attn")(norm("norm1")(x))
    x = x + DropPath(self.drop_path, name="drop_path1")(y, deterministic)
    y = Mlp(self.mlp_dim, dtype=self.dtype, name="mlp")(norm("norm2")(x))
    return x + DropPath(self.drop_path, name="drop_path2")(y, deterministic)


class Transformer(nn.Module):
  """A stack of blocks with linearly increasing drop-path rate, as in the ViT/MAE reference."""
  depth: int
  num_heads: int
  mlp_dim: int
  drop_path: float = 0.0
  final_norm: bool = True
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, deterministic: bool = True):
    for i in range(self.depth):
      rate = self.drop_path * i / max(self.depth - 1, 1)
      x = Block(self.num_heads, self.mlp_dim, rate, self.dtype, name=f"block{i}")(x, deterministic)
    if self.final_norm:
      x = LayerNorm(epsilon=1e-6, dtype=self.dtype, name="norm")(x)
    return x
