"""Masked Spectrogram Modeling pretraining: the task given to the shared train loop."""
import os

import jax
import jax.numpy as jnp
import numpy as np

from msm_jax.models.build import build_msm, model_description
from msm_jax.models.masking import batch_masks, num_visible
from msm_jax.models.patches import grid_shape, patchify, unpatchify
from msm_jax.training.losses import masked_mse, patch_mean_std, patch_targets
from msm_jax.training.loop import Task, train


class MsmTask(Task):
  """MSM: mask a fraction of the patches, encode the rest, reconstruct the masked ones."""

  def __init__(self, config):
    self.config = config
    self.input_shape = tuple(config.input_shape)
    self.patch_size = tuple(config.model.patch_size)
    self.grid = grid_shape(self.input_shape[:2], self.patch_size)
    self.num_patches = self.grid[0] * self.grid[1]
    self.keep = num_visible(self.num_patches, config.mask_ratio)
    self.model = build_msm(config.model, channels=self.input_shape[2])
    self._predict_jit = jax.jit(self.predict)

  def init_params(self, rng):
    n = self.num_patches
    images = jnp.zeros((1,) + self.input_shape, jnp.float32)
    visible = jnp.zeros((1, self.keep), jnp.int32)
    restore = jnp.arange(n, dtype=jnp.int32)[None]
    return self.model.init(rng, images, visible, restore)["params"]

  def predict(self, params, images, rng, sample_ids):
    """(patch predictions, target patches, mask) for a batch; the masks depend on rng and ids."""
    visible, restore, mask = batch_masks(rng, sample_ids, self.num_patches, self.keep)
    pred = self.model.apply({"params": params}, images, visible, restore)
    return pred, patch_targets(images, self.patch_size, self.config.norm_pix_loss), mask

  def loss_fn(self, params, batch, rng, sample_ids):
    pred, target, mask = self.predict(params, batch["image"], rng, sample_ids)
    return masked_mse(pred, target, mask), {}

  def export(self, params):
    return params["encoder"], model_description(self.config.model, self.input_shape)

  def save_figure(self, params, images, step, workdir):
    from msm_jax.metrics.figures import save_reconstruction_figure  # matplotlib only when drawn
    ids = jnp.arange(images.shape[0], dtype=jnp.int32)
    pred, _, mask = self._predict_jit(params, images, jax.random.key(0), ids)
    if self.config.norm_pix_loss:  # show predictions in the input's units
      mean, std = patch_mean_std(patchify(jnp.asarray(images), self.patch_size))
      pred = pred * std + mean
    recon = unpatchify(pred, self.patch_size, self.grid, self.input_shape[2])
    path = os.path.join(workdir, "figures", f"reconstruction_{step:07d}.png")
    return save_reconstruction_figure(path, np.asarray(images), np.asarray(mask) > 0,
                                      np.asarray(recon), self.patch_size,
                                      title=f"MSM step {step}, mask ratio {self.config.mask_ratio}")


def pretrain(config, workdir: str):
  """Pretrains an MSM model as `config` says, resuming from `workdir` if it holds checkpoints.

  Returns the final train state. Callable from Colab; launch/pretrain.py is a thin CLI over it.
  """
  return train(config, workdir, MsmTask(config))
