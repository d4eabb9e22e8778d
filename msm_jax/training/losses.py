"""Reconstruction loss of Masked Spectrogram Modeling."""
import jax.numpy as jnp

from msm_jax.models.patches import patchify


def patch_mean_std(patches):
  """Per-patch mean and std of (..., N, P) patch vectors as MAE's norm_pix_loss takes them: the
  unbiased variance (torch's default) plus 1e-6 under the root, so that weights imported from
  MAE or Hugging Face see the targets they were trained on."""
  mean = patches.mean(axis=-1, keepdims=True)
  var = patches.var(axis=-1, keepdims=True, ddof=1)
  return mean, jnp.sqrt(var + 1e-6)


def patch_targets(images, patch_size, norm_pix: bool):
  """Per-patch regression targets, optionally normalised per patch (MAE's norm_pix_loss)."""
  target = patchify(images.astype(jnp.float32), patch_size)
  if norm_pix:
    mean, std = patch_mean_std(target)
    target = (target - mean) / std
  return target


def masked_mse(pred, target, mask):
  """Mean squared error over the masked patches only; visible patches contribute nothing."""
  per_patch = jnp.mean(jnp.square(pred.astype(jnp.float32) - target), axis=-1)
  return jnp.sum(per_patch * mask) / jnp.sum(mask)
