"""Finetuning networks: the pretrained encoder on every patch, plus a task head.

Parameter names mirror the MSM model ('encoder', 'decoder/embed', 'decoder/transformer/blockI')
so pretrained weights load by name (msm_jax/finetune/init.py).
"""
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from msm_jax.models.dense import Dense
from msm_jax.models.norm import LayerNorm
from msm_jax.models.msm import Encoder
from msm_jax.models.patches import grid_shape, unpatchify
from msm_jax.models.posemb import sincos_2d
from msm_jax.models.vit import Transformer, dense_init

POOLS = ("cls", "mean")
# The MAE reference initialises its classifier this small, so finetuning starts near uniform.
head_init = nn.initializers.truncated_normal(stddev=2e-5)


class Classifier(nn.Module):
  """Activity classification: CLS token (or mean of patch tokens) -> LayerNorm -> Linear."""
  encoder: Encoder
  num_classes: int
  pool: str = "cls"

  @nn.compact
  def __call__(self, images, deterministic: bool = True):
    """(B, Nt, Nf, C) -> (B, num_classes) float32 logits."""
    tokens = self.encoder(images, None, deterministic)
    if self.pool == "cls":
      if not self.encoder.use_cls:
        raise ValueError("config.pool='cls' needs an encoder with a CLS token (model.use_cls).")
      feature = tokens[:, 0]
    elif self.pool == "mean":
      feature = tokens[:, int(self.encoder.use_cls):].mean(axis=1)
    else:
      raise ValueError(f"config.pool={self.pool!r} must be one of {POOLS}.")
    feature = LayerNorm(epsilon=1e-6, dtype=jnp.float32, name="head_norm")(feature)
    return Dense(self.num_classes, dtype=jnp.float32, kernel_init=head_init, name="head")(feature)


class Segmenter(nn.Module):
  """The paper's segmentation head: encoder over all patches, the first `depth` blocks of the
  pretrained MSM decoder over all tokens (no mask tokens), a new linear layer to ph*pw*K logits
  per patch, unpatchified to a per-pixel map. With depth 0 the linear layer reads the encoder's
  patch tokens directly: a strict linear probe."""
  encoder: Encoder
  num_classes: int
  width: int  # of the pretrained decoder
  depth: int
  num_heads: int
  mlp_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images, deterministic: bool = True):
    """(B, Nt, Nf, C) -> (B, Nt, Nf, num_classes) float32 logits."""
    patch = tuple(self.encoder.patch_size)
    grid = grid_shape(images.shape[1:3], patch)
    tokens = self.encoder(images, None, deterministic)
    if self.depth:
      x = _DecoderBlocks(self.width, self.depth, self.num_heads, self.mlp_dim,
                         self.encoder.use_cls, self.dtype, name="decoder")(tokens, grid,
                                                                           deterministic)
    else:
      x = tokens[:, int(self.encoder.use_cls):]
    logits = Dense(patch[0] * patch[1] * self.num_classes, dtype=jnp.float32,
                   kernel_init=dense_init, name="head")(x)
    return unpatchify(logits, patch, grid, self.num_classes)


class _DecoderBlocks(nn.Module):
  """The MSM decoder's input projection and first blocks, named as in msm.Decoder."""
  width: int
  depth: int
  num_heads: int
  mlp_dim: int
  use_cls: bool
  dtype: Any

  @nn.compact
  def __call__(self, tokens, grid: Sequence[int], deterministic: bool):
    x = Dense(self.width, dtype=self.dtype, kernel_init=dense_init, name="embed")(tokens)
    start = int(self.use_cls)
    patches = x[:, start:] + jnp.asarray(sincos_2d(tuple(grid), self.width), self.dtype)
    x = jnp.concatenate([x[:, :start], patches], axis=1)
    x = Transformer(self.depth, self.num_heads, self.mlp_dim, dtype=self.dtype,
                    name="transformer")(x, deterministic)
    return x[:, start:]
