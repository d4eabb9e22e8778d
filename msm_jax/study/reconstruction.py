"""The paper's reconstruction-accuracy curve: how well a pretrained MSM model fills in masked
patches as the test masking ratio grows (msm_jax.metrics.evaluation.reconstruction_accuracy)."""
import jax
import jax.numpy as jnp
import numpy as np

from msm_jax.checkpoint.manager import restore_params
from msm_jax.metrics.evaluation import reconstruction_accuracy
from msm_jax.metrics.figures import patch_mask_to_pixels
from msm_jax.models.patches import patchify, unpatchify
from msm_jax.training.losses import patch_mean_std
from msm_jax.training.pretrain import MsmTask


def reconstructed_images(task: MsmTask, pred, images):
  """Patch predictions `pred` (N, L, P) of `images` -> images (N, H', W', C) in the input's units.

  With norm_pix_loss the model predicts each patch standardised by its own mean and std
  (patch_targets), so those of the same patch of `images` are put back first; comparing the raw
  predictions with the images would score standardised patches against unstandardised ones.
  """
  if task.config.norm_pix_loss:
    mean, std = patch_mean_std(patchify(jnp.asarray(images), task.patch_size))
    pred = pred * std + mean
  return unpatchify(pred, task.patch_size, task.grid, task.input_shape[2])


def reconstruction_curve(pretrain_config, workdir: str, images: np.ndarray, ratios) -> dict:
  """{test mask ratio: accuracy} of the model in `workdir` on standardised `images` (N, H, W, C).

  Scored as in the paper: the pasted image (original where visible, model output where masked)
  against the original. Masks are drawn per sample from a fixed key, so curves are comparable.
  """
  params = restore_params(workdir)[0]
  ids = jnp.arange(len(images), dtype=jnp.int32)
  curve = {}
  for ratio in ratios:
    config = pretrain_config.copy_and_resolve_references()
    config.mask_ratio = float(ratio)
    task = MsmTask(config)
    pred, _, mask = jax.jit(task.predict)(params, jnp.asarray(images), jax.random.key(1), ids)
    recon = reconstructed_images(task, pred, images)
    h, w = recon.shape[1:3]
    pixels = patch_mask_to_pixels(np.asarray(mask) > 0, task.grid, task.patch_size)
    curve[round(float(ratio), 4)] = reconstruction_accuracy(
        images[:, :h, :w], np.asarray(recon), mask=pixels)
  return curve
