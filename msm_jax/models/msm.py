"""The Masked Spectrogram Modeling network: ViT encoder on visible patches + light decoder."""
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from msm_jax.models.dense import Dense
from msm_jax.models.patches import grid_shape, patchify
from msm_jax.models.posemb import sincos_2d
from msm_jax.models.vit import Transformer, dense_init

token_init = nn.initializers.normal(stddev=0.02)


class Encoder(nn.Module):
  """ViT encoder for (B, Nt, Nf, C) spectrograms of any patch-divisible size."""
  patch_size: Sequence[int]
  width: int
  depth: int
  num_heads: int
  mlp_dim: int
  use_cls: bool = True
  drop_path: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images, visible=None, deterministic: bool = True):
    """Returns (B, [1 +] K, width) normalised tokens, CLS first when use_cls.

    `visible` (B, K) patch indices: only those patches are encoded (MSM pretraining); None
    encodes every patch (finetuning, inference).
    """
    grid = grid_shape(images.shape[1:3], self.patch_size)
    patches = patchify(images.astype(self.dtype), self.patch_size)
    x = Dense(self.width, dtype=self.dtype, kernel_init=dense_init, name="patch_embed")(patches)
    x = x + jnp.asarray(sincos_2d(grid, self.width), self.dtype)
    if visible is not None:
      x = jnp.take_along_axis(x, visible[..., None], axis=1)
    if self.use_cls:
      cls = self.param("cls", token_init, (1, 1, self.width)).astype(self.dtype)
      x = jnp.concatenate([jnp.broadcast_to(cls, (x.shape[0], 1, self.width)), x], axis=1)
    return Transformer(self.depth, self.num_heads, self.mlp_dim, self.drop_path,
                       dtype=self.dtype, name="transformer")(x, deterministic)


class Decoder(nn.Module):
  """Puts encoded tokens back in place, fills the gaps with a mask token, predicts patch pixels."""
  patch_size: Sequence[int]
  channels: int
  width: int
  depth: int
  num_heads: int
  mlp_dim: int
  use_cls: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, latent, restore, grid: Sequence[int]):
    """latent (B, [1 +] K, enc_width), restore (B, N) -> (B, N, ph*pw*C) float32 predictions."""
    x = Dense(self.width, dtype=self.dtype, kernel_init=dense_init, name="embed")(latent)
    if self.use_cls:
      cls, x = x[:, :1], x[:, 1:]
    b, k, _ = x.shape
    n = restore.shape[1]
    mask_token = self.param("mask_token", token_init, (1, 1, self.width)).astype(self.dtype)
    x = jnp.concatenate([x, jnp.broadcast_to(mask_token, (b, n - k, self.width))], axis=1)
    x = jnp.take_along_axis(x, restore[..., None], axis=1)
    x = x + jnp.asarray(sincos_2d(tuple(grid), self.width), self.dtype)
    if self.use_cls:
      x = jnp.concatenate([cls, x], axis=1)
    x = Transformer(self.depth, self.num_heads, self.mlp_dim, dtype=self.dtype,
                    name="transformer")(x)
    ph, pw = self.patch_size
    x = Dense(ph * pw * self.channels, dtype=self.dtype, kernel_init=dense_init, name="pred")(x)
    if self.use_cls:
      x = x[:, 1:]
    return x.astype(jnp.float32)


class MaskedSpectrogramModel(nn.Module):
  encoder: Encoder
  decoder: Decoder

  def __call__(self, images, visible, restore, deterministic: bool = True):
    latent = self.encoder(images, visible, deterministic)
    return self.decoder(latent, restore, grid_shape(images.shape[1:3], self.encoder.patch_size))
