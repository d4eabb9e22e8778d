"""Masked Spectrogram Modeling pretraining: the task given to the shared train loop."""
import os

import jax
import jax.numpy as jnp
import numpy as np

from msm_jax.data.source import validation_batches
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
    # Validation masks come from a key of their own, the same in every run and at every step,
    # so val_loss moves only with the params (and compares across runs on the same data).
    self._val_loss = jax.jit(lambda params, images, ids: masked_mse(
        *self.predict(params, images, jax.random.key(0), ids)))
    self._val_batches = None  # read on first use

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

  def validate(self, params):
    if self._val_batches is None:
      self._val_batches = validation_batches(self.config)
    params = jax.device_put(params)  # once, not once per batch
    total, done = 0.0, 0
    for batch in self._val_batches:
      n = len(batch["image"])
      ids = jnp.arange(done, done + n, dtype=jnp.int32)  # the example's index picks its mask
      # Every example has the same number of masked patches: the mean of the batch means,
      # weighted by batch size, is the mean over all examples.
      total += float(self._val_loss(params, batch["image"], ids)) * n
      done += n
    return {"loss": total / done}

  def export(self, params):
    return params["encoder"], model_description(self.config.model, self.input_shape)

  def reconstructed_images(self, pred, images):
    """Patch predictions `pred` (N, L, P) of `images` -> images (N, H', W', C) in the input's
    units. With norm_pix_loss the model predicts each patch standardised by its own mean and std
    (patch_targets), so those of the same patch of `images` are put back first."""
    if self.config.norm_pix_loss:
      mean, std = patch_mean_std(patchify(jnp.asarray(images), self.patch_size))
      pred = pred * std + mean
    return unpatchify(pred, self.patch_size, self.grid, self.input_shape[2])

  def save_figure(self, params, images, step, workdir):
    from msm_jax.metrics.figures import save_reconstruction_figure  # matplotlib only when drawn
    ids = jnp.arange(images.shape[0], dtype=jnp.int32)
    pred, _, mask = self._predict_jit(params, images, jax.random.key(0), ids)
    recon = self.reconstructed_images(pred, images)
    path = os.path.join(workdir, "figures", f"reconstruction_{step:07d}.png")
    return save_reconstruction_figure(path, np.asarray(images), np.asarray(mask) > 0,
                                      np.asarray(recon), self.patch_size,
                                      title=f"MSM step {step}, mask ratio {self.config.mask_ratio}")


def pretrain(config, workdir: str):
  """Pretrains an MSM model as `config` says, resuming from `workdir` if it holds checkpoints.

  Returns the final train state. Callable from Colab; launch/pretrain.py is a thin CLI over it.
  """
  return train(config, workdir, MsmTask(config))
