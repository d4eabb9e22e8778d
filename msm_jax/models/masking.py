"""Random patch masking, written for one sample and vmapped over the batch."""
from fractions import Fraction

import jax
import jax.numpy as jnp


def num_visible(num_patches: int, mask_ratio: float) -> int:
  """Patches kept visible: floor((1 - ratio) * n), computed exactly.

  Float arithmetic gets this wrong for innocent ratios (int(100 * (1 - 0.9)) == 9), so the ratio
  is taken as the decimal the user wrote (Fraction of its shortest repr) and the floor is exact.
  """
  if not 0.05 <= mask_ratio <= 0.95:
    raise ValueError(f"config.mask_ratio must be in [0.05, 0.95], got {mask_ratio}")
  keep = int((1 - Fraction(repr(float(mask_ratio)))) * num_patches)
  if not 0 < keep < num_patches:
    raise ValueError(
        f"config.mask_ratio={mask_ratio} on {num_patches} patches keeps {keep}: at least one patch "
        "must stay visible and one be masked")
  return keep


def random_mask(key, num_patches: int, keep: int):
  """One sample's mask.

  Returns (visible, restore, mask): `visible` (keep,) indices of the patches the encoder sees, in
  shuffled order; `restore` (num_patches,) puts [visible tokens, masked tokens] back in patch
  order (take_along_axis); `mask` (num_patches,) float32, 1 where the patch is masked.
  """
  # float32 noise whatever the compute dtype: bfloat16 would make ties and bias the permutation.
  noise = jax.random.uniform(key, (num_patches,), dtype=jnp.float32)
  shuffle = jnp.argsort(noise)
  restore = jnp.argsort(shuffle)
  mask = (restore >= keep).astype(jnp.float32)
  return shuffle[:keep], restore, mask


def batch_masks(rng, sample_ids, num_patches: int, keep: int):
  """Masks for a batch; sample `i` uses fold_in(rng, sample_ids[i]).

  Keys come from the *global* sample index, so a batch is masked identically whether it is
  processed on one device, sharded by jit, split by pmap or spread over several hosts.
  """
  keys = jax.vmap(lambda i: jax.random.fold_in(rng, i))(sample_ids)
  return jax.vmap(random_mask, in_axes=(0, None, None))(keys, num_patches, keep)
