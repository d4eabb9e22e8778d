"""The paper's reconstruction-accuracy curve: how well a pretrained MSM model fills in masked
patches as the test masking ratio grows (msm_jax.metrics.evaluation.reconstruction_accuracy)."""
import jax
import jax.numpy as jnp
import numpy as np

from msm_jax.checkpoint.manager import restore_params
from msm_jax.metrics.evaluation import reconstruction_accuracy
from msm_jax.metrics.figures import patch_mask_to_pixels
from msm_jax.training.pretrain import MsmTask


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
    recon = task.reconstructed_images(pred, images)
    h, w = recon.shape[1:3]
    pixels = patch_mask_to_pixels(np.asarray(mask) > 0, task.grid, task.patch_size)
    curve[round(float(ratio), 4)] = reconstruction_accuracy(
        images[:, :h, :w], np.asarray(recon), mask=pixels)
  return curve
